"""`cargohold audit`: every decision with who, what, where from, the verdict and what decided it;
and the server log never carries a secret or a token.
"""

from __future__ import annotations

import base64
import json
import re
import time
from typing import Any

import httpx

from tests.policy.helpers import HOME, REGION, cargohold, new_user, raises, unique, wait_for_count
from tests.support.server import ServerProcess

_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ) (ALLOW|DENY) {1,2}(\S+) (\S+) (\S+) from (\S*)(?: via (\S+))? "
                   r"\[(.+)\]$")


def audit(server: ServerProcess, *args: str, subprocess_: bool = False) -> list[str]:
    return cargohold("audit", "--data-dir", str(server.data_dir), *args, subprocess_=subprocess_).stdout.splitlines()


def test_audit_lists_decisions_with_the_deciding_statement(server: ServerProcess, iam: Any, ecr: Any) -> None:
    repo = f"audit/{unique('repo')}"
    ecr.create_repository(repositoryName=repo)
    user = new_user(iam, "audited", json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "ReadRepos", "Effect": "Allow", "Action": ["ecr:DescribeRepositories", "ecr:ListImages"],
        "Resource": "*"}]}), policy_name="read")
    ecr.set_repository_policy(repositoryName=repo, policyText=json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "NoListing", "Effect": "Deny", "Principal": {"AWS": user.arn}, "Action": "ecr:ListImages"}]}))
    user_ecr = user.client("ecr", server)
    user_ecr.describe_repositories(repositoryNames=[repo])
    with raises("AccessDeniedException", "explicit deny in a resource-based policy"):
        user_ecr.list_images(repositoryName=repo)
    with raises("AccessDeniedException", "no identity-based policy allows"):
        user_ecr.create_repository(repositoryName=f"audit/{unique('nope')}")
    arn = f"arn:aws:ecr:{REGION}:{HOME}:repository/{repo}"

    # Written ~1 s after the decisions.
    lines = wait_for_count(lambda: audit(server, "--principal", user.arn), 3)
    assert len(lines) == 3, lines
    parsed = [_LINE.match(line) for line in lines]
    assert all(parsed), lines
    rows = {m[4]: m for m in parsed if m}
    assert set(rows) == {"ecr:DescribeRepositories", "ecr:ListImages", "ecr:CreateRepository"}
    allowed = rows["ecr:DescribeRepositories"]
    assert allowed[2] == "ALLOW" and allowed[3] == user.arn and allowed[5] == arn and allowed[6] == "127.0.0.1"
    assert allowed[8] == f"{user.arn} inline:read ReadRepos"
    denied = rows["ecr:ListImages"]
    assert denied[2] == "DENY" and denied[5] == arn and denied[8] == "repository policy NoListing"
    implicit = rows["ecr:CreateRepository"]
    assert implicit[2] == "DENY" and implicit[8] == "implicit_deny"
    assert lines[0].split()[3] == "ecr:CreateRepository"  # newest first

    only_denied = audit(server, "--principal", user.arn, "--denied")
    assert sorted(line.split()[3] for line in only_denied) == ["ecr:CreateRepository", "ecr:ListImages"]
    assert all(" DENY " in line for line in only_denied)
    by_action = audit(server, "--principal", user.arn, "--action", "ecr:ListImages")
    assert by_action == [line for line in lines if " ecr:ListImages " in line]
    assert len(audit(server, "--principal", user.arn, "--limit", "1")) == 1
    assert audit(server, "--principal", user.arn, "--since", "10") == lines

    events = [json.loads(line) for line in audit(server, "--principal", user.arn, "--json", subprocess_=True)]
    by = {e["action"]: e for e in events}
    assert by["ecr:ListImages"] | {"at": 0, "time": "", "request_id": ""} == {
        "at": 0, "time": "", "request_id": "", "principal_arn": user.arn, "action": "ecr:ListImages",
        "resource": arn, "source_ip": "127.0.0.1", "endpoint_id": "", "allowed": False, "reason": "explicit_deny",
        "policy": "repository policy", "statement": "NoListing"}
    assert by["ecr:DescribeRepositories"]["allowed"] is True
    assert by["ecr:DescribeRepositories"]["reason"] == "allowed"
    assert by["ecr:CreateRepository"]["policy"] is None and by["ecr:CreateRepository"]["reason"] == "implicit_deny"
    assert all(e["request_id"] and e["time"].endswith("Z") for e in events)


def test_v2_decisions_are_audited_too(server: ServerProcess, iam: Any, ecr: Any) -> None:
    repo = f"audit/{unique('v2')}"
    ecr.create_repository(repositoryName=repo)
    user = new_user(iam, "v2audit", json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "ecr:ListImages", "Resource": "*"}]}))
    with httpx.Client(base_url=server.url, auth=(user.key_id, user.secret), timeout=30) as c:
        assert c.get(f"/v2/{repo}/tags/list").status_code == 200
        assert c.get(f"/v2/{repo}/manifests/latest").status_code == 403
    events = wait_for_count(lambda: [json.loads(line) for line in audit(server, "--principal", user.arn, "--json")],
                            2)
    assert {(e["action"], e["allowed"]) for e in events} == {("ecr:ListImages", True), ("ecr:BatchGetImage", False)}
    assert events[0]["statement"] is None  # the denial: nothing allowed it
    listing = next(e for e in events if e["allowed"])
    assert listing["statement"] == "#0"  # no Sid: the statement's index


def test_no_secret_or_token_in_the_server_log(server: ServerProcess, iam: Any, ecr: Any) -> None:
    user = new_user(iam, "secretive", json.dumps({"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": ["ecr:GetAuthorizationToken", "ecr:DescribeRepositories"], "Resource": "*"}]}))
    user_ecr = user.client("ecr", server)
    data = user_ecr.get_authorization_token()["authorizationData"][0]
    encoded = data["authorizationToken"]
    token = base64.b64decode(encoded).decode().split(":", 1)[1]
    with httpx.Client(base_url=server.url, timeout=30) as c:
        # The secret and the token travel in Basic credentials, the token also as a Bearer token.
        assert c.get("/v2/_catalog", auth=(user.key_id, user.secret)).status_code == 200
        assert c.get("/v2/_catalog", auth=("AWS", token)).status_code == 200
        bearer = c.get("/token", auth=("AWS", token)).json()["token"]
        assert c.get("/v2/_catalog", headers={"Authorization": f"Bearer {bearer}"}).status_code == 200
        # Failures: a tampered token, a wrong secret, a refused action, a malformed header.
        assert c.get("/v2/_catalog", auth=("AWS", token[:-4] + "AAAA")).status_code == 401
        assert c.get("/v2/_catalog", auth=(user.key_id, user.secret[::-1])).status_code == 401
        assert c.get(f"/v2/{unique('x')}/tags/list", auth=("AWS", token)).status_code == 403
        assert c.get("/v2/", headers={"Authorization": f"Basic {token}"}).status_code == 401
    with raises("AccessDeniedException"):
        user_ecr.create_repository(repositoryName=unique("nope"))
    time.sleep(1.5)  # let the audit writer flush, in case it logged anything

    log = server.log()
    assert "listening on" in log  # the log is the server's console output
    for secret in (user.secret, token, encoded, bearer, server.secret):
        assert secret not in log, "a secret or token reached the server log"
    recorded = "\n".join(audit(server, "--principal", user.arn, "--json"))
    assert recorded
    for secret in (user.secret, token, bearer):
        assert secret not in recorded
