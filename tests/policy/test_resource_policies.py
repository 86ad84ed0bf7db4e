"""Repository and registry policies: the ECR operations that manage them, and what they do to
docker pushes and pulls, within the home account and across accounts.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.policy.helpers import (
    HOME,
    OTHER,
    PULL_ACTIONS,
    REGION,
    User,
    allow,
    aws_client,
    build_tiny,
    cargohold,
    create_account,
    docker_login,
    new_user,
    policy,
    push_as_root,
    raises,
    sha256,
    unique,
)
from tests.support.dockerd import DockerCli, DockerDaemon
from tests.support.server import ServerProcess

DENY_PUSH = json.dumps({"Version": "2012-10-17", "Statement": [{
    "Sid": "DenyPush", "Effect": "Deny", "Principal": "*", "Action": ["ecr:PutImage", "ecr:InitiateLayerUpload"]}]})
REPO_PULL_ACTIONS = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]


def grant(principal: str, actions: list[str] | None = None, sid: str = "CrossAccountPull") -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": sid, "Effect": "Allow", "Principal": {"AWS": principal}, "Action": actions or REPO_PULL_ACTIONS}]})


def repo_arn(name: str, account: str = HOME) -> str:
    return f"arn:aws:ecr:{REGION}:{account}:repository/{name}"


# -- the operations -------------------------------------------------------------------------

def test_repository_policy_set_get_delete(ecr: Any) -> None:
    name = f"rp/{unique('ops')}"
    ecr.create_repository(repositoryName=name)
    with raises("RepositoryPolicyNotFoundException", name):
        ecr.get_repository_policy(repositoryName=name)
    text = grant(f"arn:aws:iam::{OTHER}:root")
    out = ecr.set_repository_policy(repositoryName=name, policyText=text)
    assert out["registryId"] == HOME and out["repositoryName"] == name
    assert json.loads(out["policyText"]) == json.loads(text)
    assert json.loads(ecr.get_repository_policy(repositoryName=name)["policyText"]) == json.loads(text)
    deleted = ecr.delete_repository_policy(repositoryName=name)
    assert json.loads(deleted["policyText"]) == json.loads(text)
    with raises("RepositoryPolicyNotFoundException"):
        ecr.get_repository_policy(repositoryName=name)
    with raises("RepositoryPolicyNotFoundException"):
        ecr.delete_repository_policy(repositoryName=name)

    invalid = {
        "not JSON": "{",
        "identity policy (no Principal)": policy(allow("ecr:*")),
        "bad principal": grant("bob"),
        "NotPrincipal with Allow": json.dumps({"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "NotPrincipal": {"AWS": f"arn:aws:iam::{OTHER}:root"}, "Action": "ecr:*"}]}),
        "empty Statement": json.dumps({"Version": "2012-10-17", "Statement": []}),
    }
    for bad in invalid.values():
        with raises("InvalidParameterException", "Invalid repository policy provided"):
            ecr.set_repository_policy(repositoryName=name, policyText=bad)
    with raises("RepositoryPolicyNotFoundException"):  # nothing was stored
        ecr.get_repository_policy(repositoryName=name)

    gone = f"rp/{unique('gone')}"
    with raises("RepositoryNotFoundException", gone):
        ecr.set_repository_policy(repositoryName=gone, policyText=text)
    with raises("RepositoryNotFoundException", gone):
        ecr.get_repository_policy(repositoryName=gone)
    with raises("RepositoryNotFoundException", gone):
        ecr.delete_repository_policy(repositoryName=gone)


def test_force_is_needed_for_a_policy_that_locks_the_caller_out(ecr: Any) -> None:
    name = f"rp/{unique('force')}"
    ecr.create_repository(repositoryName=name)
    lockout = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "NoMoreChanges", "Effect": "Deny", "Principal": "*", "Action": "ecr:SetRepositoryPolicy"}]})
    with raises("InvalidParameterException", "force"):
        ecr.set_repository_policy(repositoryName=name, policyText=lockout)
    with raises("RepositoryPolicyNotFoundException"):
        ecr.get_repository_policy(repositoryName=name)
    # A policy that does not lock the caller out needs no force.
    ecr.set_repository_policy(repositoryName=name, policyText=DENY_PUSH)

    ecr.set_repository_policy(repositoryName=name, policyText=lockout, force=True)
    assert json.loads(ecr.get_repository_policy(repositoryName=name)["policyText"]) == json.loads(lockout)
    with raises("AccessDeniedException", "explicit deny in a resource-based policy"):
        ecr.set_repository_policy(repositoryName=name, policyText=DENY_PUSH, force=True)
    # Deleting the policy is not denied, and undoes the lock-out.
    ecr.delete_repository_policy(repositoryName=name)
    ecr.set_repository_policy(repositoryName=name, policyText=DENY_PUSH)


def test_registry_policy_put_get_delete(ecr: Any) -> None:
    with raises("RegistryPolicyNotFoundException", HOME):
        ecr.get_registry_policy()
    text = json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "Replication", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{OTHER}:root"},
        "Action": ["ecr:CreateRepository", "ecr:ReplicateImage"],
        "Resource": f"arn:aws:ecr:{REGION}:{HOME}:repository/{unique('replica')}/*"}]})
    try:
        out = ecr.put_registry_policy(policyText=text)
        assert out["registryId"] == HOME and json.loads(out["policyText"]) == json.loads(text)
        got = ecr.get_registry_policy()
        assert got["registryId"] == HOME and json.loads(got["policyText"]) == json.loads(text)
        for bad in ("{", policy(allow("ecr:ReplicateImage")), grant("*", ["ReplicateImage"])):
            with raises("InvalidParameterException", "Invalid registry policy provided"):
                ecr.put_registry_policy(policyText=bad)
        assert json.loads(ecr.get_registry_policy()["policyText"]) == json.loads(text)
    finally:
        deleted = ecr.delete_registry_policy()
    assert json.loads(deleted["policyText"]) == json.loads(text)
    with raises("RegistryPolicyNotFoundException"):
        ecr.get_registry_policy()
    with raises("RegistryPolicyNotFoundException"):
        ecr.delete_registry_policy()


# -- a deny-push repository policy with docker ----------------------------------------------

@pytest.mark.clients
def test_deny_push_policy_beats_an_identity_allow(dockerd: DockerDaemon, docker: DockerCli, server: ServerProcess,
                                                  iam: Any, ecr: Any, tmp_path: Path) -> None:
    repo = f"rp/{unique('guarded')}"
    pushed = push_as_root(dockerd.cli(tmp_path / "root"), server, repo, "v1", tmp_path / "root-ctx")
    ecr.set_repository_policy(repositoryName=repo, policyText=DENY_PUSH)
    user = new_user(iam, "pusher", policy(allow("ecr:*")))
    docker_login(docker, server.address, user.key_id, user.secret)
    retag = f"{server.address}/{repo}:v2"
    try:
        docker("pull", pushed)
        docker("tag", pushed, retag)
        push = docker("push", retag, check=False)
        assert push.returncode != 0
        assert (f"denied: User: {user.arn} is not authorized to perform: ecr:PutImage on resource: "
                f"{repo_arn(repo)} with an explicit deny in a resource-based policy") in push.stderr, push.stderr

        fresh = f"{server.address}/{repo}:v3"
        build_tiny(docker, fresh, tmp_path / "ctx")
        push = docker("push", fresh, check=False)
        assert push.returncode != 0
        assert f"is not authorized to perform: ecr:InitiateLayerUpload on resource: {repo_arn(repo)} with an " \
               "explicit deny" in push.stderr, push.stderr
        # Root is "*" too.
        with raises("AccessDeniedException", "explicit deny"):
            ecr.initiate_layer_upload(repositoryName=repo)
        assert [i["imageTag"] for i in ecr.list_images(repositoryName=repo)["imageIds"]] == ["v1"]

        # Without the policy the same user pushes.
        ecr.delete_repository_policy(repositoryName=repo)
        docker("push", retag)
        tags = sorted(i["imageTag"] for i in ecr.list_images(repositoryName=repo)["imageIds"])
        assert tags == ["v1", "v2"]
    finally:
        docker("rmi", "-f", pushed, retag, f"{server.address}/{repo}:v3", check=False)


# -- across accounts ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def other_root(server: ServerProcess) -> tuple[str, str]:
    """Account 111122223333, created with `cargohold account create` beside the running server."""
    return create_account(server, OTHER)


@pytest.fixture(scope="module")
def other_iam(server: ServerProcess, other_root: tuple[str, str]) -> Any:
    return aws_client("iam", server, *other_root)


def other_user(other_iam: Any, document: str | None = None) -> User:
    user = new_user(other_iam, "xacct", document)
    assert user.arn.startswith(f"arn:aws:iam::{OTHER}:user/") and user.account == OTHER
    return user


def test_account_create_cli(server: ServerProcess, other_root: tuple[str, str]) -> None:
    sts = aws_client("sts", server, *other_root)
    assert sts.get_caller_identity()["Arn"] == f"arn:aws:iam::{OTHER}:root"
    again = cargohold("account", "create", OTHER, "--data-dir", str(server.data_dir), check=False)
    assert again.returncode == 1 and "already exists" in again.stdout


@pytest.mark.clients
def test_cross_account_docker_pull_needs_the_repository_policy(
        dockerd: DockerDaemon, docker: DockerCli, server: ServerProcess, ecr: Any, other_iam: Any,
        tmp_path: Path) -> None:
    repo = f"xa/{unique('shared')}"
    pushed = push_as_root(dockerd.cli(tmp_path / "root"), server, repo, "v1", tmp_path / "root-ctx")
    user = other_user(other_iam, policy(allow(PULL_ACTIONS)))
    # The user's login password comes from GetAuthorizationToken in its own account.
    auth = user.client("ecr", server).get_authorization_token()["authorizationData"][0]
    username, password = base64.b64decode(auth["authorizationToken"]).decode().split(":", 1)
    assert username == "AWS"
    docker_login(docker, server.address, username, password)
    retag = f"{server.address}/{repo}:theirs"
    try:
        # No repository policy: to the other account the repository does not exist.
        pull = docker("pull", pushed, check=False)
        assert pull.returncode != 0
        hidden = f"name unknown: The repository with name '{repo}' does not exist in the registry with id '{HOME}'"
        assert f"{repo} not found: {hidden}" in pull.stderr, pull.stderr

        ecr.set_repository_policy(repositoryName=repo, policyText=grant(user.arn))
        out = docker("pull", pushed)
        assert "Downloaded newer image" in out.stdout, out.stdout

        docker("tag", pushed, retag)
        push = docker("push", retag, check=False)
        assert push.returncode != 0
        assert hidden in push.stderr, push.stderr  # PutImage is not granted: refused as "not there"
        assert [i["imageTag"] for i in ecr.list_images(repositoryName=repo)["imageIds"]] == ["v1"]

        # Taking the policy away takes the access away.
        ecr.delete_repository_policy(repositoryName=repo)
        docker("rmi", pushed)
        pull = docker("pull", pushed, check=False)
        assert pull.returncode != 0 and hidden in pull.stderr, pull.stderr
    finally:
        docker("rmi", "-f", pushed, retag, check=False)


def test_cross_account_ecr_api_with_registry_id(server: ServerProcess, ecr: Any, iam: Any, other_iam: Any,
                                                other_root: tuple[str, str]) -> None:
    # The other account's own repository: home root is not granted, so it "does not exist".
    theirs = f"xa/{unique('theirs')}"
    other_ecr = aws_client("ecr", server, *other_root)
    created = other_ecr.create_repository(repositoryName=theirs)["repository"]
    assert created["registryId"] == OTHER and created["repositoryArn"] == repo_arn(theirs, OTHER)
    message = f"The repository with name '{theirs}' does not exist in the registry with id '{OTHER}'"
    with raises("RepositoryNotFoundException", message):
        ecr.describe_repositories(registryId=OTHER, repositoryNames=[theirs])
    with raises("RepositoryNotFoundException", message):
        ecr.list_images(registryId=OTHER, repositoryName=theirs)
    with raises("RepositoryNotFoundException"):  # indistinguishable from a repository that is not there
        ecr.describe_repositories(registryId=OTHER, repositoryNames=[f"xa/{unique('nothing')}"])

    # The home account's repository, seen from a user of the other account.
    ours = f"xa/{unique('ours')}"
    ecr.create_repository(repositoryName=ours)
    puller = other_user(other_iam, policy(allow([*PULL_ACTIONS, "ecr:DescribeRepositories", "ecr:ListImages"])))
    no_identity = other_user(other_iam)
    puller_ecr, bare_ecr = puller.client("ecr", server), no_identity.client("ecr", server)
    with raises("RepositoryNotFoundException", f"'{ours}' does not exist in the registry with id '{HOME}'"):
        puller_ecr.list_images(registryId=HOME, repositoryName=ours)

    # Granting the whole account delegates to its identity policies: the user with a pull policy gets in,
    # the one without stays out.
    ecr.set_repository_policy(repositoryName=ours, policyText=grant(OTHER, [*REPO_PULL_ACTIONS, "ecr:ListImages"]))
    assert puller_ecr.list_images(registryId=HOME, repositoryName=ours)["imageIds"] == []
    with raises("RepositoryNotFoundException"):
        bare_ecr.list_images(registryId=HOME, repositoryName=ours)
    # Actions the repository policy does not grant stay hidden, even with an identity Allow.
    with raises("RepositoryNotFoundException"):
        puller_ecr.describe_repositories(registryId=HOME, repositoryNames=[ours])

    # The other account's users never see the home account's IAM entities.
    with raises("NoSuchEntity"):
        other_iam.get_user(UserName=new_user(iam, "home-only").name)


def test_v2_host_addresses_another_accounts_registry(server: ServerProcess, other_root: tuple[str, str],
                                                     other_iam: Any) -> None:
    """/v2 with Host "<account>.<anything>" is that account's registry, as on ECR."""
    repo = f"xa/{unique('v2')}"
    their_host = {"Host": f"{OTHER}.registry.test:{server.port}"}
    layer = b"cross-account layer " + unique("x").encode()
    digest = sha256(layer)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        # The other account's root pushes a blob into its own registry (created on push).
        pushed = c.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=layer,
                        headers=their_host, auth=other_root)
        assert pushed.status_code == 201, pushed.text
        assert aws_client("ecr", server, *other_root).describe_repositories(repositoryNames=[repo])[
            "repositories"][0]["registryId"] == OTHER
        # Home root: not in its own registry, and not granted in the other one.
        home = (server.key_id, server.secret)
        for headers in ({}, their_host):
            r = c.head(f"/v2/{repo}/blobs/{digest}", headers=headers, auth=home)
            assert r.status_code == 404, (headers, r.status_code)
            r = c.get(f"/v2/{repo}/tags/list", headers=headers, auth=home)
            assert r.status_code == 404 and r.json()["errors"][0]["code"] == "NAME_UNKNOWN", r.text
        # The other account grants the home account: home root (an account root) needs nothing more.
        aws_client("ecr", server, *other_root).set_repository_policy(
            repositoryName=repo, policyText=grant(HOME, [*REPO_PULL_ACTIONS, "ecr:ListImages"]))
        assert c.head(f"/v2/{repo}/blobs/{digest}", headers=their_host, auth=home).status_code == 200
        assert c.get(f"/v2/{repo}/blobs/{digest}", headers=their_host, auth=home).content == layer
        assert c.get(f"/v2/{repo}/tags/list", headers=their_host, auth=home).json() == {"name": repo, "tags": []}
        # ...but not a push.
        r = c.post(f"/v2/{repo}/blobs/uploads/", headers=their_host, auth=home)
        assert r.status_code == 404 and r.json()["errors"][0]["code"] == "NAME_UNKNOWN", r.text
