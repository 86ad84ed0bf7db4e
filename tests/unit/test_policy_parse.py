"""parse_policy: what it accepts, how it normalises, and the message for each malformed document."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cargohold.domain.policy import (
    MAX_POLICY_LENGTH,
    Condition,
    Policy,
    PolicyError,
    Statement,
    parse_policy,
)
from cargohold.domain.policy_conditions import OPERATORS

ACCOUNT = "111122223333"
ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"
V12 = "2012-10-17"


def ident(*statements: dict[str, Any], **top: Any) -> str:
    return json.dumps({"Version": V12, "Statement": list(statements), **top})


def res(*statements: dict[str, Any], **top: Any) -> str:
    return ident(*statements, **top)


def allow(**extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": "ecr:*", "Resource": "*", **extra}


def grant(**extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Principal": "*", "Action": "ecr:*", **extra}


def cond(block: Any) -> str:
    return ident(allow(Condition=block))


# (id, text, resource_policy, expected message fragment)
BAD: list[tuple[str, str, bool, str]] = [
    ("empty", "", False, "policy text is empty"),
    ("blank", "  \n\t", True, "policy text is empty"),
    ("not json", "not json", False, "policy is not valid JSON"),
    ("truncated json", '{"Version": "2012-10-17", "Statement": [', False, "policy is not valid JSON"),
    ("NaN", '{"Statement": {"Effect": "Allow", "Action": "ecr:*", "Resource": "*", "Condition": '
            '{"NumericEquals": {"aws:x": NaN}}}}', False, "NaN is not a JSON number"),
    ("array", "[]", False, "policy must be a JSON object"),
    ("string", '"policy"', False, "policy must be a JSON object"),
    ("duplicate key", '{"Version": "2012-10-17", "Version": "2012-10-17", "Statement": []}', False,
     'duplicate key "Version"'),
    ("duplicate statement key", '{"Statement": {"Effect": "Allow", "Effect": "Deny", "Action": "ecr:*", '
                                '"Resource": "*"}}', False, 'duplicate key "Effect"'),
    ("unknown top-level", json.dumps({"Version": V12, "Statement": [allow()], "Foo": 1}), False,
     'unknown top-level element "Foo"'),
    ("lower-case statement", json.dumps({"Version": V12, "statement": [allow()]}), False,
     'unknown top-level element "statement"'),
    ("bad version", json.dumps({"Version": "2010-01-01", "Statement": [allow()]}), False,
     'Version must be "2012-10-17" or "2008-10-17", got "2010-01-01"'),
    ("numeric version", json.dumps({"Version": 2012, "Statement": [allow()]}), False, "Version must be"),
    ("non-string Id", json.dumps({"Version": V12, "Id": 5, "Statement": [allow()]}), False,
     "Id must be a string"),
    ("no Statement", json.dumps({"Version": V12}), False, "policy must contain a Statement element"),
    ("empty Statement", json.dumps({"Version": V12, "Statement": []}), False, "Statement must not be an empty list"),
    ("string Statement", json.dumps({"Version": V12, "Statement": "x"}), False,
     "Statement must be an object or a list of objects"),
    ("non-object statement", json.dumps({"Version": V12, "Statement": [allow(), 1]}), False,
     "statement #1: each statement must be a JSON object"),
    ("unknown statement key", ident({**allow(), "Actions": "ecr:*"}), False, 'unknown element "Actions"'),
    ("lower-case element", ident({"effect": "Allow", "Action": "ecr:*", "Resource": "*"}), False,
     'unknown element "effect"'),
    ("no Effect", ident({"Action": "ecr:*", "Resource": "*"}), False, "statement #0: Effect is required"),
    ("lower-case Effect", ident(allow(Effect="allow")), False, 'Effect must be "Allow" or "Deny", got "allow"'),
    ("numeric Effect", ident(allow(Effect=1)), False, 'Effect must be "Allow" or "Deny", got 1'),
    ("no Action", ident({"Effect": "Allow", "Resource": "*"}), False, "must contain Action or NotAction"),
    ("Action and NotAction", ident(allow(NotAction="s3:*")), False, "Action and NotAction cannot both be present"),
    ("empty Action list", ident(allow(Action=[])), False, "Action must not be an empty list"),
    ("numeric Action", ident(allow(Action=5)), False, "Action must be a non-empty string or a list of them"),
    ("empty Action", ident(allow(Action="")), False, "Action must be a non-empty string"),
    ("Action list with non-string", ident(allow(Action=["ecr:*", None])), False, "Action must be a non-empty"),
    ("Action without vendor", ident(allow(Action="PutImage")), False, 'Action "PutImage" must be "*" or prefaced'),
    ("Action with empty name", ident(allow(Action="ecr:")), False, "prefaced by a vendor"),
    ("Action with empty vendor", ident(allow(Action=":PutImage")), False, "prefaced by a vendor"),
    ("Action with bad vendor", ident(allow(Action="ec r:PutImage")), False, "prefaced by a vendor"),
    ("NotAction without vendor", ident({"Effect": "Allow", "NotAction": "x", "Resource": "*"}), False,
     "prefaced by a vendor"),
    ("Resource and NotResource", ident(allow(NotResource="*")), False,
     "Resource and NotResource cannot both be present"),
    ("identity without Resource", ident({"Effect": "Allow", "Action": "ecr:*"}), False,
     "must contain Resource or NotResource"),
    ("Resource not an ARN", ident(allow(Resource="team/app")), False, 'Resource "team/app" must be in ARN format'),
    ("Resource too short", ident(allow(Resource="arn:aws:ecr")), False, "must be in ARN format"),
    ("NotResource not an ARN", ident({"Effect": "Allow", "Action": "*", "NotResource": "x"}), False,
     'NotResource "x" must be in ARN format'),
    ("empty Resource list", ident(allow(Resource=[])), False, "Resource must not be an empty list"),
    ("Principal in identity policy", ident(allow(Principal="*")), False,
     "Principal is not allowed in an identity-based policy"),
    ("NotPrincipal in identity policy", ident(allow(NotPrincipal={"AWS": ALICE})), False,
     "NotPrincipal is not allowed in an identity-based policy"),
    ("resource policy without Principal", res({"Effect": "Allow", "Action": "ecr:*"}), True,
     "must contain Principal or NotPrincipal"),
    ("Principal and NotPrincipal", res(grant(NotPrincipal={"AWS": ALICE})), True,
     "Principal and NotPrincipal cannot both be present"),
    ("Principal bare string", res(grant(Principal=ALICE)), True, 'Principal must be "*" or an object'),
    ("Principal empty object", res(grant(Principal={})), True, 'Principal must be "*" or an object'),
    ("Principal list", res(grant(Principal=[{"AWS": ALICE}])), True, 'Principal must be "*" or an object'),
    ("Principal wildcard in ARN", res(grant(Principal={"AWS": "arn:aws:iam::111122223333:user/*"})), True,
     "wildcards are not allowed in principals"),
    ("Principal wildcard account", res(grant(Principal={"AWS": "arn:aws:iam::*:root"})), True,
     "wildcards are not allowed in principals"),
    ("Principal question mark", res(grant(Principal={"AWS": "11112222333?"})), True,
     "wildcards are not allowed in principals"),
    ("Principal short account", res(grant(Principal={"AWS": "12345"})), True, 'invalid principal "12345"'),
    ("Principal user name", res(grant(Principal={"AWS": "alice"})), True, 'invalid principal "alice"'),
    ("Principal non-IAM ARN", res(grant(Principal={"AWS": "arn:aws:s3:::bucket"})), True, "invalid principal"),
    ("Principal service star", res(grant(Principal={"Service": "*"})), True, '"*" is allowed only as Principal'),
    ("Principal bad service", res(grant(Principal={"Service": "Code Build"})), True, "invalid service principal"),
    ("Principal unknown type", res(grant(Principal={"Group": "admins"})), True,
     'unsupported Principal type "Group"'),
    ("Principal empty list", res(grant(Principal={"AWS": []})), True, 'Principal "AWS" must not be an empty list'),
    ("Principal numeric", res(grant(Principal={"AWS": 111122223333})), True, "must be a non-empty string"),
    ("NotPrincipal with Allow", res({"Effect": "Allow", "NotPrincipal": {"AWS": ALICE}, "Action": "*"}), True,
     'NotPrincipal must be used with "Effect": "Deny"'),
    ("NotPrincipal wildcard", res({"Effect": "Deny", "NotPrincipal": {"AWS": "arn:aws:iam::*:root"},
                                   "Action": "*"}), True, "wildcards are not allowed"),
    ("identity Sid with space", ident(allow(Sid="my statement")), False,
     'Statement IDs (SID) must be alpha-numeric, got "my statement"'),
    ("numeric Sid", ident(allow(Sid=5)), False, "Sid must be a string"),
    ("duplicate Sid", ident(allow(Sid="A"), allow(Sid="A")), False,
     'Statement IDs (SID) in a single policy must be unique: "A" is repeated'),
    ("duplicate Sid in resource policy", res(grant(Sid="A"), grant(Sid="A")), True, "must be unique"),
    ("Condition string", cond("x"), False, "Condition must be an object mapping condition operators"),
    ("Condition list", cond([]), False, "Condition must be an object"),
    ("operator block string", cond({"StringEquals": "x"}), False,
     'Condition "StringEquals" must be an object mapping condition keys'),
    ("operator wrong case", cond({"stringEquals": {"aws:username": "a"}}), False,
     'unknown condition operator "stringEquals" (operator names are case-sensitive: did you mean "StringEquals"?)'),
    ("operator typo", cond({"StringEqualz": {"aws:username": "a"}}), False,
     'Invalid Condition type: unknown condition operator "StringEqualz"'),
    ("IfExists wrong case", cond({"StringEqualsifexists": {"aws:username": "a"}}), False,
     'unknown condition operator "StringEqualsifexists"'),
    ("IfExists alone", cond({"IfExists": {"aws:username": "a"}}), False, 'unknown condition operator "IfExists"'),
    ("IfExists twice", cond({"StringEqualsIfExistsIfExists": {"aws:username": "a"}}), False,
     "unknown condition operator"),
    ("qualifier wrong case", cond({"forAnyValue:StringEquals": {"aws:TagKeys": "a"}}), False,
     'did you mean "ForAnyValue:"?'),
    ("qualifier misspelt", cond({"ForAnyValues:StringEquals": {"aws:TagKeys": "a"}}), False,
     'the only prefixes are "ForAnyValue:" and "ForAllValues:"'),
    ("qualifier without operator", cond({"ForAllValues:": {"aws:TagKeys": "a"}}), False,
     'unknown condition operator "ForAllValues:"'),
    ("qualifier twice", cond({"ForAnyValue:ForAllValues:StringEquals": {"aws:TagKeys": "a"}}), False,
     "unknown condition operator"),
    ("unknown operator after qualifier", cond({"ForAllValues:Foo": {"aws:TagKeys": "a"}}), False,
     'unknown condition operator "ForAllValues:Foo"'),
    ("NullIfExists", cond({"NullIfExists": {"aws:TokenIssueTime": "true"}}), False,
     '"NullIfExists" is not allowed'),
    ("Null with qualifier", cond({"ForAllValues:Null": {"aws:TagKeys": "true"}}), False,
     "Null cannot take a ForAnyValue:/ForAllValues: prefix"),
    ("key without vendor", cond({"StringEquals": {"username": "a"}}), False,
     'condition key "username" must be prefaced by a vendor'),
    ("key with empty vendor", cond({"StringEquals": {":username": "a"}}), False, "must be prefaced by a vendor"),
    ("key with empty name", cond({"StringEquals": {"aws:": "a"}}), False, "must be prefaced by a vendor"),
    ("empty values", cond({"StringEquals": {"aws:username": []}}), False,
     'Condition "StringEquals" key "aws:username" has an empty list of values'),
    ("object value", cond({"StringEquals": {"aws:username": {"a": 1}}}), False,
     "condition values must be strings, numbers or booleans, not an object"),
    ("null value", cond({"StringEquals": {"aws:username": None}}), False, "not null"),
    ("nested list value", cond({"StringEquals": {"aws:username": [["a"]]}}), False, "not a list"),
    ("numeric not a number", cond({"NumericLessThan": {"aws:MultiFactorAuthAge": "abc"}}), False,
     'NumericLessThan needs numbers, got "abc"'),
    ("numeric infinity", cond({"NumericEquals": {"aws:x": "Infinity"}}), False, "needs numbers"),
    ("numeric variable", cond({"NumericEquals": {"aws:x": "${aws:y}"}}), False, "needs numbers"),
    ("date not a date", cond({"DateLessThan": {"aws:CurrentTime": "tomorrow"}}), False,
     'DateLessThan needs ISO 8601 dates or epoch seconds, got "tomorrow"'),
    ("date bad month", cond({"DateEquals": {"aws:CurrentTime": "2024-13-01T00:00:00Z"}}), False, "ISO 8601"),
    ("bool not a bool", cond({"Bool": {"aws:SecureTransport": "yes"}}), False, 'Bool needs "true" or "false"'),
    ("bool variable in 2008", json.dumps({"Statement": [allow(Condition={"Bool": {"aws:SecureTransport":
                                                                                    "${aws:x}"}})]}), False,
     'Bool needs "true" or "false"'),
    ("null not a bool", cond({"Null": {"aws:TokenIssueTime": "maybe"}}), False, 'Null needs "true" or "false"'),
    ("ip out of range", cond({"IpAddress": {"aws:SourceIp": "300.1.1.1/8"}}), False,
     'IpAddress needs IPv4 or IPv6 addresses or CIDR blocks, got "300.1.1.1/8"'),
    ("ip bad prefix", cond({"NotIpAddress": {"aws:SourceIp": "10.0.0.0/33"}}), False, "NotIpAddress needs IPv4"),
    ("ip in set operator", cond({"ForAnyValue:IpAddressIfExists": {"aws:SourceIp": "x"}}), False, "IpAddress needs"),
    ("binary not base64", cond({"BinaryEquals": {"aws:Key": "!!"}}), False, "BinaryEquals needs base64 values"),
]


@pytest.mark.parametrize(("text", "resource_policy", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_rejected(text: str, resource_policy: bool, message: str) -> None:
    with pytest.raises(PolicyError) as exc:
        parse_policy(text, resource_policy=resource_policy)
    assert message in str(exc.value)


def test_policy_error_is_a_value_error() -> None:
    assert issubclass(PolicyError, ValueError)


def test_length_limit() -> None:
    text = ident(allow())
    padded = text + " " * (MAX_POLICY_LENGTH - len(text))
    assert len(padded) == MAX_POLICY_LENGTH
    parse_policy(padded, resource_policy=False)
    with pytest.raises(PolicyError, match=r"policy text is 10241 characters long; the maximum is 10240"):
        parse_policy(padded + " ", resource_policy=False)
    with pytest.raises(PolicyError, match="the maximum is 20"):
        parse_policy(text, resource_policy=False, max_length=20)


def test_non_string_text() -> None:
    with pytest.raises(PolicyError, match="must be a string"):
        parse_policy(b"{}", resource_policy=False)  # type: ignore[arg-type]


def test_statement_location_in_messages() -> None:
    with pytest.raises(PolicyError, match=r'^statement #1 \("Second"\): Effect is required$'):
        parse_policy(ident(allow(), {"Sid": "Second", "Action": "ecr:*", "Resource": "*"}), resource_policy=False)


# --- accepted documents --------------------------------------------------------------------------------------

def test_typical_ecr_repository_policy() -> None:
    text = json.dumps({
        "Version": V12,
        "Statement": [
            {"Sid": "AllowPull", "Effect": "Allow",
             "Principal": {"AWS": ["arn:aws:iam::444455556666:root", "444455556666", ALICE]},
             "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]},
            {"Sid": "new statement", "Effect": "Allow", "Principal": {"Service": "codebuild.amazonaws.com"},
             "Action": "ecr:*"},
            {"Effect": "Deny", "Principal": "*", "Action": "ecr:DeleteRepository",
             "Condition": {"Bool": {"aws:SecureTransport": False}}},
        ],
    })
    policy = parse_policy(text, resource_policy=True)
    assert policy.version == V12
    assert [s.label for s in policy.statements] == ["AllowPull", "new statement", "#2"]
    first = policy.statements[0]
    assert first.principals is not None
    assert dict(first.principals) == {"AWS": ("arn:aws:iam::444455556666:root", "444455556666", ALICE)}
    assert first.actions == ("ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer")
    assert first.resources is None and first.not_resources is None  # the repository it is attached to
    third = policy.statements[2]
    assert third.effect == "Deny"
    assert third.principals is not None and dict(third.principals) == {"*": ("*",)}
    assert third.conditions == (Condition("Bool", "aws:SecureTransport", ("false",), "Bool", None, False),)


def test_statement_object_and_defaults() -> None:
    policy = parse_policy(json.dumps({"Statement": {"Effect": "Deny", "NotAction": "s3:*", "NotResource": "*"}}),
                          resource_policy=False)
    assert policy == Policy("2008-10-17", (Statement(None, "Deny", not_actions=("s3:*",), not_resources=("*",)),))
    assert not policy.variables
    assert parse_policy(ident(allow()), resource_policy=False).variables


def test_id_and_not_principal_are_kept() -> None:
    policy = parse_policy(res({"Effect": "Deny", "NotPrincipal": {"AWS": [ALICE]}, "Action": "*",
                               "Resource": "arn:aws:ecr:us-east-1:111122223333:repository/*"}, Id="repo-policy"),
                          resource_policy=True)
    assert policy.id == "repo-policy"
    st = policy.statements[0]
    assert st.principals is None and st.not_principals is not None
    assert dict(st.not_principals) == {"AWS": (ALICE,)}
    assert st.resources == ("arn:aws:ecr:us-east-1:111122223333:repository/*",)


@pytest.mark.parametrize("principal", [
    "*", {"AWS": "*"}, {"AWS": ACCOUNT}, {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, {"AWS": ALICE},
    {"AWS": f"arn:aws:iam::{ACCOUNT}:role/path/deployer"}, {"AWS": f"arn:aws:sts::{ACCOUNT}:assumed-role/r/s"},
    {"AWS": f"arn:aws-cn:iam::{ACCOUNT}:root"}, {"Service": "ecr.amazonaws.com"},
    {"Federated": "cognito-identity.amazonaws.com"}, {"CanonicalUser": "79a59df900b949e55d96a1e698fbace"},
    {"AWS": [ACCOUNT, ALICE], "Service": ["codebuild.amazonaws.com"]},
])
def test_accepted_principals(principal: Any) -> None:
    parse_policy(res(grant(Principal=principal)), resource_policy=True)


@pytest.mark.parametrize("resource", ["*", "arn:aws:ecr:us-east-1:111122223333:repository/team/app",
                                      "arn:aws:ecr:*:*:repository/*", "arn:aws:s3:::bucket",
                                      "arn:aws:ecr:*", "arn:aws:ecr:us-east-1:111122223333:repository/${aws:username}"])
def test_accepted_resources(resource: str) -> None:
    parse_policy(ident(allow(Resource=resource)), resource_policy=False)


@pytest.mark.parametrize("action", ["*", "ecr:*", "ecr:BatchGetImage", "ECR:batchgetimage", "ecr:Get*", "ec?:*",
                                    "ecr-public:GetAuthorizationToken", "s3:*Object*"])
def test_accepted_actions(action: str) -> None:
    parse_policy(ident(allow(Action=action)), resource_policy=False)


def test_resource_policy_sid_may_hold_spaces() -> None:
    assert parse_policy(res(grant(Sid="Allow pull from CI")), resource_policy=True).statements[0].sid == \
        "Allow pull from CI"


def _sample_value(base: str) -> Any:
    family = OPERATORS[base].family
    return {"numeric": "10", "date": "2024-01-01T00:00:00Z", "bool": "true", "null": "true",
            "ip": "10.0.0.0/8", "binary": "QUJD", "arn": "arn:aws:iam::*:root"}.get(family, ["a", "b*"])


OPERATOR_NAMES = sorted(
    f"{prefix}{base}{suffix}"
    for base in OPERATORS
    for prefix in ("", "ForAnyValue:", "ForAllValues:")
    for suffix in ("", "IfExists")
    if base != "Null" or (prefix, suffix) == ("", "")
)


@pytest.mark.parametrize("operator", OPERATOR_NAMES)
def test_every_operator_spelling_is_accepted(operator: str) -> None:
    base = operator.split(":")[-1].removesuffix("IfExists")
    policy = parse_policy(cond({operator: {"aws:SomeKey": _sample_value(base)}}), resource_policy=False)
    condition = policy.statements[0].conditions[0]
    assert condition.operator == operator
    assert condition.base == base
    assert condition.if_exists is operator.endswith("IfExists")
    assert condition.qualifier == (operator.split(":")[0] if ":" in operator else None)


def test_condition_values_are_normalised_to_text() -> None:
    policy = parse_policy(cond({"NumericLessThan": {"aws:MultiFactorAuthAge": 3600},
                                "Bool": {"aws:SecureTransport": [True, "false"]},
                                "DateLessThan": {"aws:EpochTime": 1717200000.5}}), resource_policy=False)
    assert [c.values for c in policy.statements[0].conditions] == [("3600",), ("true", "false"), ("1717200000.5",)]


def test_variables_are_not_validated_as_literals_in_2012() -> None:
    # Bool supports policy variables: the value is checked once substituted.
    parse_policy(cond({"Bool": {"aws:SecureTransport": "${aws:ViaAWSService}"}}), resource_policy=False)
    parse_policy(cond({"StringEquals": {"aws:username": "${aws:username, 'x'}"}}), resource_policy=False)
