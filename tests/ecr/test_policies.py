"""Repository, registry and lifecycle policy operations over the ECR API: round trips and errors.

The policy engine's semantics have tests of their own (tests/unit/test_policy_*, test_lifecycle*);
these check the wire: what each operation stores, returns and refuses.
"""

from __future__ import annotations

import json
import time
from typing import Any

from tests.ecr.helpers import ACCOUNT, OTHER_ACCOUNT, REGION, build_image, push_ecr, raises, unique_name


def repository_policy(*actions: str) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "CrossAccountPull", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{OTHER_ACCOUNT}:root"},
        "Action": list(actions or ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"))}]})


def lifecycle_policy(count: int = 1) -> str:
    return json.dumps({"rules": [{
        "rulePriority": 1, "description": f"keep the newest {count}",
        "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": count},
        "action": {"type": "expire"}}]})


# -- repository policies --------------------------------------------------------------------

def test_repository_policy_round_trip(ecr: Any, repo: str) -> None:
    with raises("RepositoryPolicyNotFoundException", repo):
        ecr.get_repository_policy(repositoryName=repo)
    text = repository_policy()
    out = ecr.set_repository_policy(repositoryName=repo, policyText=text)
    assert out["registryId"] == ACCOUNT and out["repositoryName"] == repo
    assert json.loads(out["policyText"]) == json.loads(text)
    got = ecr.get_repository_policy(repositoryName=repo)
    assert json.loads(got["policyText"]) == json.loads(text)
    replaced = repository_policy("ecr:BatchGetImage")
    ecr.set_repository_policy(repositoryName=repo, policyText=replaced)
    assert json.loads(ecr.get_repository_policy(repositoryName=repo)["policyText"]) == json.loads(replaced)
    deleted = ecr.delete_repository_policy(repositoryName=repo)
    assert json.loads(deleted["policyText"]) == json.loads(replaced)
    with raises("RepositoryPolicyNotFoundException"):
        ecr.get_repository_policy(repositoryName=repo)
    with raises("RepositoryPolicyNotFoundException"):
        ecr.delete_repository_policy(repositoryName=repo)


def test_repository_policy_errors(ecr: Any, repo: str) -> None:
    for bad in ("not json", json.dumps({"Statement": []}), json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Maybe", "Principal": "*", "Action": "ecr:*"}]})):
        with raises("InvalidParameterException"):
            ecr.set_repository_policy(repositoryName=repo, policyText=bad)
    gone = unique_name("gone")
    with raises("RepositoryNotFoundException", gone):
        ecr.set_repository_policy(repositoryName=gone, policyText=repository_policy())
    with raises("RepositoryNotFoundException", gone):
        ecr.get_repository_policy(repositoryName=gone)
    with raises("RepositoryNotFoundException", gone):
        ecr.delete_repository_policy(repositoryName=gone)


# -- the registry policy --------------------------------------------------------------------

def test_registry_policy_round_trip(ecr: Any) -> None:
    text = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "Replication", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{OTHER_ACCOUNT}:root"},
        "Action": ["ecr:CreateRepository", "ecr:ReplicateImage"],
        "Resource": f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{unique_name('replica')}"}]})
    try:
        out = ecr.put_registry_policy(policyText=text)
        assert out["registryId"] == ACCOUNT and json.loads(out["policyText"]) == json.loads(text)
        got = ecr.get_registry_policy()
        assert got["registryId"] == ACCOUNT and json.loads(got["policyText"]) == json.loads(text)
        with raises("InvalidParameterException"):
            ecr.put_registry_policy(policyText="{")
        assert json.loads(ecr.get_registry_policy()["policyText"]) == json.loads(text)
    finally:
        deleted = ecr.delete_registry_policy()
    assert json.loads(deleted["policyText"]) == json.loads(text)
    with raises("RegistryPolicyNotFoundException", ACCOUNT):
        ecr.get_registry_policy()
    with raises("RegistryPolicyNotFoundException"):
        ecr.delete_registry_policy()


# -- lifecycle policies ---------------------------------------------------------------------

def test_lifecycle_policy_round_trip(ecr: Any, repo: str) -> None:
    with raises("LifecyclePolicyNotFoundException", repo):
        ecr.get_lifecycle_policy(repositoryName=repo)
    text = lifecycle_policy(3)
    out = ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=text)
    assert out["registryId"] == ACCOUNT and out["repositoryName"] == repo
    assert json.loads(out["lifecyclePolicyText"]) == json.loads(text)
    got = ecr.get_lifecycle_policy(repositoryName=repo)
    assert json.loads(got["lifecyclePolicyText"]) == json.loads(text)
    deleted = ecr.delete_lifecycle_policy(repositoryName=repo)
    assert json.loads(deleted["lifecyclePolicyText"]) == json.loads(text)
    with raises("LifecyclePolicyNotFoundException"):
        ecr.get_lifecycle_policy(repositoryName=repo)
    with raises("LifecyclePolicyNotFoundException"):
        ecr.delete_lifecycle_policy(repositoryName=repo)


def test_lifecycle_policy_errors(ecr: Any, repo: str) -> None:
    bad_rules = [
        "not json",
        json.dumps({"rules": []}),
        json.dumps({"rules": [{"rulePriority": 1, "selection": {"tagStatus": "sometimes", "countType":
                                                                "imageCountMoreThan", "countNumber": 1},
                               "action": {"type": "expire"}}]}),
        json.dumps({"rules": [{"rulePriority": 1, "selection": {"tagStatus": "any", "countType":
                                                                "imageCountMoreThan", "countNumber": 0},
                               "action": {"type": "expire"}}]}),
    ]
    for bad in bad_rules:
        with raises("InvalidParameterException"):  # padded: the model wants at least 100 characters
            ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=bad.ljust(100))
    with raises("LifecyclePolicyNotFoundException"):
        ecr.get_lifecycle_policy(repositoryName=repo)
    gone = unique_name("gone")
    with raises("RepositoryNotFoundException", gone):
        ecr.put_lifecycle_policy(repositoryName=gone, lifecyclePolicyText=lifecycle_policy())


def _wait_for_preview(ecr: Any, repo: str, **kwargs: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        out: dict[str, Any] = ecr.get_lifecycle_policy_preview(repositoryName=repo, **kwargs)
        if out["status"] != "IN_PROGRESS" or time.monotonic() > deadline:
            return out
        time.sleep(0.1)


def test_lifecycle_policy_preview(ecr: Any, repo: str) -> None:
    with raises("LifecyclePolicyPreviewNotFoundException", repo):
        ecr.get_lifecycle_policy_preview(repositoryName=repo)
    # Without a stored policy and without one in the request there is nothing to preview.
    with raises("LifecyclePolicyNotFoundException"):
        ecr.start_lifecycle_policy_preview(repositoryName=repo)
    images = [build_image() for _ in range(3)]
    for i, image in enumerate(images):
        push_ecr(ecr, repo, image, f"v{i}")
        time.sleep(0.01)  # distinct push times: the newest is kept
    started = ecr.start_lifecycle_policy_preview(repositoryName=repo, lifecyclePolicyText=lifecycle_policy(1))
    assert started["status"] == "IN_PROGRESS" and started["repositoryName"] == repo
    preview = _wait_for_preview(ecr, repo)
    assert preview["status"] == "COMPLETE", preview
    expiring = {r["imageDigest"]: r for r in preview["previewResults"]}
    assert set(expiring) == {images[0].digest, images[1].digest}
    assert all(r["action"] == {"type": "EXPIRE"} and r["appliedRulePriority"] == 1 for r in expiring.values())
    assert expiring[images[0].digest]["imageTags"] == ["v0"]
    assert preview["summary"] == {"expiringImageTotalCount": 2}
    # A preview changes nothing.
    assert len(ecr.list_images(repositoryName=repo)["imageIds"]) == 3
    # The stored policy is previewed when the request names none.
    ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=lifecycle_policy(2))
    ecr.start_lifecycle_policy_preview(repositoryName=repo)
    preview = _wait_for_preview(ecr, repo)
    assert [r["imageDigest"] for r in preview["previewResults"]] == [images[0].digest]
    assert json.loads(preview["lifecyclePolicyText"]) == json.loads(lifecycle_policy(2))
    with raises("RepositoryNotFoundException"):
        ecr.get_lifecycle_policy_preview(repositoryName=unique_name("gone"))
