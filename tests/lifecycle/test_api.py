"""Lifecycle policies over the ECR API (boto3 against a live server), then `cargohold lifecycle run`.

The server is this module's own, so a lifecycle run (which applies every repository's policy) only meets
repositories these tests made. Images are pushed now, so the policies here count images rather than age
them (ages are covered with a fixed clock in test_service.py).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.ecr.helpers import ACCOUNT, build_image, ecr_client, push_ecr, raises, unique_name
from tests.lifecycle.helpers import cargohold
from tests.support.server import ServerProcess, cleanup, temp_server

pytestmark = pytest.mark.timeout(90)

CONSTRAINT = ("Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: "
              "'Lifecycle policy validation failure: ")


@pytest.fixture(scope="module")
def srv() -> Iterator[ServerProcess]:
    server = temp_server(env={"CARGOHOLD_GC_INTERVAL": "0", "CARGOHOLD_LIFECYCLE_INTERVAL": "0"}).start()
    try:
        yield server
    finally:
        cleanup(server)


@pytest.fixture(scope="module")
def ecr(srv: ServerProcess) -> Any:
    return ecr_client(srv)


@pytest.fixture()
def repo(ecr: Any) -> str:
    name = unique_name("lifecycle")
    ecr.create_repository(repositoryName=name)
    return name


def rule(priority: int, status: str, number: int, *, prefixes: list[str] | None = None,
         count_type: str = "imageCountMoreThan") -> dict[str, Any]:
    selection: dict[str, Any] = {"tagStatus": status, "countType": count_type, "countNumber": number}
    if count_type != "imageCountMoreThan":
        selection["countUnit"] = "days"
    if prefixes is not None:
        selection["tagPrefixList"] = prefixes
    return {"rulePriority": priority, "description": f"rule {priority}", "selection": selection,
            "action": {"type": "expire"}}


def policy(*rules: dict[str, Any]) -> str:
    return json.dumps({"rules": list(rules)}, indent=2)


def wait_preview(ecr: Any, repo: str, **kwargs: Any) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        out: dict[str, Any] = ecr.get_lifecycle_policy_preview(repositoryName=repo, **kwargs)
        if out["status"] != "IN_PROGRESS":
            return out
        assert time.monotonic() < deadline, "the preview did not complete"
        time.sleep(0.05)


# -- PutLifecyclePolicy validation ----------------------------------------------------------------------

VALID_RULE = rule(1, "untagged", 1)


def _with(**selection: Any) -> str:
    doc = json.loads(json.dumps(VALID_RULE))
    doc["selection"].update(selection)
    doc["selection"] = {k: v for k, v in doc["selection"].items() if v is not None}
    return policy(doc)


INVALID: list[Any] = [
    pytest.param("this is not a lifecycle policy", "Could not map policyString into LifecyclePolicy.",
                 id="not-json"),
    pytest.param('["rules"]', "Could not map policyString into LifecyclePolicy.", id="not-an-object"),
    pytest.param('{"rules": []}', "array is too short: must have at least 1 elements but instance has 0 elements",
                 id="no-rules"),
    pytest.param('{"rulez": []}', 'object has missing required properties (["rules"])', id="no-rules-key"),
    pytest.param(json.dumps({"rules": [{"rulePriority": 1, "action": {"type": "expire"}}]}),
                 'object has missing required properties (["selection"])', id="no-selection"),
    pytest.param(_with(countNumber=0), "numeric instance is lower than the required minimum (minimum: 1, found: 0)",
                 id="count-zero"),
    pytest.param(_with(countNumber="5"),
                 'instance type (string) does not match any allowed primitive type (allowed: ["integer"])',
                 id="count-string"),
    pytest.param(_with(tagStatus="latest"),
                 'instance value ("latest") not found in enum (possible values: ["tagged","untagged","any"])',
                 id="tag-status"),
    pytest.param(_with(countType="imageCountLessThan"),
                 'instance value ("imageCountLessThan") not found in enum',
                 id="count-type"),
    pytest.param(_with(countType="sinceImagePushed"), "countUnit", id="age-without-unit"),
    pytest.param(_with(countUnit="days"), "countUnit", id="count-with-unit"),
    pytest.param(_with(countType="sinceImagePushed", countUnit="hours"),
                 'instance value ("hours") not found in enum (possible values: ["days"])', id="unit-hours"),
    pytest.param(_with(tagStatus="tagged"), "tagPrefixList", id="tagged-without-list"),
    pytest.param(_with(tagPrefixList=["v"]), "tagged", id="untagged-with-prefixes"),
    pytest.param(_with(tagStatus="tagged", tagPrefixList=["v"], tagPatternList=["v*"]), "not both",
                 id="prefixes-and-patterns"),
    pytest.param(_with(tagStatus="tagged", tagPatternList=["*a*b*c*d*"]), "wildcards", id="five-wildcards"),
    pytest.param(_with(tagStatus="tagged", tagPrefixList=[]),
                 "array is too short: must have at least 1 elements but instance has 0 elements",
                 id="empty-prefix-list"),
    pytest.param(policy(rule(1, "untagged", 1), rule(1, "tagged", 1, prefixes=["v"])), "rulePriority",
                 id="duplicate-priority"),
    pytest.param(policy(rule(1, "untagged", 1), rule(2, "untagged", 5)), "Untagged", id="two-untagged-rules"),
    pytest.param(policy(rule(1, "any", 1), rule(2, "untagged", 5)), "tagStatus=ANY", id="any-not-last"),
    pytest.param(policy(rule(1, "tagged", 1, prefixes=["v"]), rule(2, "tagged", 2, prefixes=["v"])),
                 "prefixes", id="same-prefixes-twice"),
    pytest.param(json.dumps({"rules": [{**VALID_RULE, "action": {"type": "delete"}}]}),
                 'instance value ("delete") not found in enum', id="action-type"),
    pytest.param(json.dumps({"rules": [{**VALID_RULE, "priority": 3}]}),
                 'object instance has properties which are not allowed by the schema: (["priority"])',
                 id="unknown-key"),
]


@pytest.mark.parametrize(("text", "detail"), INVALID)
def test_put_rejects_invalid_policy_with_ecr_wording(ecr: Any, repo: str, text: str, detail: str) -> None:
    with raises("InvalidParameterException") as info:
        ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=text.ljust(100))  # the model's minimum
    message = info.value.response["Error"]["Message"]
    assert message.startswith(CONSTRAINT) and message.endswith("'"), message
    assert detail in message, message
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with raises("LifecyclePolicyNotFoundException"):  # nothing was stored
        ecr.get_lifecycle_policy(repositoryName=repo)
    with raises("InvalidParameterException", "Lifecycle policy validation failure"):  # previews check it too
        ecr.start_lifecycle_policy_preview(repositoryName=repo, lifecyclePolicyText=text.ljust(100))


def test_policy_length_limit(ecr: Any, repo: str) -> None:
    text = policy(rule(1, "untagged", 3))
    longest = text + " " * (30_720 - len(text))  # whitespace keeps it valid JSON
    out = ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=longest)
    assert len(out["lifecyclePolicyText"]) == 30_720
    with pytest.raises(Exception) as info:
        ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=longest + " ")
    error = info.value.response["Error"]  # type: ignore[attr-defined]
    assert error["Code"] in ("ValidationException", "InvalidParameterException"), error
    assert "30720" in error["Message"], error
    # The stored policy is still the previous one.
    assert len(ecr.get_lifecycle_policy(repositoryName=repo)["lifecyclePolicyText"]) == 30_720


def test_get_put_delete_round_trip(ecr: Any, repo: str) -> None:
    with raises("LifecyclePolicyNotFoundException",
                f"Lifecycle policy does not exist for the repository with name '{repo}' in the registry "
                f"with id '{ACCOUNT}'"):
        ecr.get_lifecycle_policy(repositoryName=repo)
    with raises("LifecyclePolicyNotFoundException", repo):
        ecr.delete_lifecycle_policy(repositoryName=repo)
    first, second = policy(rule(1, "untagged", 3)), policy(rule(1, "any", 7))
    put = ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=first)
    assert put["registryId"] == ACCOUNT and put["repositoryName"] == repo
    assert json.loads(put["lifecyclePolicyText"]) == json.loads(first)
    ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=second)  # replaces
    got = ecr.get_lifecycle_policy(repositoryName=repo)
    assert json.loads(got["lifecyclePolicyText"]) == json.loads(second)
    assert "lastEvaluatedAt" not in got  # never evaluated by a run yet
    deleted = ecr.delete_lifecycle_policy(repositoryName=repo)
    assert json.loads(deleted["lifecyclePolicyText"]) == json.loads(second)
    with raises("LifecyclePolicyNotFoundException"):
        ecr.get_lifecycle_policy(repositoryName=repo)
    with raises("RepositoryNotFoundException"):
        ecr.put_lifecycle_policy(repositoryName=unique_name("absent"), lifecyclePolicyText=first)


# -- previews, then the command line ------------------------------------------------------------------------

# Pushed oldest first. With the policy below:
#   rule 1 (release*, keep 2): r4, r3 kept -> r2, r1;  rule 2 (untagged, keep 1): u3 kept -> u2, u1;
#   rule 3 (any, keep 4): d3 r4 u3 d2 are the 4 newest; of the rest r3 r2 r1 (rule 1's), u2 u1 (rule 2's)
#   belong to earlier rules, which leaves d1.
HISTORY = [("r1", ["release-1"]), ("u1", []), ("r2", ["release-2"]), ("d1", ["dev-1"]), ("u2", []),
           ("r3", ["release-3"]), ("d2", ["dev-2"]), ("u3", []), ("r4", ["release-4"]), ("d3", ["dev-3", "latest"])]
POLICY = policy(rule(1, "tagged", 2, prefixes=["release"]), rule(2, "untagged", 1), rule(3, "any", 4))
EXPECTED = {"r1": 1, "r2": 1, "u1": 2, "u2": 2, "d1": 3}


def push_history(ecr: Any, repo: str) -> dict[str, str]:
    """name -> digest, pushed in HISTORY's order (each push takes several requests, so times differ)."""
    names: dict[str, str] = {}
    for name, tags in HISTORY:
        image = build_image([os.urandom(64)], label=f"{repo}-{name}")
        push_ecr(ecr, repo, image, tags[0] if tags else None)
        for extra in tags[1:]:
            ecr.put_image(repositoryName=repo, imageManifest=image.manifest.decode(), imageTag=extra)
        names[name] = image.digest
    return names


def describe(ecr: Any, repo: str) -> dict[str, dict[str, Any]]:
    pages = ecr.get_paginator("describe_images").paginate(repositoryName=repo)
    return {d["imageDigest"]: d for page in pages for d in page["imageDetails"]}


def test_preview_not_found_before_any_preview(ecr: Any, repo: str) -> None:
    with raises("LifecyclePolicyPreviewNotFoundException",
                f"Lifecycle policy preview does not exist for the repository with name '{repo}' in the "
                f"registry with id '{ACCOUNT}'"):
        ecr.get_lifecycle_policy_preview(repositoryName=repo)
    with raises("LifecyclePolicyNotFoundException"):  # no text given and none saved
        ecr.start_lifecycle_policy_preview(repositoryName=repo)
    with raises("RepositoryNotFoundException"):
        ecr.start_lifecycle_policy_preview(repositoryName=unique_name("absent"), lifecyclePolicyText=POLICY)


def test_preview_then_cli_dry_run_and_run(ecr: Any, repo: str, srv: ServerProcess) -> None:
    names = push_history(ecr, repo)
    by_digest = {d: n for n, d in names.items()}
    before = describe(ecr, repo)
    assert set(before) == set(names.values())
    ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=POLICY)

    started = ecr.start_lifecycle_policy_preview(repositoryName=repo)
    assert started["status"] == "IN_PROGRESS"
    assert started["repositoryName"] == repo and started["registryId"] == ACCOUNT
    assert json.loads(started["lifecyclePolicyText"]) == json.loads(POLICY)

    preview = wait_preview(ecr, repo)
    assert preview["status"] == "COMPLETE"
    assert json.loads(preview["lifecyclePolicyText"]) == json.loads(POLICY)
    assert preview["summary"] == {"expiringImageTotalCount": len(EXPECTED)}
    assert "nextToken" not in preview
    results = preview["previewResults"]
    assert {by_digest[r["imageDigest"]]: r["appliedRulePriority"] for r in results} == EXPECTED
    tags = dict(HISTORY)
    for r in results:
        name = by_digest[r["imageDigest"]]
        assert r["action"] == {"type": "EXPIRE"}
        assert sorted(r.get("imageTags", [])) == sorted(tags[name])
        assert r["imagePushedAt"] == before[r["imageDigest"]]["imagePushedAt"]
        assert isinstance(r["imagePushedAt"], datetime.datetime)

    # filter.tagStatus
    tagged = wait_preview(ecr, repo, filter={"tagStatus": "TAGGED"})["previewResults"]
    assert {by_digest[r["imageDigest"]] for r in tagged} == {"r1", "r2", "d1"}
    untagged = wait_preview(ecr, repo, filter={"tagStatus": "UNTAGGED"})["previewResults"]
    assert {by_digest[r["imageDigest"]] for r in untagged} == {"u1", "u2"}
    any_status = wait_preview(ecr, repo, filter={"tagStatus": "ANY"})["previewResults"]
    assert {r["imageDigest"] for r in any_status} == {r["imageDigest"] for r in results}
    # imageIds
    picked = wait_preview(ecr, repo, imageIds=[{"imageTag": "release-1"}, {"imageDigest": names["u2"]},
                                               {"imageTag": "latest"}])["previewResults"]
    assert {by_digest[r["imageDigest"]] for r in picked} == {"r1", "u2"}

    # Pagination: pages of 2, every result once.
    seen: list[str] = []
    token: str | None = None
    pages = 0
    while True:
        kwargs: dict[str, Any] = {"maxResults": 2}
        if token:
            kwargs["nextToken"] = token
        page = wait_preview(ecr, repo, **kwargs)
        pages += 1
        assert len(page["previewResults"]) <= 2
        assert page["summary"] == {"expiringImageTotalCount": len(EXPECTED)}
        seen += [r["imageDigest"] for r in page["previewResults"]]
        token = page.get("nextToken")
        if not token:
            break
    assert pages == 3
    assert sorted(seen) == sorted(r["imageDigest"] for r in results)
    paginated = [r["imageDigest"] for p in ecr.get_paginator("get_lifecycle_policy_preview").paginate(
        repositoryName=repo, PaginationConfig={"PageSize": 2}) for r in p["previewResults"]]
    assert sorted(paginated) == sorted(seen)

    # The command line, beside the running server: a dry run prints exactly the preview's images...
    line = re.compile(r"^(would expire|expired)\s+(\S+)@(sha256:[0-9a-f]{64})\s+tags=(\S+)\s+pushed=\S+\s+rule=(\d+)$")
    dry = cargohold("lifecycle", "run", "--dry-run", data_dir=srv.data_dir)
    listed = [m.groups() for m in map(line.match, dry.stdout.splitlines()) if m and m.group(2) == repo]
    assert {(digest, int(priority)) for verb, _, digest, _, priority in listed if verb == "would expire"} == {
        (r["imageDigest"], r["appliedRulePriority"]) for r in results}
    for _, _, digest, tag_text, _ in listed:
        assert tag_text == (",".join(sorted(tags[by_digest[digest]])) or "<untagged>")
    assert "image(s) would expire." in dry.stdout
    assert set(describe(ecr, repo)) == set(names.values())  # ...and deletes nothing
    assert "lastEvaluatedAt" not in ecr.get_lifecycle_policy(repositoryName=repo)

    # ...and a real run deletes exactly them.
    ran = time.time()
    real = cargohold("lifecycle", "run", data_dir=srv.data_dir)
    expired = {m.group(3) for m in map(line.match, real.stdout.splitlines())
               if m and m.group(1) == "expired" and m.group(2) == repo}
    assert expired == {r["imageDigest"] for r in results}
    after = describe(ecr, repo)
    assert set(after) == set(names.values()) - expired
    assert {by_digest[d] for d in after} == {"u3", "r3", "d2", "r4", "d3"}
    assert sorted(after[names["d3"]]["imageTags"]) == ["dev-3", "latest"]
    evaluated = ecr.get_lifecycle_policy(repositoryName=repo)["lastEvaluatedAt"]
    assert abs(evaluated.timestamp() - ran) < 30

    # The server kept running throughout, and a new preview now finds nothing left to expire.
    ecr.start_lifecycle_policy_preview(repositoryName=repo)
    final = wait_preview(ecr, repo)
    assert final["previewResults"] == [] and final["summary"] == {"expiringImageTotalCount": 0}

    # The expirations are in the audit trail, by the lifecycle principal.
    audit = cargohold("audit", "--json", "--principal", f"arn:aws:iam::{ACCOUNT}:cargohold/lifecycle",
                      "--limit", "1000", data_dir=srv.data_dir)
    events = [json.loads(x) for x in audit.stdout.splitlines() if x.strip()]
    mine = {e["resource"].rsplit("@", 1)[1]: e for e in events if f":repository/{repo}@" in e["resource"]}
    assert set(mine) == expired
    for digest, event in mine.items():
        assert event["action"] == "ecr:BatchDeleteImage" and event["allowed"]
        assert event["policy"] == f"lifecycle rule {EXPECTED[by_digest[digest]]}"


def test_preview_of_a_text_not_saved(ecr: Any, repo: str) -> None:
    names = {}
    for i in range(3):
        image = build_image([os.urandom(32)])
        push_ecr(ecr, repo, image, f"v{i}")
        names[image.digest] = f"v{i}"
    text = policy(rule(1, "any", 1))
    started = ecr.start_lifecycle_policy_preview(repositoryName=repo, lifecyclePolicyText=text)
    assert started["status"] == "IN_PROGRESS"
    preview = wait_preview(ecr, repo)
    assert sorted(names[r["imageDigest"]] for r in preview["previewResults"]) == ["v0", "v1"]
    assert json.loads(preview["lifecyclePolicyText"]) == json.loads(text)
    with raises("LifecyclePolicyNotFoundException"):  # previewing does not save the policy
        ecr.get_lifecycle_policy(repositoryName=repo)


def test_second_preview_while_one_is_in_progress(ecr: Any, repo: str) -> None:
    """Starting a second preview at once may find the first still running (then ECR's error) or already
    complete (then it simply starts again); either way the final preview completes."""
    text = policy(rule(1, "untagged", 1))
    ecr.start_lifecycle_policy_preview(repositoryName=repo, lifecyclePolicyText=text)
    try:
        ecr.start_lifecycle_policy_preview(repositoryName=repo, lifecyclePolicyText=text)
    except Exception as err:  # racy by nature: the first evaluation of an empty repository is quick
        error = err.response["Error"]  # type: ignore[attr-defined]
        assert error["Code"] == "LifecyclePolicyPreviewInProgressException", error
    assert wait_preview(ecr, repo)["status"] == "COMPLETE"
