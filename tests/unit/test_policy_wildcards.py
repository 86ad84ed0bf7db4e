"""Property tests for IAM wildcard matching ('*' and '?', nothing else special) and policy-variable literals."""

from __future__ import annotations

import fnmatch
import json
from functools import cache

from hypothesis import given, settings
from hypothesis import strategies as st

from cargohold.domain.policy import RequestFacts, evaluate, parse_policy
from cargohold.domain.policy_conditions import arn_match, expand, wildcard_match

# A small alphabet with every regex and fnmatch metacharacter, so that accidental regex semantics show up.
ALPHABET = "ab:/.*?[]^$\\+(){}|!-"
TEXT = st.text(alphabet="ab:/.[]^$\\+(){}|!-", max_size=8)
PATTERN = st.text(alphabet=ALPHABET, max_size=8)
FAST = settings(max_examples=100, deadline=None, database=None)


def reference(pattern: str, value: str) -> bool:
    """fnmatch with its '[...]' sets neutralised: '[' becomes the one-character set '[[]'."""
    return fnmatch.fnmatchcase(value, pattern.replace("[", "[[]"))


def dp_reference(pattern: str, value: str) -> bool:
    """A direct dynamic-programming matcher, independent of any regex engine."""

    @cache
    def match(i: int, j: int) -> bool:
        if i == len(pattern):
            return j == len(value)
        if pattern[i] == "*":
            return match(i + 1, j) or (j < len(value) and match(i, j + 1))
        if j == len(value):
            return False
        return (pattern[i] == "?" or pattern[i] == value[j]) and match(i + 1, j + 1)

    return match(0, 0)


@FAST
@given(TEXT, TEXT)
def test_pattern_without_wildcards_matches_only_itself(pattern: str, value: str) -> None:
    assert wildcard_match(pattern, value) is (pattern == value)
    assert wildcard_match(pattern, pattern)


@FAST
@given(st.text(max_size=20))
def test_star_matches_everything(value: str) -> None:
    assert wildcard_match("*", value)
    assert wildcard_match("**", value)
    assert wildcard_match("*" + value, value)
    assert wildcard_match(value + "*", value) or "?" in value


@FAST
@given(PATTERN, TEXT)
def test_agrees_with_fnmatch_reference(pattern: str, value: str) -> None:
    assert wildcard_match(pattern, value) is reference(pattern, value)


@FAST
@given(PATTERN, st.text(alphabet=ALPHABET, max_size=8))
def test_agrees_with_dp_reference(pattern: str, value: str) -> None:
    assert wildcard_match(pattern, value) is dp_reference(pattern, value)


@FAST
@given(st.text(alphabet="aAbB*?:.", max_size=8), st.text(alphabet="aAbB:.", max_size=8))
def test_ignore_case_agrees_with_folded_reference(pattern: str, value: str) -> None:
    assert wildcard_match(pattern, value, ignore_case=True) is reference(pattern.lower(), value.lower())


@FAST
@given(PATTERN)
def test_every_pattern_matches_its_own_text(pattern: str) -> None:
    assert wildcard_match(pattern, pattern)


@FAST
@given(st.text(alphabet="ab?", max_size=6), st.text(alphabet="ab", max_size=6))
def test_question_marks_only_match_same_length(pattern: str, value: str) -> None:
    if wildcard_match(pattern, value):
        assert len(pattern) == len(value)


@FAST
@given(PATTERN, TEXT, PATTERN, TEXT)
def test_concatenation(p1: str, s1: str, p2: str, s2: str) -> None:
    if wildcard_match(p1, s1) and wildcard_match(p2, s2):
        assert wildcard_match(p1 + p2, s1 + s2)


SEGMENT = st.text(alphabet="ab-/", max_size=4)


@FAST
@given(st.lists(SEGMENT, min_size=6, max_size=6), st.lists(SEGMENT, min_size=6, max_size=6))
def test_arn_match_without_wildcards_is_equality(a: list[str], b: list[str]) -> None:
    left, right = ":".join(a), ":".join(b)
    pattern = expand(left, wild=True, variables=False, context=None)
    assert arn_match(pattern, right) is (left == right)


@FAST
@given(st.lists(SEGMENT, min_size=6, max_size=6), st.integers(min_value=0, max_value=5))
def test_arn_star_component_matches_any_value_there(parts: list[str], index: int) -> None:
    pattern_parts = list(parts)
    pattern_parts[index] = "*"
    pattern = expand(":".join(pattern_parts), wild=True, variables=False, context=None)
    assert arn_match(pattern, ":".join(parts))


ACCOUNT = "111122223333"
USER_POLICY = parse_policy(json.dumps({"Version": "2012-10-17", "Statement": {
    "Effect": "Allow", "Action": "ecr:*", "Resource": "*",
    "Condition": {"StringLike": {"ecr:ResourceTag/owner": "${aws:username}"}}}}), resource_policy=False)


@FAST
@given(st.text(alphabet=ALPHABET, min_size=1, max_size=8), st.text(alphabet=ALPHABET, max_size=8))
def test_substituted_variables_are_literal(username: str, owner: str) -> None:
    facts = RequestFacts("ecr:BatchGetImage", "arn:aws:ecr:us-east-1:111122223333:repository/x",
                         f"arn:aws:iam::{ACCOUNT}:user/u", ACCOUNT,
                         {"aws:username": username, "ecr:ResourceTag/owner": owner})
    decision = evaluate(facts, [("p", USER_POLICY)], [], resource_account=ACCOUNT)
    assert decision.allowed is (owner == username)
