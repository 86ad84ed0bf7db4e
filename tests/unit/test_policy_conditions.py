"""Condition operators, set qualifiers, IfExists, missing keys and policy variables, as tables.

Each row puts one condition into an identity policy that otherwise allows everything, and states whether
the request is allowed, i.e. whether the condition holds.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from cargohold.domain.policy import Decision, RequestFacts, evaluate, parse_policy

ACCOUNT = "111122223333"
ALICE = f"arn:aws:iam::{ACCOUNT}:user/alice"
REPO = f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/team/app"
V12, V08 = "2012-10-17", "2008-10-17"


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()  # the key is absent from the request context


def decide(condition: dict[str, Any], context: dict[str, Any], *, resource: str = "*", version: str | None = V12,
           resource_arn: str = REPO) -> Decision:
    doc: dict[str, Any] = {"Statement": [{"Effect": "Allow", "Action": "ecr:*", "Resource": resource,
                                          "Condition": condition}]}
    if version is not None:
        doc["Version"] = version
    policy = parse_policy(json.dumps(doc), resource_policy=False)
    facts = RequestFacts("ecr:BatchGetImage", resource_arn, ALICE, ACCOUNT, context)
    return evaluate(facts, [("identity", policy)], [], resource_account=ACCOUNT)


# (operator, key, policy value(s), request value or MISSING, expected)
Row = tuple[str, str, Any, Any, bool]

U, TAGS, IP, TIME, EPOCH, SECURE, ARN, AGE = ("aws:username", "aws:TagKeys", "aws:SourceIp", "aws:CurrentTime",
                                             "aws:EpochTime", "aws:SecureTransport", "aws:SourceArn",
                                             "aws:MultiFactorAuthAge")
T0 = "2024-06-01T00:00:00Z"

STRING_ROWS: list[Row] = [
    ("StringEquals", U, "alice", "alice", True),
    ("StringEquals", U, "alice", "Alice", False),
    ("StringEquals", U, "alice", "alice2", False),
    ("StringEquals", U, "alice", MISSING, False),
    ("StringEquals", U, ["bob", "alice"], "alice", True),
    ("StringEquals", U, ["bob", "carol"], "alice", False),
    ("StringEquals", U, "ali*", "alice", False),           # no wildcards in StringEquals
    ("StringEquals", U, "ali*", "ali*", True),
    ("StringEquals", U, "a.ice", "alice", False),
    ("StringEquals", U, "", "", True),
    ("StringEquals", U, "env", ["env", "team"], True),     # multivalued without a qualifier: any value
    ("StringEquals", "ecr:ResourceTag/team", "blue", "blue", True),
    ("StringEquals", "aws:PrincipalAccount", ACCOUNT, MISSING, True),  # filled in from the facts
    ("StringEquals", "aws:PrincipalArn", ALICE, MISSING, True),
    ("StringEquals", "aws:PrincipalArn", "arn:aws:iam::111122223333:user/bob", MISSING, False),
    ("StringEquals", "ecr:count", "5", 5, True),           # request numbers compare as their text
    ("StringEquals", SECURE, "true", True, True),          # request booleans compare as "true"/"false"
    ("StringEquals", SECURE, "True", True, False),
    ("StringNotEquals", U, "alice", "bob", True),
    ("StringNotEquals", U, "alice", "alice", False),
    ("StringNotEquals", U, "alice", MISSING, True),        # negated operator, missing key: true (AWS)
    ("StringNotEquals", U, ["alice", "bob"], "alice", False),
    ("StringNotEquals", U, ["alice", "bob"], "bob", False),
    ("StringNotEquals", U, ["alice", "bob"], "carol", True),
    ("StringNotEquals", U, "alice", "ALICE", True),
    ("StringNotEquals", U, "env", ["env", "team"], False),
    ("StringEqualsIgnoreCase", U, "ALICE", "alice", True),
    ("StringEqualsIgnoreCase", U, "alice", "AlIcE", True),
    ("StringEqualsIgnoreCase", U, "bob", "alice", False),
    ("StringEqualsIgnoreCase", U, "al*", "alice", False),
    ("StringEqualsIgnoreCase", U, "alice", MISSING, False),
    ("StringEqualsIgnoreCase", U, ["X", "Alice"], "alice", True),
    ("StringNotEqualsIgnoreCase", U, "ALICE", "alice", False),
    ("StringNotEqualsIgnoreCase", U, "bob", "alice", True),
    ("StringNotEqualsIgnoreCase", U, "bob", MISSING, True),
    ("StringNotEqualsIgnoreCase", U, ["BOB", "ALICE"], "alice", False),
    ("StringLike", U, "ali*", "alice", True),
    ("StringLike", U, "a?ice", "alice", True),
    ("StringLike", U, "a?ice", "aice", False),
    ("StringLike", U, "a?ice", "allice", False),
    ("StringLike", U, "*", "anything at all", True),
    ("StringLike", U, "*", "", True),
    ("StringLike", U, "*", MISSING, False),
    ("StringLike", U, "Ali*", "alice", False),              # case-sensitive
    ("StringLike", U, "*ce", "alice", True),
    ("StringLike", U, "*li*", "alice", True),
    ("StringLike", U, "a*e", "ae", True),
    ("StringLike", U, "a*e", "alicex", False),
    ("StringLike", U, "a.c", "abc", False),                 # '.' is not a regex wildcard
    ("StringLike", U, "a.c", "a.c", True),
    ("StringLike", U, "[ab]", "a", False),                  # nor are brackets
    ("StringLike", U, "[ab]", "[ab]", True),
    ("StringLike", U, "a+", "aa", False),
    ("StringLike", U, "(a|b)", "a", False),
    ("StringLike", U, "^a$", "^a$", True),
    ("StringLike", U, "team/*", "team/app/sub", True),
    ("StringLike", U, "team/?", "team/ab", False),
    ("StringLike", U, ["bob*", "ali*"], "alice", True),
    ("StringLike", "ecr:ResourceTag/env", "prod-*", "prod-eu", True),
    ("StringLike", "aws:PrincipalArn", "arn:aws:iam::*:user/*", MISSING, True),
    ("StringNotLike", U, "ali*", "alice", False),
    ("StringNotLike", U, "bob*", "alice", True),
    ("StringNotLike", U, "bob*", MISSING, True),
    ("StringNotLike", U, ["a*", "b*"], "bob", False),
    ("StringNotLike", U, ["a*", "b*"], "carol", True),
    ("StringNotLike", U, "*", "x", False),
    ("StringEqualsIfExists", U, "alice", MISSING, True),
    ("StringEqualsIfExists", U, "alice", "alice", True),
    ("StringEqualsIfExists", U, "alice", "bob", False),
    ("StringNotEqualsIfExists", U, "alice", MISSING, True),
    ("StringNotEqualsIfExists", U, "alice", "alice", False),
    ("StringNotEqualsIfExists", U, "alice", "bob", True),
    ("StringEqualsIgnoreCaseIfExists", U, "ALICE", MISSING, True),
    ("StringEqualsIgnoreCaseIfExists", U, "ALICE", "bob", False),
    ("StringNotEqualsIgnoreCaseIfExists", U, "ALICE", "alice", False),
    ("StringLikeIfExists", U, "a*", MISSING, True),
    ("StringLikeIfExists", U, "a*", "bob", False),
    ("StringLikeIfExists", U, "a*", "al", True),
    ("StringNotLikeIfExists", U, "a*", MISSING, True),
    ("StringNotLikeIfExists", U, "a*", "al", False),
]

NUMERIC_ROWS: list[Row] = [
    ("NumericEquals", AGE, "10", 10, True),
    ("NumericEquals", AGE, "10", "10", True),
    ("NumericEquals", AGE, "10", "10.0", True),
    ("NumericEquals", AGE, "10", 11, False),
    ("NumericEquals", AGE, "10.5", 10.5, True),
    ("NumericEquals", AGE, 10, 10, True),                  # a JSON number in the policy
    ("NumericEquals", AGE, ["1", "2", "3"], 2, True),
    ("NumericEquals", AGE, "10", "ten", False),
    ("NumericEquals", AGE, "1", True, False),              # a boolean is not a number
    ("NumericEquals", AGE, "10", MISSING, False),
    ("NumericNotEquals", AGE, "10", 11, True),
    ("NumericNotEquals", AGE, "10", 10, False),
    ("NumericNotEquals", AGE, "10", MISSING, True),
    ("NumericNotEquals", AGE, ["10", "11"], 11, False),
    ("NumericNotEquals", AGE, ["10", "11"], 12, True),
    ("NumericLessThan", AGE, "3600", 100, True),
    ("NumericLessThan", AGE, "3600", 3600, False),
    ("NumericLessThan", AGE, "3600", 3601, False),
    ("NumericLessThan", AGE, "3600", MISSING, False),
    ("NumericLessThan", AGE, "-5", -6, True),
    ("NumericLessThan", AGE, "0.5", 0.25, True),
    ("NumericLessThan", AGE, 3600, "100", True),
    ("NumericLessThanEquals", AGE, "10", 10, True),
    ("NumericLessThanEquals", AGE, "10", 9, True),
    ("NumericLessThanEquals", AGE, "10", 11, False),
    ("NumericLessThanEquals", AGE, "10", MISSING, False),
    ("NumericGreaterThan", AGE, "10", 11, True),
    ("NumericGreaterThan", AGE, "10", 10, False),
    ("NumericGreaterThan", AGE, "10", 9, False),
    ("NumericGreaterThan", AGE, "10", MISSING, False),
    ("NumericGreaterThanEquals", AGE, "10", 10, True),
    ("NumericGreaterThanEquals", AGE, "10", 9, False),
    ("NumericGreaterThanEquals", AGE, "10", 1e9, True),
    ("NumericLessThanIfExists", AGE, "10", MISSING, True),
    ("NumericLessThanIfExists", AGE, "10", 20, False),
    ("NumericEqualsIfExists", AGE, "10", 10, True),
    ("NumericGreaterThanEqualsIfExists", AGE, "10", MISSING, True),
    ("NumericNotEqualsIfExists", AGE, "10", 10, False),
]

DATE_ROWS: list[Row] = [
    ("DateEquals", TIME, T0, T0, True),
    ("DateEquals", TIME, T0, datetime(2024, 6, 1, tzinfo=UTC), True),
    ("DateEquals", TIME, T0, datetime(2024, 6, 1), True),             # naive means UTC
    ("DateEquals", TIME, T0, "2024-06-01T02:00:00+02:00", True),      # the same instant
    ("DateEquals", TIME, T0, "2024-06-01T00:00:01Z", False),
    ("DateEquals", TIME, "2024-06-01", T0, True),                      # a date alone is midnight UTC
    ("DateEquals", TIME, "1717200000", T0, True),                      # epoch seconds in the policy
    ("DateEquals", TIME, 1717200000, T0, True),
    ("DateEquals", TIME, T0, MISSING, False),
    ("DateEquals", TIME, T0, "not a date", False),
    ("DateNotEquals", TIME, T0, T0, False),
    ("DateNotEquals", TIME, T0, "2024-06-02T00:00:00Z", True),
    ("DateNotEquals", TIME, T0, MISSING, True),
    ("DateLessThan", TIME, T0, "2024-05-31T23:59:59Z", True),
    ("DateLessThan", TIME, T0, T0, False),
    ("DateLessThan", TIME, T0, "2024-06-01T00:00:01Z", False),
    ("DateLessThan", TIME, T0, "2024-05-31T23:59:59.999Z", True),
    ("DateLessThan", TIME, T0, MISSING, False),
    ("DateLessThan", EPOCH, "1717200000", 1717199999, True),
    ("DateLessThan", EPOCH, "1717200000", 1717200000, False),
    ("DateLessThan", EPOCH, T0, 1717199999, True),                     # ISO policy, epoch request
    ("DateLessThan", TIME, "1717200000", "2024-05-01T00:00:00Z", True),  # epoch policy, ISO request
    ("DateLessThanEquals", TIME, T0, T0, True),
    ("DateLessThanEquals", TIME, T0, "2024-06-01T00:00:00.001Z", False),
    ("DateGreaterThan", TIME, T0, "2024-06-01T00:00:01Z", True),
    ("DateGreaterThan", TIME, T0, T0, False),
    ("DateGreaterThan", TIME, "2024-06-01T00:00:00.500Z", "2024-06-01T00:00:00.750Z", True),
    ("DateGreaterThan", TIME, T0, MISSING, False),
    ("DateGreaterThanEquals", TIME, T0, T0, True),
    ("DateGreaterThanEquals", TIME, T0, "2023-01-01T00:00:00Z", False),
    ("DateGreaterThanEquals", TIME, [T0, "2020-01-01T00:00:00Z"], "2021-01-01T00:00:00Z", True),
    ("DateLessThanIfExists", TIME, T0, MISSING, True),
    ("DateLessThanIfExists", TIME, T0, "2030-01-01T00:00:00Z", False),
    ("DateGreaterThanIfExists", TIME, T0, "2030-01-01T00:00:00Z", True),
    ("DateNotEqualsIfExists", TIME, T0, T0, False),
]

BOOL_BINARY_NULL_ROWS: list[Row] = [
    ("Bool", SECURE, "true", True, True),
    ("Bool", SECURE, "true", False, False),
    ("Bool", SECURE, "false", False, True),
    ("Bool", SECURE, "false", True, False),
    ("Bool", SECURE, "true", "true", True),
    ("Bool", SECURE, "true", "TRUE", True),
    ("Bool", SECURE, "TRUE", True, True),
    ("Bool", SECURE, True, True, True),                     # a JSON boolean in the policy
    ("Bool", SECURE, False, True, False),
    ("Bool", SECURE, "true", "yes", False),
    ("Bool", SECURE, "true", 1, False),
    ("Bool", SECURE, "true", MISSING, False),
    ("Bool", SECURE, "false", MISSING, False),              # missing is not false
    ("Bool", SECURE, ["true", "false"], False, True),
    ("BoolIfExists", SECURE, "true", MISSING, True),
    ("BoolIfExists", SECURE, "true", True, True),
    ("BoolIfExists", SECURE, "true", False, False),
    ("BinaryEquals", "aws:Key", "QmluYXJ5VmFsdWVJbkJhc2U2NA==", "QmluYXJ5VmFsdWVJbkJhc2U2NA==", True),
    ("BinaryEquals", "aws:Key", "QmluYXJ5VmFsdWVJbkJhc2U2NA==", b"BinaryValueInBase64", True),
    ("BinaryEquals", "aws:Key", "QmluYXJ5VmFsdWVJbkJhc2U2NA==", b"Other", False),
    ("BinaryEquals", "aws:Key", "QmluYXJ5VmFsdWVJbkJhc2U2NA==", MISSING, False),
    ("BinaryEqualsIfExists", "aws:Key", "QmluYXJ5VmFsdWVJbkJhc2U2NA==", MISSING, True),
    ("Null", "aws:TokenIssueTime", "true", MISSING, True),
    ("Null", "aws:TokenIssueTime", "true", T0, False),
    ("Null", "aws:TokenIssueTime", "false", T0, True),
    ("Null", "aws:TokenIssueTime", "false", MISSING, False),
    ("Null", "aws:TokenIssueTime", True, MISSING, True),
    ("Null", "aws:TokenIssueTime", "true", [], True),       # an empty set counts as absent
    ("Null", "aws:TokenIssueTime", "true", None, True),
    ("Null", "aws:TokenIssueTime", "true", "", False),      # an empty string is a value
    ("Null", "aws:TokenIssueTime", ["true", "false"], MISSING, True),
    ("Null", "aws:PrincipalArn", "false", MISSING, True),   # filled in from the facts
]

IP_ROWS: list[Row] = [
    ("IpAddress", IP, "203.0.113.0/24", "203.0.113.7", True),
    ("IpAddress", IP, "203.0.113.0/24", "203.0.113.255", True),
    ("IpAddress", IP, "203.0.113.0/24", "203.0.114.1", False),
    ("IpAddress", IP, "203.0.113.7", "203.0.113.7", True),       # a bare address is a /32
    ("IpAddress", IP, "203.0.113.7", "203.0.113.8", False),
    ("IpAddress", IP, "203.0.113.7/32", "203.0.113.7", True),
    ("IpAddress", IP, "203.0.113.5/24", "203.0.113.200", True),   # host bits set are accepted
    ("IpAddress", IP, ["10.0.0.0/8", "192.168.0.0/16"], "192.168.1.1", True),
    ("IpAddress", IP, ["10.0.0.0/8", "192.168.0.0/16"], "172.16.0.1", False),
    ("IpAddress", IP, "0.0.0.0/0", "1.2.3.4", True),
    ("IpAddress", IP, "2001:db8::/32", "2001:db8::1", True),
    ("IpAddress", IP, "2001:db8::/32", "2001:db8:ffff:ffff::1", True),
    ("IpAddress", IP, "2001:db8::/32", "2001:db9::1", False),
    ("IpAddress", IP, "2001:DB8::/32", "2001:db8::1", True),
    ("IpAddress", IP, "2001:db8::1", "2001:db8::1", True),
    ("IpAddress", IP, "::/0", "1.2.3.4", False),                  # IPv4 address, IPv6 network
    ("IpAddress", IP, "0.0.0.0/0", "::1", False),
    ("IpAddress", IP, "203.0.113.0/24", "not-an-ip", False),
    ("IpAddress", IP, "203.0.113.0/24", "", False),
    ("IpAddress", IP, "203.0.113.0/24", MISSING, False),
    ("NotIpAddress", IP, "203.0.113.0/24", "198.51.100.1", True),
    ("NotIpAddress", IP, "203.0.113.0/24", "203.0.113.1", False),
    ("NotIpAddress", IP, "203.0.113.0/24", MISSING, True),
    ("NotIpAddress", IP, ["10.0.0.0/8", "192.168.0.0/16"], "10.1.1.1", False),
    ("NotIpAddress", IP, ["10.0.0.0/8", "192.168.0.0/16"], "172.16.0.1", True),
    ("NotIpAddress", IP, "2001:db8::/32", "2001:db8::5", False),
    ("NotIpAddress", IP, "2001:db8::/32", "203.0.113.1", True),
    ("IpAddressIfExists", IP, "10.0.0.0/8", MISSING, True),
    ("IpAddressIfExists", IP, "10.0.0.0/8", "11.0.0.1", False),
    ("NotIpAddressIfExists", IP, "10.0.0.0/8", MISSING, True),
    ("NotIpAddressIfExists", IP, "10.0.0.0/8", "10.0.0.1", False),
]

BOB = f"arn:aws:iam::{ACCOUNT}:user/bob"
ARN_ROWS: list[Row] = [
    ("ArnEquals", ARN, ALICE, ALICE, True),
    ("ArnEquals", ARN, ALICE, BOB, False),
    ("ArnEquals", ARN, f"arn:aws:iam::{ACCOUNT}:user/*", BOB, True),     # ArnEquals honours wildcards too
    ("ArnEquals", ARN, ALICE, MISSING, False),
    ("ArnEquals", ARN, [BOB, ALICE], ALICE, True),
    ("ArnLike", ARN, f"arn:aws:iam::{ACCOUNT}:user/*", ALICE, True),
    ("ArnLike", ARN, "arn:aws:iam::*:user/alice", ALICE, True),
    ("ArnLike", ARN, "arn:aws:iam::1111*:user/alice", ALICE, True),
    ("ArnLike", ARN, "arn:aws:iam::????????????:user/alice", ALICE, True),
    ("ArnLike", ARN, "arn:aws:iam::???????????:user/alice", ALICE, False),
    ("ArnLike", ARN, f"arn:aws:iam::{ACCOUNT}:role/*", ALICE, False),
    ("ArnLike", ARN, f"arn:aws:iam::{ACCOUNT}:User/alice", ALICE, False),  # case-sensitive
    ("ArnLike", ARN, "arn:aws:*:us-east-1:111122223333:repository/team/*", REPO, True),
    ("ArnLike", ARN, "arn:aws:ecr:*:*:repository/*", REPO, True),
    ("ArnLike", ARN, "arn:aws:ecr:*:*:repository/other/*", REPO, False),
    # components are matched one by one: '*' in the service part cannot swallow the region part
    ("ArnLike", ARN, "arn:aws:*:us-east-1:111122223333:repository/team/app",
     "arn:aws:ecr:extra:us-east-1:111122223333:repository/team/app", False),
    ("ArnLike", ARN, "arn:aws:s3:::bucket/a:b", "arn:aws:s3:::bucket/a:b", True),  # colons in the resource
    ("ArnLike", ARN, "*", REPO, True),                     # not six components: matched as a whole
    ("ArnLike", ARN, "arn:aws:ecr:*", REPO, True),
    ("ArnLike", ARN, "arn:aws:iam::*:user/alice", "alice", False),      # the request value is not an ARN
    ("ArnLike", ARN, "arn:aws:iam::*:user/alice", MISSING, False),
    ("ArnNotEquals", ARN, ALICE, BOB, True),
    ("ArnNotEquals", ARN, ALICE, ALICE, False),
    ("ArnNotEquals", ARN, ALICE, MISSING, True),
    ("ArnNotLike", ARN, f"arn:aws:iam::{ACCOUNT}:user/*", ALICE, False),
    ("ArnNotLike", ARN, f"arn:aws:iam::{ACCOUNT}:role/*", ALICE, True),
    ("ArnNotLike", ARN, f"arn:aws:iam::{ACCOUNT}:role/*", MISSING, True),
    ("ArnNotLike", ARN, [f"arn:aws:iam::{ACCOUNT}:role/*", f"arn:aws:iam::{ACCOUNT}:user/a*"], ALICE, False),
    ("ArnLikeIfExists", ARN, "arn:aws:iam::*:user/alice", MISSING, True),
    ("ArnLikeIfExists", ARN, "arn:aws:iam::*:user/alice", BOB, False),
    ("ArnEqualsIfExists", ARN, ALICE, ALICE, True),
    ("ArnNotLikeIfExists", ARN, ALICE, ALICE, False),
    ("ArnNotEqualsIfExists", ARN, ALICE, MISSING, True),
]

SET_ROWS: list[Row] = [
    ("ForAllValues:StringEquals", TAGS, ["env", "team"], ["env"], True),
    ("ForAllValues:StringEquals", TAGS, ["env", "team"], ["env", "team"], True),
    ("ForAllValues:StringEquals", TAGS, ["env", "team"], ["team", "env", "team"], True),
    ("ForAllValues:StringEquals", TAGS, ["env", "team"], ["env", "owner"], False),
    ("ForAllValues:StringEquals", TAGS, ["env", "team"], MISSING, True),   # AWS: true with no key
    ("ForAllValues:StringEquals", TAGS, ["env", "team"], [], True),        # ... or an empty set
    ("ForAllValues:StringEquals", TAGS, ["env"], "env", True),             # a single value is a set of one
    ("ForAllValues:StringEquals", TAGS, ["env"], "Env", False),
    ("ForAnyValue:StringEquals", TAGS, ["env", "team"], ["env", "owner"], True),
    ("ForAnyValue:StringEquals", TAGS, ["env", "team"], ["owner"], False),
    ("ForAnyValue:StringEquals", TAGS, ["env", "team"], MISSING, False),   # AWS: false with no key
    ("ForAnyValue:StringEquals", TAGS, ["env", "team"], [], False),
    ("ForAnyValue:StringEquals", TAGS, ["env"], "env", True),
    ("ForAllValues:StringLike", TAGS, ["Created*"], ["CreatedBy", "CreatedAt"], True),
    ("ForAllValues:StringLike", TAGS, ["Created*"], ["CreatedBy", "Owner"], False),
    ("ForAllValues:StringLike", TAGS, ["Created*", "Own?r"], ["CreatedBy", "Owner"], True),
    ("ForAnyValue:StringLike", TAGS, ["Created*"], ["Owner", "CreatedAt"], True),
    ("ForAnyValue:StringLike", TAGS, ["Created*"], ["Owner"], False),
    ("ForAllValues:StringNotEquals", TAGS, ["secret"], ["env", "team"], True),
    ("ForAllValues:StringNotEquals", TAGS, ["secret"], ["env", "secret"], False),
    ("ForAllValues:StringNotEquals", TAGS, ["secret"], MISSING, True),
    ("ForAnyValue:StringNotEquals", TAGS, ["secret"], ["secret", "env"], True),
    ("ForAnyValue:StringNotEquals", TAGS, ["secret"], ["secret"], False),
    ("ForAnyValue:StringNotEquals", TAGS, ["secret"], MISSING, False),
    ("ForAnyValue:StringNotEquals", TAGS, ["a", "b"], ["a", "b"], False),  # each value equals one of them
    ("ForAnyValue:StringEqualsIgnoreCase", TAGS, ["ENV"], ["env"], True),
    ("ForAllValues:StringEqualsIgnoreCase", TAGS, ["ENV", "TEAM"], ["env", "Team"], True),
    ("ForAllValues:StringNotLike", TAGS, ["aws:*"], ["env", "team"], True),
    ("ForAllValues:StringNotLike", TAGS, ["aws:*"], ["env", "aws:x"], False),
    ("ForAnyValue:StringNotLike", TAGS, ["aws:*"], ["aws:y", "env"], True),
    ("ForAllValues:StringEqualsIfExists", TAGS, ["env"], MISSING, True),
    ("ForAnyValue:StringEqualsIfExists", TAGS, ["env"], MISSING, True),    # IfExists wins over ForAnyValue
    ("ForAnyValue:StringEqualsIfExists", TAGS, ["env"], ["team"], False),
    ("ForAllValues:NumericLessThan", "ecr:sizes", ["10"], [1, 2, 3], True),
    ("ForAllValues:NumericLessThan", "ecr:sizes", ["10"], [1, 20], False),
    ("ForAnyValue:NumericGreaterThan", "ecr:sizes", ["10"], [1, 20], True),
    ("ForAnyValue:IpAddress", "ecr:ips", ["10.0.0.0/8"], ["192.168.0.1", "10.0.0.1"], True),
    ("ForAllValues:IpAddress", "ecr:ips", ["10.0.0.0/8"], ["192.168.0.1", "10.0.0.1"], False),
    ("ForAnyValue:NotIpAddress", "ecr:ips", ["10.0.0.0/8"], ["10.0.0.2", "10.0.0.1"], False),
    ("ForAllValues:ArnLike", "aws:PrincipalServiceNamesList", ["arn:aws:iam::*:user/*"], [ALICE, BOB], True),
    ("ForAnyValue:ArnEquals", "ecr:arns", [BOB], [ALICE, BOB], True),
    ("ForAllValues:Bool", "ecr:flags", ["true"], [True, True], True),
    ("ForAnyValue:DateLessThan", "ecr:dates", [T0], ["2030-01-01T00:00:00Z", "2020-01-01T00:00:00Z"], True),
    ("ForAllValues:DateLessThan", "ecr:dates", [T0], ["2030-01-01T00:00:00Z", "2020-01-01T00:00:00Z"], False),
]

ALL_ROWS = STRING_ROWS + NUMERIC_ROWS + DATE_ROWS + BOOL_BINARY_NULL_ROWS + IP_ROWS + ARN_ROWS + SET_ROWS


def _row_id(row: Row) -> str:
    operator, key, values, request, expected = row
    return f"{operator}[{key}]:{values!r}~{request!r}->{expected}"


@pytest.mark.parametrize("row", ALL_ROWS, ids=[_row_id(r) for r in ALL_ROWS])
def test_operator(row: Row) -> None:
    operator, key, values, request, expected = row
    context = {} if request is MISSING else {key: request}
    decision = decide({operator: {key: values}}, context)
    assert decision.allowed is expected, decision


# Whole Condition blocks: (block, context, expected)
BlockRow = tuple[dict[str, Any], dict[str, Any], bool]
SECURE_ALICE = {U: "alice", SECURE: True}
BLOCK_ROWS: list[BlockRow] = [
    ({}, {}, True),                                                          # an empty block holds
    ({"StringEquals": {U: "alice", "aws:PrincipalAccount": ACCOUNT}}, {U: "alice"}, True),
    ({"StringEquals": {U: "alice", "aws:PrincipalAccount": "999999999999"}}, {U: "alice"}, False),  # keys ANDed
    ({"StringEquals": {U: "alice", "ecr:ResourceTag/team": "blue"}}, {U: "alice"}, False),  # one key missing
    ({"StringEquals": {U: "alice"}, "Bool": {SECURE: "true"}}, SECURE_ALICE, True),        # operators ANDed
    ({"StringEquals": {U: "alice"}, "Bool": {SECURE: "true"}}, {U: "alice", SECURE: False}, False),
    ({"StringEquals": {U: "alice"}, "Bool": {SECURE: "true"}}, {U: "alice"}, False),
    ({"StringEquals": {U: "bob"}, "Bool": {SECURE: "true"}}, SECURE_ALICE, False),
    ({"StringLike": {U: "a*"}, "StringNotLike": {U: "*x"}}, {U: "alice"}, True),
    ({"StringLike": {U: "a*"}, "StringNotLike": {U: "*e"}}, {U: "alice"}, False),
    ({"IpAddress": {IP: "10.0.0.0/8"}, "DateLessThan": {TIME: T0}},
     {IP: "10.1.2.3", TIME: "2024-01-01T00:00:00Z"}, True),
    ({"IpAddress": {IP: "10.0.0.0/8"}, "DateLessThan": {TIME: T0}},
     {IP: "10.1.2.3", TIME: "2025-01-01T00:00:00Z"}, False),
    ({"StringEquals": {"AWS:USERNAME": "alice"}}, {"aws:username": "alice"}, True),  # key names: any case
    ({"StringEquals": {"aws:username": "alice"}}, {"Aws:UserName": "alice"}, True),
    ({"StringEquals": {"ecr:resourcetag/Team": "blue"}}, {"ecr:ResourceTag/team": "blue"}, True),
    ({"StringEquals": {U: "Alice"}}, {U: "alice"}, False),                   # values: case-sensitive
    ({"StringEquals": {"aws:PrincipalArn": "override"}}, {"aws:principalarn": "override"}, True),  # context wins
    ({"ForAllValues:StringEquals": {TAGS: ["env"]}, "ForAnyValue:StringEquals": {TAGS: ["env"]}}, {}, False),
    ({"ForAllValues:StringEquals": {TAGS: ["env"]}, "Null": {TAGS: "false"}}, {}, False),  # the usual guard
    ({"ForAllValues:StringEquals": {TAGS: ["env"]}, "Null": {TAGS: "false"}}, {TAGS: ["env"]}, True),
]


@pytest.mark.parametrize(("block", "context", "expected"), BLOCK_ROWS, ids=[repr(r[0])[:80] for r in BLOCK_ROWS])
def test_condition_block(block: dict[str, Any], context: dict[str, Any], expected: bool) -> None:
    assert decide(block, context).allowed is expected


# Policy variables: (version, Resource, Condition, context, resource ARN, expected)
R = f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/"
VarRow = tuple[str | None, str, dict[str, Any], dict[str, Any], str, bool]
VARIABLE_ROWS: list[VarRow] = [
    (V12, R + "${aws:username}/*", {}, {U: "alice"}, R + "alice/app", True),
    (V12, R + "${aws:username}/*", {}, {U: "bob"}, R + "alice/app", False),
    (V12, R + "${aws:username}/*", {}, {}, R + "alice/app", False),          # unresolved: does not apply
    (V12, R + "${aws:username, 'shared'}/*", {}, {}, R + "shared/app", True),  # default value
    (V12, R + "${aws:username,'shared'}/*", {}, {U: "alice"}, R + "alice/app", True),
    (V12, R + "${ AWS:UserName }/*", {}, {U: "alice"}, R + "alice/app", True),  # key name any case, spaces
    (V12, R + "${aws:username}", {}, {U: "team"}, R + "team/app", False),    # no prefix match
    (V12, R + "${aws:username}-*", {}, {U: "a*"}, R + "abc-x", False),       # substituted text is literal
    (V12, R + "${aws:username}-*", {}, {U: "a*"}, R + "a*-x", True),
    (V12, R + "${aws:TagKeys}/*", {}, {TAGS: ["a"]}, R + "a/app", False),    # multivalued keys cannot be used
    (V12, R + "${ecr:ResourceTag/team}/*", {}, {"ecr:ResourceTag/team": "blue"}, R + "blue/app", True),
    (V12, R + "${}/app", {}, {}, R + "${}/app", True),                       # not a variable: literal
    (V12, R + "${nocolon}/app", {}, {}, R + "${nocolon}/app", True),
    (V12, R + "x${*}y", {}, {}, R + "x*y", True),                            # ${*} is a literal '*'
    (V12, R + "x${*}y", {}, {}, R + "xzy", False),
    (V12, R + "x${?}y", {}, {}, R + "x?y", True),
    (V12, R + "x${$}y", {}, {}, R + "x$y", True),
    (V08, R + "${aws:username}/*", {}, {U: "alice"}, R + "alice/app", False),  # 2008: no variables
    (V08, R + "${aws:username}/*", {}, {U: "alice"}, R + "${aws:username}/app", True),
    (None, R + "${aws:username}/*", {}, {U: "alice"}, R + "alice/app", False),  # no Version: 2008 semantics
    (None, R + "${aws:username}/*", {}, {U: "alice"}, R + "${aws:username}/app", True),
    (V12, "*", {"StringEquals": {"ecr:ResourceTag/owner": "${aws:username}"}},
     {"ecr:ResourceTag/owner": "alice", U: "alice"}, REPO, True),
    (V12, "*", {"StringEquals": {"ecr:ResourceTag/owner": "${aws:username}"}},
     {"ecr:ResourceTag/owner": "bob", U: "alice"}, REPO, False),
    (V12, "*", {"StringEquals": {"ecr:ResourceTag/owner": "${aws:username}"}},
     {"ecr:ResourceTag/owner": "alice"}, REPO, False),
    (V12, "*", {"StringNotEquals": {"ecr:ResourceTag/owner": "${aws:username}"}},
     {"ecr:ResourceTag/owner": "alice"}, REPO, False),                       # unresolved: statement invalid
    (V12, "*", {"StringEqualsIfExists": {"ecr:ResourceTag/owner": "${aws:username}"}}, {}, REPO, True),
    (V12, "*", {"StringLike": {"aws:PrincipalArn": "arn:aws:iam::*:user/${aws:username}"}}, {U: "alice"}, REPO,
     True),
    (V12, "*", {"StringLike": {"ecr:tag": "${aws:username}"}}, {U: "a*", "ecr:tag": "abc"}, REPO, False),
    (V12, "*", {"StringLike": {"ecr:tag": "${aws:username}"}}, {U: "a*", "ecr:tag": "a*"}, REPO, True),
    (V12, "*", {"StringLike": {"ecr:tag": "a${*}"}}, {"ecr:tag": "a*"}, REPO, True),
    (V12, "*", {"StringLike": {"ecr:tag": "a${*}"}}, {"ecr:tag": "ab"}, REPO, False),
    (V12, "*", {"StringEquals": {"ecr:tag": "${aws:PrincipalTag/nick, 'anon'}"}}, {"ecr:tag": "anon"}, REPO, True),
    (V12, "*", {"StringEqualsIgnoreCase": {"ecr:tag": "${aws:username}"}}, {U: "ALICE", "ecr:tag": "alice"},
     REPO, True),
    (V12, "*", {"ArnEquals": {ARN: "${aws:PrincipalArn}"}}, {ARN: ALICE}, REPO, True),
    (V12, "*", {"ArnLike": {ARN: "arn:aws:iam::${aws:PrincipalAccount}:user/*"}}, {ARN: BOB}, REPO, True),
    (V12, "*", {"Bool": {SECURE: "${ecr:flag}"}}, {"ecr:flag": "true", SECURE: True}, REPO, True),
    (V12, "*", {"Bool": {SECURE: "${ecr:flag}"}}, {"ecr:flag": "false", SECURE: True}, REPO, False),
    (V08, "*", {"StringEquals": {"ecr:tag": "${aws:username}"}}, {U: "alice", "ecr:tag": "alice"}, REPO, False),
    (V08, "*", {"StringEquals": {"ecr:tag": "${aws:username}"}}, {"ecr:tag": "${aws:username}"}, REPO, True),
]


@pytest.mark.parametrize(("version", "resource", "condition", "context", "arn", "expected"), VARIABLE_ROWS,
                         ids=[f"{r[0]}:{r[1].removeprefix(R)}:{r[2]}:{r[3]}->{r[5]}" for r in VARIABLE_ROWS])
def test_policy_variables(version: str | None, resource: str, condition: dict[str, Any], context: dict[str, Any],
                          arn: str, expected: bool) -> None:
    decision = decide(condition, context, resource=resource, version=version, resource_arn=arn)
    assert decision.allowed is expected, decision


def test_unresolved_variable_disables_a_deny_statement_too() -> None:
    doc = {"Version": V12, "Statement": [
        {"Sid": "All", "Effect": "Allow", "Action": "*", "Resource": "*"},
        {"Sid": "Own", "Effect": "Deny", "Action": "*", "NotResource": R + "${aws:username}/*"},
    ]}
    policy = parse_policy(json.dumps(doc), resource_policy=False)
    base = RequestFacts("ecr:PutImage", R + "alice/app", ALICE, ACCOUNT, {U: "bob"})
    assert evaluate(base, [("p", policy)], [], resource_account=ACCOUNT).reason == "explicit_deny"
    same = RequestFacts("ecr:PutImage", R + "alice/app", ALICE, ACCOUNT, {U: "alice"})
    assert evaluate(same, [("p", policy)], [], resource_account=ACCOUNT).reason == "allowed"
    unknown = RequestFacts("ecr:PutImage", R + "alice/app", ALICE, ACCOUNT, {})
    assert evaluate(unknown, [("p", policy)], [], resource_account=ACCOUNT) == Decision(True, "allowed", "p", "All")


def test_every_row_family_is_exercised() -> None:
    from cargohold.domain.policy_conditions import OPERATORS

    used = {row[0].split(":")[-1].removesuffix("IfExists") for row in ALL_ROWS}
    assert set(OPERATORS) <= used
    assert len(ALL_ROWS) + len(BLOCK_ROWS) + len(VARIABLE_ROWS) >= 300
