"""Lifecycle policy text: what parses, into what, and every invalid form with its ECR-style message."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cargohold.domain.lifecycle import (
    MAX_POLICY_CHARS,
    LifecyclePolicy,
    LifecyclePolicyError,
    Rule,
    parse_lifecycle_policy,
    pattern_matches,
)

FRAME = "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: "
VALIDATION = FRAME + "'Lifecycle policy validation failure: "


def sel(status: Any = "any", count_type: str = "imageCountMoreThan", number: Any = 1, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"tagStatus": status, "countType": count_type, "countNumber": number}
    if count_type in ("sinceImagePushed", "sinceImagePulled"):
        doc["countUnit"] = "days"
    doc.update(extra)
    return doc


def rule(priority: Any = 1, selection: Any = None, action: Any = None, **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"rulePriority": priority, "selection": sel() if selection is None else selection,
                           "action": {"type": "expire"} if action is None else action}
    doc.update(extra)
    return doc


def text(*rules: Any) -> str:
    return json.dumps({"rules": list(rules)})


def without(doc: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in keys}


# -- valid policies -----------------------------------------------------------------------------------


def test_minimal_policy() -> None:
    policy = parse_lifecycle_policy(text(rule()))
    assert policy == LifecyclePolicy((Rule(priority=1, description=None, tag_status="any", tag_prefixes=(),
                                           tag_patterns=(), count_type="imageCountMoreThan", count_unit=None,
                                           count_number=1, action="expire"),))


def test_full_rule_fields() -> None:
    doc = rule(3, sel("tagged", "sinceImagePushed", 14, tagPrefixList=["prod", "release"]),
               description="Expire prod images older than 14 days")
    (parsed,) = parse_lifecycle_policy(text(doc)).rules
    assert parsed == Rule(3, "Expire prod images older than 14 days", "tagged", ("prod", "release"), (),
                          "sinceImagePushed", "days", 14, "expire")


def test_pattern_rule_fields() -> None:
    (parsed,) = parse_lifecycle_policy(text(rule(1, sel("tagged", number=5, tagPatternList=["v*.*.*", "*-rc*"])))).rules
    assert parsed.tag_patterns == ("v*.*.*", "*-rc*")
    assert parsed.tag_prefixes == ()
    assert parsed.count_unit is None


def test_rules_sorted_by_priority_whatever_the_document_order() -> None:
    policy = parse_lifecycle_policy(text(
        rule(100, sel("any", number=10)),
        rule(7, sel("untagged", "sinceImagePushed", 10)),
        rule(30, sel("tagged", tagPatternList=["dev-*"])),
    ))
    assert [r.priority for r in policy.rules] == [7, 30, 100]
    assert [r.tag_status for r in policy.rules] == ["untagged", "tagged", "any"]


def test_since_image_pulled_with_expire_is_accepted() -> None:
    # ECR only allows sinceImagePulled with the transition action; this registry has no archive storage,
    # so it accepts the rule with expire instead (see the module docstring).
    (parsed,) = parse_lifecycle_policy(text(rule(1, sel("any", "sinceImagePulled", 90)))).rules
    assert (parsed.count_type, parsed.count_unit, parsed.count_number) == ("sinceImagePulled", "days", 90)


def test_standard_storage_class_is_accepted_and_ignored() -> None:
    (parsed,) = parse_lifecycle_policy(text(rule(1, sel(storageClass="standard")))).rules
    assert parsed.count_type == "imageCountMoreThan"


def test_documented_wildcard_limit_examples() -> None:
    # [P] "For example, ["*test*1*2*3", "test*1*2*3*"] is valid but ["test*1*2*3*4*5*6"] is invalid."
    parse_lifecycle_policy(text(rule(1, sel("tagged", tagPatternList=["*test*1*2*3", "test*1*2*3*"]))))
    with pytest.raises(LifecyclePolicyError) as exc:
        parse_lifecycle_policy(text(rule(1, sel("tagged", tagPatternList=["test*1*2*3*4*5*6"]))))
    assert "maximum limit of 4 wildcards" in exc.value.detail


def test_untagged_tagged_and_any_rules_together() -> None:
    policy = parse_lifecycle_policy(text(
        rule(1, sel("tagged", tagPrefixList=["alpha"])),
        rule(2, sel("untagged", "sinceImagePushed", 1)),
        rule(3, sel("any")),
    ))
    assert [r.tag_status for r in policy.rules] == ["tagged", "untagged", "any"]


def test_distinct_prefix_sets_are_allowed() -> None:
    parse_lifecycle_policy(text(rule(1, sel("tagged", tagPrefixList=["a"])),
                                rule(2, sel("tagged", tagPrefixList=["a", "b"])),
                                rule(3, sel("tagged", tagPatternList=["a"])),
                                rule(4, sel("tagged", tagPatternList=["a"]))))


def test_length_limit_is_inclusive() -> None:
    body = text(rule())
    assert len(parse_lifecycle_policy(body + " " * (MAX_POLICY_CHARS - len(body))).rules) == 1


def test_large_count_number_and_priority() -> None:
    (parsed,) = parse_lifecycle_policy(text(rule(10**12, sel("any", "sinceImagePushed", 10**15)))).rules
    assert (parsed.priority, parsed.count_number) == (10**12, 10**15)


def test_unicode_description() -> None:
    (parsed,) = parse_lifecycle_policy(text(rule(1, description="nettoyage — images « anciennes »"))).rules
    assert parsed.description == "nettoyage — images « anciennes »"


def test_rule_matches() -> None:
    prefixes = Rule(1, None, "tagged", ("prod", "sha-"), (), "imageCountMoreThan", None, 1)
    assert prefixes.matches(("prod-1", "sha-abc"))
    assert prefixes.matches(("sha-abc", "x", "production"))
    assert not prefixes.matches(("prod-1",))
    assert not prefixes.matches(())
    patterns = Rule(1, None, "tagged", (), ("*-rc*", "v2*"), "imageCountMoreThan", None, 1)
    assert patterns.matches(("v2.0.0-rc1",))
    assert patterns.matches(("v3-rc", "v2"))
    assert not patterns.matches(("v3-rc",))
    untagged = Rule(1, None, "untagged", (), (), "imageCountMoreThan", None, 1)
    assert untagged.matches(()) and not untagged.matches(("x",))
    anything = Rule(1, None, "any", (), (), "imageCountMoreThan", None, 1)
    assert anything.matches(()) and anything.matches(("x",))


@pytest.mark.parametrize(("pattern", "tag", "expected"), [
    ("prod*", "prod", True), ("prod*", "prod1", True), ("prod*", "production-team1", True),
    ("*prod*", "repo-production", True), ("*prod*", "prod-team", True), ("*prod*", "pro-d", False),
    ("prod*", "preprod", False), ("latest", "latest", True), ("latest", "latest2", False),
    ("latest", "Latest", False), ("*", "anything", True), ("**", "x", True), ("a*a", "a", False),
    ("a*a", "aa", True), ("a*b*a", "aba", True), ("a*b*a", "aab", False), ("*test*1*2*3", "my-test-1-2-3", True),
    ("test*1*2*3*", "test123", True), ("test*1*2*3*", "tes123", False), ("v*.*.*", "v1.2.3", True),
    ("v*.*.*", "v1.2", False), ("*.*", ".", True), ("a.c", "abc", False), ("a?c", "abc", False),
    ("[ab]", "a", False), ("[ab]", "[ab]", True), ("*x", "xx", True), ("x*x*x", "xxx", True),
    ("x*x*x", "xx", False), ("*ab*ab*", "abab", True), ("*ab*ab*", "aba", False),
])
def test_pattern_matches(pattern: str, tag: str, expected: bool) -> None:
    assert pattern_matches(pattern, tag) is expected


# -- invalid policies ---------------------------------------------------------------------------------

INVALID: list[Any] = [
    # the text itself
    pytest.param("some invalid input", "Could not map policyString into LifecyclePolicy.", id="not-json"),
    pytest.param("", "Could not map policyString into LifecyclePolicy.", id="empty-text"),
    pytest.param(json.dumps([rule()]), "Could not map policyString into LifecyclePolicy.", id="top-level-array"),
    pytest.param('"rules"', "Could not map policyString into LifecyclePolicy.", id="top-level-string"),
    pytest.param('{"rules": NaN}', "Could not map policyString into LifecyclePolicy.", id="nan-constant"),
    pytest.param(text(rule(selection=sel(number=1))).replace('"countNumber": 1', '"countNumber": Infinity'),
                 "Could not map policyString into LifecyclePolicy.", id="infinity-constant"),
    pytest.param("[" * 5000 + "]" * 5000, "Could not map policyString into LifecyclePolicy.", id="deep-nesting"),
    pytest.param(text(rule())[:-1], "Could not map policyString into LifecyclePolicy.", id="truncated"),
    # the top-level object
    pytest.param("{}", 'object has missing required properties (["rules"])', id="no-rules"),
    pytest.param(json.dumps({"rules": [rule()], "version": 1}),
                 'object instance has properties which are not allowed by the schema: (["version"])',
                 id="unknown-top-level-key"),
    pytest.param(json.dumps({"rules": rule()}),
                 'instance type (object) does not match any allowed primitive type (allowed: ["array"])',
                 id="rules-not-array"),
    pytest.param(json.dumps({"rules": None}),
                 'instance type (null) does not match any allowed primitive type (allowed: ["array"])',
                 id="rules-null"),
    pytest.param(text(), "array is too short: must have at least 1 elements but instance has 0 elements",
                 id="rules-empty"),
    # a rule
    pytest.param(text("not a rule"),
                 'instance type (string) does not match any allowed primitive type (allowed: ["object"])',
                 id="rule-not-object"),
    pytest.param(text(None), 'instance type (null) does not match any allowed primitive type (allowed: ["object"])',
                 id="rule-null"),
    pytest.param(text(without(rule(), "rulePriority")), 'object has missing required properties (["rulePriority"])',
                 id="missing-rulePriority"),
    pytest.param(text(without(rule(), "selection")), 'object has missing required properties (["selection"])',
                 id="missing-selection"),
    pytest.param(text(without(rule(), "action")), 'object has missing required properties (["action"])',
                 id="missing-action"),
    pytest.param(text({"description": "x"}),
                 'object has missing required properties (["action","rulePriority","selection"])',
                 id="missing-all-required"),
    pytest.param(text(rule(enabled=True)),
                 'object instance has properties which are not allowed by the schema: (["enabled"])',
                 id="unknown-rule-key"),
    pytest.param(text(rule("1")), 'instance type (string) does not match any allowed primitive type (allowed: '
                                  '["integer"])', id="rulePriority-string"),
    pytest.param(text(rule(1.0)), 'instance type (number) does not match any allowed primitive type (allowed: '
                                  '["integer"])', id="rulePriority-float"),
    pytest.param(text(rule(True)), 'instance type (boolean) does not match any allowed primitive type (allowed: '
                                   '["integer"])', id="rulePriority-boolean"),
    pytest.param(text(rule(0)), "numeric instance is lower than the required minimum (minimum: 1, found: 0)",
                 id="rulePriority-zero"),
    pytest.param(text(rule(-3)), "numeric instance is lower than the required minimum (minimum: 1, found: -3)",
                 id="rulePriority-negative"),
    pytest.param(text(rule(description=5)), 'instance type (integer) does not match any allowed primitive type '
                                            '(allowed: ["string"])', id="description-integer"),
    pytest.param(text(rule(description=None)), 'instance type (null) does not match any allowed primitive type '
                                               '(allowed: ["string"])', id="description-null"),
    # the selection
    pytest.param(text(rule(selection=[sel()])), 'instance type (array) does not match any allowed primitive type '
                                                '(allowed: ["object"])', id="selection-not-object"),
    pytest.param(text(rule(selection=without(sel(), "tagStatus"))),
                 'object has missing required properties (["tagStatus"])', id="missing-tagStatus"),
    pytest.param(text(rule(selection=without(sel(), "countType"))),
                 'object has missing required properties (["countType"])', id="missing-countType"),
    pytest.param(text(rule(selection=without(sel(), "countNumber"))),
                 'object has missing required properties (["countNumber"])', id="missing-countNumber"),
    pytest.param(text(rule(selection={})),
                 'object has missing required properties (["countNumber","countType","tagStatus"])',
                 id="selection-empty"),
    pytest.param(text(rule(selection=sel(tagList=["x"]))),
                 'object instance has properties which are not allowed by the schema: (["tagList"])',
                 id="unknown-selection-key"),
    pytest.param(text(rule(selection=sel("TAGGED", tagPrefixList=["x"]))),
                 'instance value ("TAGGED") not found in enum (possible values: ["tagged","untagged","any"])',
                 id="tagStatus-wrong-case"),
    pytest.param(text(rule(selection=sel(None))),
                 'instance value (null) not found in enum (possible values: ["tagged","untagged","any"])',
                 id="tagStatus-null"),
    pytest.param(text(rule(selection=sel(count_type="imageCountLessThan"))),
                 'instance value ("imageCountLessThan") not found in enum (possible values: ["imageCountMoreThan",'
                 '"sinceImagePushed","sinceImagePulled","sinceImageTransitioned"])', id="countType-unknown"),
    pytest.param(text(rule(selection=sel(count_type="sinceImageTransitioned", countUnit="days"))),
                 "countType sinceImageTransitioned needs the archive storage class, which this registry does not "
                 "support", id="countType-sinceImageTransitioned"),
    pytest.param(text(rule(selection=sel(number=0))),
                 "numeric instance is lower than the required minimum (minimum: 1, found: 0)", id="countNumber-zero"),
    pytest.param(text(rule(selection=sel(number=-1))),
                 "numeric instance is lower than the required minimum (minimum: 1, found: -1)",
                 id="countNumber-negative"),
    pytest.param(text(rule(selection=sel(number="5"))),
                 'instance type (string) does not match any allowed primitive type (allowed: ["integer"])',
                 id="countNumber-string"),
    pytest.param(text(rule(selection=sel(number=2.5))),
                 'instance type (number) does not match any allowed primitive type (allowed: ["integer"])',
                 id="countNumber-float"),
    pytest.param(text(rule(selection=sel(number=None))),
                 'instance type (null) does not match any allowed primitive type (allowed: ["integer"])',
                 id="countNumber-null"),
    pytest.param(text(rule(selection=sel(count_type="sinceImagePushed", countUnit="hours"))),
                 'instance value ("hours") not found in enum (possible values: ["days"])', id="countUnit-hours"),
    pytest.param(text(rule(selection=sel(count_type="sinceImagePushed", countUnit=None))),
                 'instance value (null) not found in enum (possible values: ["days"])', id="countUnit-null"),
    pytest.param(text(rule(selection=without(sel(count_type="sinceImagePushed"), "countUnit"))),
                 "countUnit is required when countType is sinceImagePushed", id="countUnit-missing-pushed"),
    pytest.param(text(rule(selection=without(sel(count_type="sinceImagePulled"), "countUnit"))),
                 "countUnit is required when countType is sinceImagePulled", id="countUnit-missing-pulled"),
    pytest.param(text(rule(selection=sel(countUnit="days"))),
                 "countUnit must not be specified when countType is imageCountMoreThan", id="countUnit-with-count"),
    pytest.param(text(rule(selection=sel(storageClass="archive"))),
                 "storageClass archive is not supported by this registry; the supported value is standard",
                 id="storageClass-archive"),
    pytest.param(text(rule(selection=sel(storageClass="glacier"))),
                 'instance value ("glacier") not found in enum (possible values: ["standard","archive"])',
                 id="storageClass-unknown"),
    # tag filters
    pytest.param(text(rule(selection=sel("tagged"))), "Must specify tagPrefixList or tagPatternList when "
                                                      "tagStatus=TAGGED", id="tagged-without-filter"),
    pytest.param(text(rule(selection=sel("tagged", tagPrefixList=[]))),
                 "array is too short: must have at least 1 elements but instance has 0 elements",
                 id="tagged-empty-prefix-list"),
    pytest.param(text(rule(selection=sel("tagged", tagPatternList=[]))),
                 "array is too short: must have at least 1 elements but instance has 0 elements",
                 id="tagged-empty-pattern-list"),
    pytest.param(text(rule(selection=sel("tagged", tagPrefixList=["a"], tagPatternList=["a*"]))),
                 "A lifecycle policy rule may specify either tagPatternList or tagPrefixList, but not both",
                 id="both-lists"),
    pytest.param(text(rule(selection=sel("untagged", tagPrefixList=["a"]))),
                 "tagPatternList and tagPrefixList may only be used if tagStatus is tagged (tagStatus is untagged)",
                 id="untagged-with-prefixes"),
    pytest.param(text(rule(selection=sel("any", tagPatternList=["a*"]))),
                 "tagPatternList and tagPrefixList may only be used if tagStatus is tagged (tagStatus is any)",
                 id="any-with-patterns"),
    pytest.param(text(rule(selection=sel("tagged", tagPrefixList="prod"))),
                 'instance type (string) does not match any allowed primitive type (allowed: ["array"])',
                 id="prefix-list-not-array"),
    pytest.param(text(rule(selection=sel("tagged", tagPatternList=["ok", 1]))),
                 'instance type (integer) does not match any allowed primitive type (allowed: ["string"])',
                 id="pattern-not-string"),
    pytest.param(text(rule(selection=sel("tagged", tagPatternList=["a*b*c*d*e*f"]))),
                 'tagPatternList value "a*b*c*d*e*f" has 5 wildcards; there is a maximum limit of 4 wildcards (*) '
                 "per string", id="five-wildcards"),
    pytest.param(text(rule(selection=sel("tagged", tagPatternList=["ok*", "test*1*2*3*4*5*6"]))),
                 'tagPatternList value "test*1*2*3*4*5*6" has 6 wildcards; there is a maximum limit of 4 wildcards '
                 "(*) per string", id="documented-invalid-pattern"),
    # the action
    pytest.param(text(rule(action="expire")),
                 'instance type (string) does not match any allowed primitive type (allowed: ["object"])',
                 id="action-not-object"),
    pytest.param(text(rule(action={})), 'object has missing required properties (["type"])', id="action-no-type"),
    pytest.param(text(rule(action={"type": "expire", "when": "now"})),
                 'object instance has properties which are not allowed by the schema: (["when"])',
                 id="action-unknown-key"),
    pytest.param(text(rule(action={"type": "delete"})),
                 'instance value ("delete") not found in enum (possible values: ["expire","transition"])',
                 id="action-type-unknown"),
    pytest.param(text(rule(action={"type": "EXPIRE"})),
                 'instance value ("EXPIRE") not found in enum (possible values: ["expire","transition"])',
                 id="action-type-wrong-case"),
    pytest.param(text(rule(action={"type": "transition", "targetStorageClass": "archive"})),
                 "action type transition (archive storage) is not supported by this registry; the supported value "
                 "is expire", id="action-transition"),
    pytest.param(text(rule(action={"type": "expire", "targetStorageClass": "archive"})),
                 "targetStorageClass may only be specified when the action type is transition",
                 id="targetStorageClass-with-expire"),
    # constraints between rules
    pytest.param(text(rule(2, sel("untagged")), rule(2, sel("tagged", tagPrefixList=["a"]))),
                 "rulePriority must be unique across rules; 2 is used by more than one rule", id="duplicate-priority"),
    pytest.param(text(rule(1, sel("untagged")), rule(2, sel("untagged", "sinceImagePushed", 3))),
                 "Only one rule can select Untagged images per storage class", id="two-untagged-rules"),
    pytest.param(text(rule(1, sel("any")), rule(2, sel("tagged", tagPrefixList=["a"]))),
                 "Rule for tagStatus=ANY must have the lowest priority per storage class: its rulePriority (1) must "
                 "be the highest in the policy (2)", id="any-not-last"),
    pytest.param(text(rule(5, sel("any")), rule(9, sel("any", number=3))),
                 "Rule for tagStatus=ANY must have the lowest priority per storage class: its rulePriority (5) must "
                 "be the highest in the policy (9)", id="two-any-rules"),
    pytest.param(text(rule(1, sel("tagged", tagPrefixList=["prod", "beta"])),
                      rule(2, sel("tagged", "sinceImagePushed", 3, tagPrefixList=["beta", "prod", "beta"]))),
                 'The set of rules must contain a unique set of tag prefixes; tagPrefixList ["beta","prod"] is used '
                 "by more than one rule", id="duplicate-prefix-set"),
]


@pytest.mark.parametrize(("policy_text", "detail"), INVALID)
def test_invalid_policy(policy_text: str, detail: str) -> None:
    with pytest.raises(LifecyclePolicyError) as exc:
        parse_lifecycle_policy(policy_text)
    assert exc.value.detail == detail
    assert exc.value.message == str(exc.value) == VALIDATION + detail + "'"


def test_too_long() -> None:
    body = text(rule())
    with pytest.raises(LifecyclePolicyError) as exc:
        parse_lifecycle_policy(body + " " * (MAX_POLICY_CHARS + 1 - len(body)))
    assert str(exc.value) == FRAME + "'Member must have length less than or equal to 30720'"


def test_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="Lifecycle policy validation failure"):
        parse_lifecycle_policy("{}")


def test_first_invalid_rule_in_document_order_is_reported() -> None:
    with pytest.raises(LifecyclePolicyError) as exc:
        parse_lifecycle_policy(text(rule(1, sel(number=0)), rule(0)))
    assert exc.value.detail == "numeric instance is lower than the required minimum (minimum: 1, found: 0)"
    with pytest.raises(LifecyclePolicyError) as exc:
        parse_lifecycle_policy(text(rule(2, sel("bogus")), rule(1, sel(count_type="bogus"))))
    assert exc.value.detail.startswith('instance value ("bogus") not found in enum (possible values: ["tagged"')


def test_documented_sinceimagepulled_example_is_rejected_for_its_transition_action() -> None:
    # [E] "Filtering on last pulled time", verbatim: valid on ECR, but it archives, and this registry
    # has no archive storage class.
    documented = """{
    "rules": [
        {
            "rulePriority": 1,
            "description": "Archive images not pulled in 90 days",
            "selection": {
                "tagStatus": "any",
                "countType": "sinceImagePulled",
                "countUnit": "days",
                "countNumber": 90
            },
            "action": {
                "type": "transition",
                "targetStorageClass": "archive"
            }
        }
    ]
}"""
    with pytest.raises(LifecyclePolicyError) as exc:
        parse_lifecycle_policy(documented)
    assert "transition" in exc.value.detail and "not supported" in exc.value.detail
