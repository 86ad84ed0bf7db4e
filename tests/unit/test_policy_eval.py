"""Policy evaluation as a table: policies, request, expected decision.

Covers Action/Resource wildcards, NotAction, NotResource, Principal and NotPrincipal, deny-overrides,
same-account and cross-account logic, the account root and service principals.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from cargohold.domain.policy import Decision, RequestFacts, evaluate, parse_policy

ACCOUNT = "111122223333"      # owns the repository
OTHER = "444455556666"        # another account
ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"
BOB = f"arn:aws:iam::{ACCOUNT}:user/bob"
CAROL = f"arn:aws:iam::{OTHER}:user/carol"
ROOT = f"arn:aws:iam::{ACCOUNT}:root"
OTHER_ROOT = f"arn:aws:iam::{OTHER}:root"
REPO = f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/team/app"
R = f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/"
PULL = "ecr:BatchGetImage"
PUSH = "ecr:PutImage"

ALLOW = ("allowed", True)
DENY = ("explicit_deny", False)
NONE = ("implicit_deny", False)


def allow(action: Any = "ecr:*", resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action: Any = "ecr:*", resource: Any = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


def grant(principal: Any, action: Any = "ecr:*", effect: str = "Allow", **extra: Any) -> dict[str, Any]:
    """A repository-policy statement (no Resource: it applies to the repository it is attached to)."""
    return {"Effect": effect, "Principal": principal, "Action": action, **extra}


def exclude(not_principal: Any, action: Any = "ecr:*", effect: str = "Allow", **extra: Any) -> dict[str, Any]:
    return {"Effect": effect, "NotPrincipal": not_principal, "Action": action, **extra}


@dataclass
class Case:
    name: str
    identity: list[list[dict[str, Any]]] = field(default_factory=list)  # one list of statements per policy
    resource: list[list[dict[str, Any]]] = field(default_factory=list)
    expect: tuple[str, bool] = NONE
    policy: str | None = None         # expected Decision.policy, e.g. "id0" or "repo0"
    statement: str | None = None      # expected Decision.statement
    action: str = PULL
    resource_arn: str = REPO
    principal: str = ALICE
    account: str = ACCOUNT
    root: bool = False
    context: dict[str, Any] = field(default_factory=dict)


def _i(*statements: dict[str, Any]) -> list[list[dict[str, Any]]]:
    return [list(statements)]


CASES: list[Case] = [
    # --- no policies / nothing applicable ---------------------------------------------------------------
    Case("no policies at all", expect=NONE),
    Case("allow for another service", _i(allow("s3:*")), expect=NONE),
    Case("allow for another resource", _i(allow(resource=R + "other")), expect=NONE),
    # --- Action wildcards (case-insensitive) --------------------------------------------------------------
    Case("action exact", _i(allow(PULL)), expect=ALLOW, policy="id0", statement="#0"),
    Case("action lower-case in policy", _i(allow("ecr:batchgetimage")), expect=ALLOW),
    Case("action upper-case service prefix", _i(allow("ECR:BatchGetImage")), expect=ALLOW),
    Case("action lower-case in request", _i(allow(PULL)), action="ecr:batchgetimage", expect=ALLOW),
    Case("action mixed case request", _i(allow(PULL)), action="ECR:BATCHGETIMAGE", expect=ALLOW),
    Case("action service wildcard", _i(allow("ecr:*")), expect=ALLOW),
    Case("action star", _i(allow("*")), expect=ALLOW),
    Case("action prefix wildcard", _i(allow("ecr:Batch*")), expect=ALLOW),
    Case("action prefix wildcard miss", _i(allow("ecr:Batch*")), action=PUSH, expect=NONE),
    Case("action suffix wildcard", _i(allow("ecr:*Image")), action=PUSH, expect=ALLOW),
    Case("action suffix wildcard miss", _i(allow("ecr:*Image")), action="ecr:PutImageTagMutability", expect=NONE),
    Case("action inner wildcard", _i(allow("ecr:Get*Token")), action="ecr:GetAuthorizationToken", expect=ALLOW),
    Case("action question mark", _i(allow("ecr:?utImage")), action=PUSH, expect=ALLOW),
    Case("action two question marks", _i(allow("ecr:??tImage")), action=PUSH, expect=ALLOW),
    Case("action question mark is one char", _i(allow("ecr:?Image")), action=PUSH, expect=NONE),
    Case("action wildcard in service prefix", _i(allow("ec?:PutImage")), action=PUSH, expect=ALLOW),
    Case("action other service", _i(allow("s3:*")), action=PUSH, expect=NONE),
    Case("action similar service", _i(allow("ecr:*")), action="ecr-public:GetAuthorizationToken", expect=NONE),
    Case("action regex metachar is literal", _i(allow("ecr:Put.mage")), action=PUSH, expect=NONE),
    Case("action list", _i(allow(["s3:GetObject", PUSH])), action=PUSH, expect=ALLOW),
    Case("action list miss", _i(allow(["s3:GetObject", PUSH])), action=PULL, expect=NONE),
    Case("action no partial match", _i(allow("ecr:Put")), action=PUSH, expect=NONE),
    # --- NotAction ------------------------------------------------------------------------------------------
    Case("NotAction allows the others", _i({"Effect": "Allow", "NotAction": "ecr:DeleteRepository",
                                            "Resource": "*"}), action=PUSH, expect=ALLOW),
    Case("NotAction excludes listed", _i({"Effect": "Allow", "NotAction": "ecr:DeleteRepository",
                                          "Resource": "*"}), action="ecr:DeleteRepository", expect=NONE),
    Case("NotAction wildcard excludes", _i({"Effect": "Allow", "NotAction": "ecr:Delete*", "Resource": "*"}),
         action="ecr:DeleteRepositoryPolicy", expect=NONE),
    Case("NotAction is case-insensitive", _i({"Effect": "Allow", "NotAction": "ECR:deleterepository",
                                              "Resource": "*"}), action="ecr:DeleteRepository", expect=NONE),
    Case("NotAction other service", _i({"Effect": "Allow", "NotAction": "s3:*", "Resource": "*"}), expect=ALLOW),
    Case("NotAction list", _i({"Effect": "Allow", "NotAction": ["s3:*", "ecr:Put*"], "Resource": "*"}),
         action=PUSH, expect=NONE),
    Case("Deny NotAction denies the rest", _i(allow("*"), {"Sid": "OnlyPull", "Effect": "Deny",
                                                           "NotAction": PULL, "Resource": "*"}),
         action=PUSH, expect=DENY, policy="id0", statement="OnlyPull"),
    Case("Deny NotAction spares the listed", _i(allow("*", Sid="All"), {"Effect": "Deny", "NotAction": PULL,
                                                                       "Resource": "*"}),
         action=PULL, expect=ALLOW, statement="All"),
    # --- Resource wildcards (case-sensitive) --------------------------------------------------------------
    Case("resource exact", _i(allow(resource=REPO)), expect=ALLOW),
    Case("resource star", _i(allow(resource="*")), expect=ALLOW),
    Case("resource trailing wildcard", _i(allow(resource=R + "team/*")), expect=ALLOW),
    Case("resource all repositories", _i(allow(resource=R + "*")), expect=ALLOW),
    Case("resource region wildcard", _i(allow(resource=f"arn:aws:ecr:*:{ACCOUNT}:repository/team/app")),
         expect=ALLOW),
    Case("resource question marks", _i(allow(resource=f"arn:aws:ecr:us-east-?:{ACCOUNT}:repository/team/ap?")),
         expect=ALLOW),
    Case("resource every segment", _i(allow(resource="arn:aws:ecr:*:*:*")), expect=ALLOW),
    Case("resource star spans slashes", _i(allow(resource=R + "*app")), expect=ALLOW),
    Case("resource star spans colons", _i(allow(resource="arn:aws:ecr:*/app")), expect=ALLOW),
    Case("resource case-sensitive", _i(allow(resource=R + "Team/App")), expect=NONE),
    Case("resource other account", _i(allow(resource=f"arn:aws:ecr:us-east-1:{OTHER}:repository/team/app")),
         expect=NONE),
    Case("resource other region", _i(allow(resource=f"arn:aws:ecr:eu-west-1:{ACCOUNT}:repository/team/app")),
         expect=NONE),
    Case("resource no prefix match", _i(allow(resource=R + "team")), expect=NONE),
    Case("resource prefix with star", _i(allow(resource=R + "team*")), expect=ALLOW),
    Case("resource dot is literal", _i(allow(resource=R + "team.app")), expect=NONE),
    Case("resource list", _i(allow(resource=[R + "x", REPO])), expect=ALLOW),
    Case("resource list miss", _i(allow(resource=[R + "x", R + "y"])), expect=NONE),
    Case("resource question mark needs a char", _i(allow(resource=REPO + "?")), expect=NONE),
    # --- NotResource -----------------------------------------------------------------------------------------
    Case("NotResource allows the others", _i({"Effect": "Allow", "Action": "ecr:*",
                                              "NotResource": R + "secret/*"}), expect=ALLOW),
    Case("NotResource excludes listed", _i({"Effect": "Allow", "Action": "ecr:*", "NotResource": R + "secret/*"}),
         resource_arn=R + "secret/key", expect=NONE),
    Case("NotResource star excludes all", _i({"Effect": "Allow", "Action": "ecr:*", "NotResource": "*"}),
         expect=NONE),
    Case("Deny NotResource fences in", _i(allow("*", Sid="All"), {"Sid": "Fence", "Effect": "Deny",
                                                                 "Action": "*", "NotResource": R + "team/*"}),
         resource_arn=R + "other/app", expect=DENY, statement="Fence"),
    Case("Deny NotResource spares inside", _i(allow("*", Sid="All"), {"Sid": "Fence", "Effect": "Deny",
                                                                     "Action": "*", "NotResource": R + "team/*"}),
         expect=ALLOW, statement="All"),
    Case("NotAction and NotResource", _i({"Effect": "Allow", "NotAction": "ecr:Delete*",
                                          "NotResource": R + "secret/*"}), action=PUSH, expect=ALLOW),
    # --- deny overrides ---------------------------------------------------------------------------------------
    Case("deny in the same policy", _i(allow(Sid="A"), deny(PULL, Sid="D")), expect=DENY, policy="id0",
         statement="D"),
    Case("deny before allow", _i(deny(PULL, Sid="D"), allow(Sid="A")), expect=DENY, statement="D"),
    Case("deny in another identity policy", [[allow(Sid="A")], [deny(Sid="D")]], expect=DENY, policy="id1",
         statement="D"),
    Case("deny without a Sid is named by index", [[allow()], [allow(), deny()]], expect=DENY, policy="id1",
         statement="#1"),
    Case("deny of another action", _i(allow(), deny(PUSH)), expect=ALLOW),
    Case("deny of another resource", _i(allow(), deny(resource=R + "other")), expect=ALLOW),
    Case("deny with a failing condition", _i(allow(Sid="A"), deny(Condition={"Bool": {"aws:SecureTransport":
                                                                                     "false"}})),
         context={"aws:SecureTransport": True}, expect=ALLOW, statement="A"),
    Case("deny with a holding condition", _i(allow(), deny(Sid="Tls", Condition={"Bool": {"aws:SecureTransport":
                                                                                         "false"}})),
         context={"aws:SecureTransport": False}, expect=DENY, statement="Tls"),
    Case("deny BoolIfExists when missing", _i(allow(), deny(Sid="Tls", Condition={
        "BoolIfExists": {"aws:SecureTransport": "false"}})), expect=DENY, statement="Tls"),
    Case("resource deny beats identity allow", _i(allow()), [[grant("*", effect="Deny", Sid="No")]],
         expect=DENY, policy="repo0", statement="No"),
    Case("identity deny beats resource allow", _i(deny(Sid="No")), [[grant({"AWS": ALICE})]], expect=DENY,
         policy="id0", statement="No"),
    Case("resource deny naming the user", _i(allow()), [[grant({"AWS": ALICE}, effect="Deny")]], expect=DENY,
         policy="repo0", statement="#0"),
    Case("resource deny naming the account denies its users", _i(allow()), [[grant({"AWS": ACCOUNT},
                                                                                  effect="Deny")]],
         expect=DENY),
    Case("resource deny naming the account root ARN", _i(allow()), [[grant({"AWS": ROOT}, effect="Deny")]],
         expect=DENY),
    Case("resource deny naming someone else", _i(allow(Sid="A")), [[grant({"AWS": BOB}, effect="Deny")]],
         expect=ALLOW, policy="id0", statement="A"),
    Case("resource deny of another action", _i(allow()), [[grant("*", action=PUSH, effect="Deny")]],
         expect=ALLOW),
    Case("second resource policy denies", _i(allow()), [[grant({"AWS": ALICE})], [grant("*", effect="Deny")]],
         expect=DENY, policy="repo1"),
    # --- same account -----------------------------------------------------------------------------------------
    Case("same account: identity allow alone", _i(allow(Sid="I")), expect=ALLOW, policy="id0", statement="I"),
    Case("same account: resource allow naming the user", resource=[[grant({"AWS": ALICE}, Sid="R")]],
         expect=ALLOW, policy="repo0", statement="R"),
    Case("same account: resource allow naming the user in a list",
         resource=[[grant({"AWS": [BOB, ALICE]}, Sid="R")]], expect=ALLOW, statement="R"),
    Case("same account: resource allow Principal *", resource=[[grant("*")]], expect=ALLOW, policy="repo0"),
    Case("same account: resource allow AWS *", resource=[[grant({"AWS": "*"})]], expect=ALLOW),
    Case("same account: resource allow naming someone else", resource=[[grant({"AWS": BOB})]], expect=NONE),
    Case("same account: resource allow naming the account delegates", resource=[[grant({"AWS": ACCOUNT})]],
         expect=NONE),
    Case("same account: resource allow naming the root ARN delegates", resource=[[grant({"AWS": ROOT})]],
         expect=NONE),
    Case("same account: account grant plus identity allow", _i(allow(Sid="I")), [[grant({"AWS": ACCOUNT})]],
         expect=ALLOW, policy="id0", statement="I"),
    Case("same account: resource allow for another action", resource=[[grant({"AWS": ALICE}, action=PUSH)]],
         expect=NONE),
    Case("same account: resource allow with explicit Resource",
         resource=[[grant({"AWS": ALICE}, Resource=REPO)]], expect=ALLOW),
    Case("same account: resource allow with another Resource",
         resource=[[grant({"AWS": ALICE}, Resource=R + "other")]], expect=NONE),
    Case("same account: resource allow with condition held", resource=[[grant("*", Condition={
        "StringEquals": {"aws:PrincipalAccount": ACCOUNT}})]], expect=ALLOW),
    Case("same account: resource allow with condition failing", resource=[[grant("*", Condition={
        "StringEquals": {"aws:PrincipalAccount": OTHER}})]], expect=NONE),
    Case("same account: both allow, identity reported", _i(allow(Sid="I")), [[grant({"AWS": ALICE}, Sid="R")]],
         expect=ALLOW, policy="id0", statement="I"),
    Case("same account: first applicable allow reported", [[allow(PUSH, Sid="P")], [allow(Sid="S")]],
         expect=ALLOW, policy="id1", statement="S"),
    # --- cross account (CAROL in OTHER calls into ACCOUNT) --------------------------------------------------
    Case("cross: identity only", _i(allow()), principal=CAROL, account=OTHER, expect=NONE),
    Case("cross: resource only", resource=[[grant({"AWS": CAROL})]], principal=CAROL, account=OTHER,
         expect=NONE),
    Case("cross: resource only with Principal *", resource=[[grant("*")]], principal=CAROL, account=OTHER,
         expect=NONE),
    Case("cross: both, naming the user", _i(allow(Sid="I")), [[grant({"AWS": CAROL}, Sid="R")]],
         principal=CAROL, account=OTHER, expect=ALLOW, policy="repo0", statement="R"),
    Case("cross: both, naming the account id", _i(allow()), [[grant({"AWS": OTHER}, Sid="R")]],
         principal=CAROL, account=OTHER, expect=ALLOW, statement="R"),
    Case("cross: both, naming the account root ARN", _i(allow()), [[grant({"AWS": OTHER_ROOT}, Sid="R")]],
         principal=CAROL, account=OTHER, expect=ALLOW, statement="R"),
    Case("cross: both, Principal *", _i(allow()), [[grant("*", Sid="R")]], principal=CAROL, account=OTHER,
         expect=ALLOW, statement="R"),
    Case("cross: both, AWS *", _i(allow()), [[grant({"AWS": "*"})]], principal=CAROL, account=OTHER,
         expect=ALLOW),
    Case("cross: resource names a different account", _i(allow()), [[grant({"AWS": "999999999999"})]],
         principal=CAROL, account=OTHER, expect=NONE),
    Case("cross: resource names the owning account", _i(allow()), [[grant({"AWS": ACCOUNT})]],
         principal=CAROL, account=OTHER, expect=NONE),
    Case("cross: resource names another user of the account", _i(allow()),
         [[grant({"AWS": f"arn:aws:iam::{OTHER}:user/dave"})]], principal=CAROL, account=OTHER, expect=NONE),
    Case("cross: identity allows another action", _i(allow(PUSH)), [[grant({"AWS": OTHER})]],
         principal=CAROL, account=OTHER, expect=NONE),
    Case("cross: resource allows another action", _i(allow()), [[grant({"AWS": OTHER}, action=PUSH)]],
         principal=CAROL, account=OTHER, expect=NONE),
    Case("cross: resource deny of the account", _i(allow()), [[grant({"AWS": OTHER}),
                                                                grant({"AWS": OTHER}, effect="Deny", Sid="X")]],
         principal=CAROL, account=OTHER, expect=DENY, statement="X"),
    Case("cross: identity deny", _i(allow(), deny(Sid="X")), [[grant({"AWS": OTHER})]],
         principal=CAROL, account=OTHER, expect=DENY, policy="id0", statement="X"),
    Case("cross: identity allow with wildcard resource for the other account", _i(allow(resource=R + "*")),
         [[grant({"AWS": CAROL})]], principal=CAROL, account=OTHER, expect=ALLOW),
    Case("cross: resource grant with aws:PrincipalAccount condition", _i(allow()), [[grant("*", Condition={
        "StringEquals": {"aws:PrincipalAccount": [OTHER]}})]], principal=CAROL, account=OTHER, expect=ALLOW),
    Case("cross: resource grant with aws:PrincipalOrgID missing", _i(allow()), [[grant("*", Condition={
        "StringEquals": {"aws:PrincipalOrgID": "o-123"}})]], principal=CAROL, account=OTHER, expect=NONE),
    # --- the account root -------------------------------------------------------------------------------------
    Case("root: no policies", principal=ROOT, root=True, expect=ALLOW),
    Case("root: a resource policy for someone else", resource=[[grant({"AWS": BOB})]], principal=ROOT,
         root=True, expect=ALLOW, policy=None, statement=None),
    Case("root: resource policy naming the account", resource=[[grant({"AWS": ACCOUNT}, Sid="R")]],
         principal=ROOT, root=True, expect=ALLOW, policy="repo0", statement="R"),
    Case("root: resource deny of everyone", resource=[[grant("*", effect="Deny", Sid="X")]], principal=ROOT,
         root=True, expect=DENY, statement="X"),
    Case("root: resource deny of the account", resource=[[grant({"AWS": ROOT}, effect="Deny")]],
         principal=ROOT, root=True, expect=DENY),
    Case("root: resource deny of a user", resource=[[grant({"AWS": BOB}, effect="Deny")]], principal=ROOT,
         root=True, expect=ALLOW),
    Case("root: flag unset means no implicit grant", principal=ROOT, root=False, expect=NONE),
    Case("root: unset flag, account grant delegates", resource=[[grant({"AWS": ACCOUNT})]], principal=ROOT,
         expect=NONE),
    Case("root cross-account: no resource policy", principal=OTHER_ROOT, account=OTHER, root=True,
         expect=NONE),
    Case("root cross-account: resource names its account", resource=[[grant({"AWS": OTHER}, Sid="R")]],
         principal=OTHER_ROOT, account=OTHER, root=True, expect=ALLOW, policy="repo0", statement="R"),
    Case("root cross-account: resource names its root ARN", resource=[[grant({"AWS": OTHER_ROOT})]],
         principal=OTHER_ROOT, account=OTHER, root=True, expect=ALLOW),
    Case("root cross-account: resource Principal *", resource=[[grant("*")]], principal=OTHER_ROOT,
         account=OTHER, root=True, expect=ALLOW),
    Case("root cross-account: resource names a user only", resource=[[grant({"AWS": CAROL})]],
         principal=OTHER_ROOT, account=OTHER, root=True, expect=NONE),
    Case("root cross-account: resource names the owning account", resource=[[grant({"AWS": ACCOUNT})]],
         principal=OTHER_ROOT, account=OTHER, root=True, expect=NONE),
    # --- NotPrincipal (Deny only; the spared principal's account must be listed too) ---------------------
    Case("NotPrincipal deny: alice spared with her account", _i(allow(Sid="I")),
         [[exclude({"AWS": [ALICE, ACCOUNT]}, effect="Deny")]], expect=ALLOW, statement="I"),
    Case("NotPrincipal deny: alice spared with her root ARN", _i(allow(Sid="I")),
         [[exclude({"AWS": [ROOT, ALICE]}, effect="Deny")]], expect=ALLOW, statement="I"),
    Case("NotPrincipal deny: the user alone is not enough", _i(allow()),
         [[exclude({"AWS": ALICE}, effect="Deny", Sid="X")]], expect=DENY, statement="X"),
    Case("NotPrincipal deny: the account alone does not spare its users", _i(allow()),
         [[exclude({"AWS": ACCOUNT}, effect="Deny", Sid="X")]], principal=BOB, expect=DENY, statement="X"),
    Case("NotPrincipal deny: bob denied", _i(allow()),
         [[exclude({"AWS": [ALICE, ACCOUNT]}, effect="Deny", Sid="X")]], principal=BOB, expect=DENY,
         statement="X"),
    Case("NotPrincipal deny: AWS * spares everyone", _i(allow(Sid="I")),
         [[exclude({"AWS": "*"}, effect="Deny")]], principal=BOB, expect=ALLOW),
    Case("NotPrincipal deny: outsiders denied", _i(allow()),
         [[grant("*"), exclude({"AWS": [ALICE, ACCOUNT]}, effect="Deny", Sid="X")]],
         principal=CAROL, account=OTHER, expect=DENY, statement="X"),
    Case("NotPrincipal deny: outsider spared with its account", _i(allow()),
         [[grant({"AWS": OTHER}, Sid="R"), exclude({"AWS": [CAROL, OTHER]}, effect="Deny")]],
         principal=CAROL, account=OTHER, expect=ALLOW, statement="R"),
    Case("NotPrincipal deny with condition", _i(allow()), [[exclude({"AWS": ALICE}, effect="Deny", Condition={
        "Bool": {"aws:SecureTransport": "false"}})]], principal=BOB, context={"aws:SecureTransport": True},
         expect=ALLOW),
    Case("NotPrincipal deny of another action", _i(allow()), [[exclude({"AWS": ALICE}, action=PUSH,
                                                                       effect="Deny")]],
         principal=BOB, expect=ALLOW),
    Case("NotPrincipal root spared by the account id", [], [[exclude({"AWS": ACCOUNT}, effect="Deny")]],
         principal=ROOT, root=True, expect=ALLOW),
    Case("NotPrincipal root spared by the root ARN", [], [[exclude({"AWS": ROOT}, effect="Deny")]],
         principal=ROOT, root=True, expect=ALLOW),
    Case("NotPrincipal root denied when only a user is listed", [], [[exclude({"AWS": ALICE}, effect="Deny")]],
         principal=ROOT, root=True, expect=DENY),
    Case("NotPrincipal service spared by name", resource=[[grant({"Service": "codebuild.amazonaws.com"}, Sid="S"),
                                                           exclude({"Service": "codebuild.amazonaws.com"},
                                                                   effect="Deny")]],
         principal="codebuild.amazonaws.com", account="", expect=ALLOW, statement="S"),
    # --- service principals ------------------------------------------------------------------------------------
    Case("service principal granted", resource=[[grant({"Service": "codebuild.amazonaws.com"}, Sid="S")]],
         principal="codebuild.amazonaws.com", account="", expect=ALLOW, statement="S"),
    Case("service principal not named", resource=[[grant({"Service": "lambda.amazonaws.com"})]],
         principal="codebuild.amazonaws.com", account="", expect=NONE),
    Case("service principal denied", resource=[[grant({"Service": "codebuild.amazonaws.com"}),
                                                grant("*", effect="Deny", Sid="X")]],
         principal="codebuild.amazonaws.com", account="", expect=DENY, statement="X"),
    Case("service principal entry does not match users", resource=[[grant({"Service": "codebuild.amazonaws.com"})]],
         expect=NONE),
    # --- conditions in context of evaluation ------------------------------------------------------------------
    Case("condition on source IP allows", _i(allow(Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}})),
         context={"aws:SourceIp": "10.2.3.4"}, expect=ALLOW),
    Case("condition on source IP does not apply", _i(allow(Condition={"IpAddress": {"aws:SourceIp":
                                                                                   "10.0.0.0/8"}})),
         context={"aws:SourceIp": "192.0.2.1"}, expect=NONE),
    Case("deny outside office hours", _i(allow(), deny(Sid="Late", Condition={"DateGreaterThan": {
        "aws:CurrentTime": "2024-06-01T18:00:00Z"}})), context={"aws:CurrentTime": "2024-06-01T19:00:00Z"},
         expect=DENY, statement="Late"),
    Case("deny unless from the VPC endpoint", _i(allow(), deny(Sid="Vpce", Condition={"StringNotEquals": {
        "aws:SourceVpce": "vpce-1a2b3c"}})), context={"aws:SourceVpce": "vpce-1a2b3c"}, expect=ALLOW),
    Case("deny unless from the VPC endpoint, none given", _i(allow(), deny(Sid="Vpce", Condition={
        "StringNotEquals": {"aws:SourceVpce": "vpce-1a2b3c"}})), expect=DENY, statement="Vpce"),
    Case("tag-based allow", _i(allow(Condition={"StringEquals": {"ecr:ResourceTag/team": "blue"}})),
         context={"ecr:ResourceTag/team": "blue"}, expect=ALLOW),
    Case("tag-based allow, wrong tag", _i(allow(Condition={"StringEquals": {"ecr:ResourceTag/team": "blue"}})),
         context={"ecr:ResourceTag/team": "red"}, expect=NONE),
    Case("request tags restricted", _i(allow(Condition={"ForAllValues:StringEquals": {"aws:TagKeys": [
        "team", "env"]}})), context={"aws:TagKeys": ["team", "cost"]}, expect=NONE),
    Case("resource variable per user", _i(allow(resource=R + "${aws:username}/*")), resource_arn=R + "alice/x",
         context={"aws:username": "alice"}, expect=ALLOW),
]


def _doc(statements: list[dict[str, Any]]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": statements})


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_evaluate(case: Case) -> None:
    identity = [(f"id{i}", parse_policy(_doc(s), resource_policy=False)) for i, s in enumerate(case.identity)]
    resource = [(f"repo{i}", parse_policy(_doc(s), resource_policy=True)) for i, s in enumerate(case.resource)]
    facts = RequestFacts(case.action, case.resource_arn, case.principal, case.account, case.context)
    decision = evaluate(facts, identity, resource, resource_account=ACCOUNT, is_account_root=case.root)
    reason, allowed = case.expect
    assert (decision.reason, decision.allowed) == (reason, allowed), decision
    if case.policy is not None:
        assert decision.policy == case.policy, decision
    if case.statement is not None:
        assert decision.statement == case.statement, decision
    if reason == "implicit_deny":
        assert decision == Decision(False, "implicit_deny", None, None)
    if reason == "explicit_deny":
        assert decision.policy is not None and decision.statement is not None


def test_case_names_are_unique() -> None:
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))


def test_version_2008_policy_decides_too() -> None:
    policy = parse_policy(json.dumps({"Statement": {"Effect": "Allow", "Action": "ecr:*", "Resource": "*"}}),
                          resource_policy=False)
    assert policy.version == "2008-10-17"
    facts = RequestFacts(PULL, REPO, ALICE, ACCOUNT, {})
    assert evaluate(facts, [("old", policy)], [], resource_account=ACCOUNT) == Decision(True, "allowed", "old", "#0")


def test_context_is_not_mutated_and_defaults_are_filled() -> None:
    context: dict[str, Any] = {"aws:username": "alice"}
    policy = parse_policy(_doc([allow(Condition={"StringEquals": {"aws:PrincipalArn": ALICE,
                                                                   "aws:PrincipalAccount": ACCOUNT}})]),
                          resource_policy=False)
    facts = RequestFacts(PULL, REPO, ALICE, ACCOUNT, context)
    assert evaluate(facts, [("p", policy)], [], resource_account=ACCOUNT).allowed
    assert context == {"aws:username": "alice"}
