"""ECR lifecycle policies: parse and validate the policy text, and select the images a policy expires.

Pure: no I/O and no clock -- the evaluation time is passed in. Errors are LifecyclePolicyError, worded
the way ECR's InvalidParameterException words them for PutLifecyclePolicy:
``Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: 'Lifecycle policy validation
failure: <detail>'``.

Sources (Amazon ECR User Guide, read when this module was written):
  [P] "Lifecycle policy properties in Amazon ECR" (lifecycle_policy_parameters.html)
  [H] "Automate the cleanup of images by using lifecycle policies in Amazon ECR", sections
      "How lifecycle policies work" / "Lifecycle policy evaluation rules" (LifecyclePolicies.html)
  [E] "Examples of lifecycle policies in Amazon ECR" (lifecycle_policy_examples.html)
  [M] botocore's ECR service model: LifecyclePolicyText is a string of 100..30720 characters,
      LifecyclePolicyRulePriority an integer >= 1.
Error details for schema-shaped failures ("object has missing required properties", "instance value
... not found in enum", ...) follow the JSON-schema validator wording that ECR returns (as reported in
public issue threads and mirrored by moto); details for the semantic checks are worded here, because ECR
does not document its own text for them.

Deliberate differences from ECR, because this registry has no archive storage class:
  * ``action.type`` must be ``expire``; ``transition``/``targetStorageClass``, ``storageClass: archive``
    and ``countType: sinceImageTransitioned`` are rejected as unsupported. ``storageClass: standard``
    (ECR's default) is accepted and ignored.
  * ``countType: sinceImagePulled`` is accepted with ``expire``. ECR itself only allows it with
    ``transition`` ([E], "Filtering on last pulled time": "The sinceImagePulled count type must be used
    with the transition action. It cannot be used with the expire action."); here it expires directly.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, NoReturn, cast

TagStatus = Literal["tagged", "untagged", "any"]
CountType = Literal["imageCountMoreThan", "sinceImagePushed", "sinceImagePulled"]
CountUnit = Literal["days"]
ActionType = Literal["expire"]

MAX_POLICY_CHARS = 30_720  # [M]
MAX_PATTERN_WILDCARDS = 4  # [P] "Tag pattern list": "a maximum limit of four wildcards (*) per string"

_CONSTRAINT = "Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: "
_UNMAPPABLE = "Could not map policyString into LifecyclePolicy."

_TAG_STATUSES = ("tagged", "untagged", "any")
# ECR's full vocabularies, so an ECR-valid but unsupported value is told apart from a typo.
_COUNT_TYPES = ("imageCountMoreThan", "sinceImagePushed", "sinceImagePulled", "sinceImageTransitioned")
_STORAGE_CLASSES = ("standard", "archive")
_ACTION_TYPES = ("expire", "transition")
_AGE_COUNT_TYPES = ("sinceImagePushed", "sinceImagePulled")

_RULE_KEYS = ("rulePriority", "description", "selection", "action")
_RULE_REQUIRED = ("rulePriority", "selection", "action")
_SELECTION_KEYS = ("tagStatus", "tagPatternList", "tagPrefixList", "storageClass", "countType", "countUnit",
                   "countNumber")
_SELECTION_REQUIRED = ("tagStatus", "countType", "countNumber")
_ACTION_KEYS = ("type", "targetStorageClass")


class LifecyclePolicyError(ValueError):
    """An invalid lifecycle policy. ``str(err)`` and ``err.message`` carry ECR's full message."""

    def __init__(self, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail if detail is not None else message


@dataclass(frozen=True)
class Rule:
    priority: int
    description: str | None
    tag_status: TagStatus
    tag_prefixes: tuple[str, ...]  # non-empty only for tag_status "tagged" (and then tag_patterns is empty)
    tag_patterns: tuple[str, ...]  # non-empty only for tag_status "tagged" (and then tag_prefixes is empty)
    count_type: CountType
    count_unit: CountUnit | None  # "days" for the since* count types, None for imageCountMoreThan
    count_number: int
    action: ActionType = "expire"

    def matches(self, tags: Sequence[str]) -> bool:
        """Whether an image with these tags meets this rule's tagging requirements.

        [H]: "An image is successfully matched if all of the tags in the tagPatternList or tagPrefixList
        value are matched against any of the image's tags." -- every entry must be matched, each by any
        one of the image's tags (the entries may be matched by different tags, or all by the same tag).
        """
        if self.tag_status == "any":
            return True
        if self.tag_status == "untagged":
            return not tags
        if self.tag_prefixes:
            return all(any(tag.startswith(prefix) for tag in tags) for prefix in self.tag_prefixes)
        return all(any(pattern_matches(pattern, tag) for tag in tags) for pattern in self.tag_patterns)


@dataclass(frozen=True)
class LifecyclePolicy:
    rules: tuple[Rule, ...]  # sorted by priority, lowest number (evaluated first) first


@dataclass(frozen=True)
class ImageFacts:
    digest: str
    tags: tuple[str, ...]
    pushed_at: datetime
    last_pulled_at: datetime | None  # None: never pulled


@dataclass(frozen=True)
class Expiry:
    digest: str
    tags: tuple[str, ...]
    pushed_at: datetime
    rule_priority: int


def pattern_matches(pattern: str, tag: str) -> bool:
    """tagPatternList matching: the whole tag against the pattern, where each '*' matches any run of
    characters (including none) and every other character matches itself ([H]: "prod*" matches "prod",
    "prod1", "production-team1"; "*prod*" matches "repo-production", "prod-team")."""
    parts = pattern.split("*")
    if len(parts) == 1:
        return tag == pattern
    head, *middle, tail = parts
    if len(tag) < len(head) + len(tail) or not tag.startswith(head) or not tag.endswith(tail):
        return False
    position, end = len(head), len(tag) - len(tail)
    for part in middle:  # leftmost placement of each fixed run is optimal when '*' is the only wildcard
        found = tag.find(part, position, end)
        if found < 0:
            return False
        position = found + len(part)
    return True


# -- parsing and validation ---------------------------------------------------------------------------


def _message(detail: str) -> str:
    return f"{_CONSTRAINT}'Lifecycle policy validation failure: {detail}'"


def _fail(detail: str) -> NoReturn:
    raise LifecyclePolicyError(_message(detail), detail)


def _json_list(values: Sequence[Any]) -> str:
    return json.dumps(list(values), separators=(",", ":"))


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _expect(value: Any, expected: str) -> None:
    actual = _json_type(value)
    if actual != expected:
        _fail(f'instance type ({actual}) does not match any allowed primitive type (allowed: ["{expected}"])')


def _check_keys(obj: dict[str, Any], required: Sequence[str], allowed: Sequence[str]) -> None:
    missing = sorted(key for key in required if key not in obj)
    if missing:
        _fail(f"object has missing required properties ({_json_list(missing)})")
    unknown = sorted(key for key in obj if key not in allowed)
    if unknown:
        _fail(f"object instance has properties which are not allowed by the schema: ({_json_list(unknown)})")


def _enum(value: Any, allowed: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        shown = json.dumps(value, separators=(",", ":"))
        _fail(f"instance value ({shown}) not found in enum (possible values: {_json_list(allowed)})")
    return value


def _positive_int(value: Any) -> int:
    _expect(value, "integer")
    if value < 1:
        _fail(f"numeric instance is lower than the required minimum (minimum: 1, found: {value})")
    return cast(int, value)


def _string_list(selection: dict[str, Any], key: str) -> tuple[str, ...] | None:
    if key not in selection:
        return None
    value = selection[key]
    _expect(value, "array")
    if not value:
        _fail("array is too short: must have at least 1 elements but instance has 0 elements")
    for item in value:
        _expect(item, "string")
    return tuple(value)


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")  # NaN / Infinity: Python's json accepts them, JSON does not


def _parse_rule(raw: Any) -> Rule:
    _expect(raw, "object")
    _check_keys(raw, _RULE_REQUIRED, _RULE_KEYS)
    priority = _positive_int(raw["rulePriority"])  # [M] min 1; [P] unique (checked across rules)
    description: str | None = None
    if "description" in raw:
        _expect(raw["description"], "string")
        description = raw["description"]

    selection = raw["selection"]
    _expect(selection, "object")
    _check_keys(selection, _SELECTION_REQUIRED, _SELECTION_KEYS)
    tag_status = _enum(selection["tagStatus"], _TAG_STATUSES)
    count_type = _enum(selection["countType"], _COUNT_TYPES)
    count_number = _positive_int(selection["countNumber"])  # [P] "0 is not an accepted value"
    if "storageClass" in selection and _enum(selection["storageClass"], _STORAGE_CLASSES) != "standard":
        _fail("storageClass archive is not supported by this registry; the supported value is standard")
    if count_type == "sinceImageTransitioned":
        _fail("countType sinceImageTransitioned needs the archive storage class, which this registry does "
              "not support")
    count_unit: str | None = None
    if "countUnit" in selection:
        count_unit = _enum(selection["countUnit"], ("days",))
    # [P] countUnit: required for the age-based count types; "an error will occur if you specify a count
    # unit when countType is any other value".
    if count_type in _AGE_COUNT_TYPES and count_unit is None:
        _fail(f"countUnit is required when countType is {count_type}")
    if count_type == "imageCountMoreThan" and count_unit is not None:
        _fail("countUnit must not be specified when countType is imageCountMoreThan")

    prefixes = _string_list(selection, "tagPrefixList")
    patterns = _string_list(selection, "tagPatternList")
    if prefixes is not None and patterns is not None:  # [H]
        _fail("A lifecycle policy rule may specify either tagPatternList or tagPrefixList, but not both")
    if tag_status != "tagged" and (prefixes is not None or patterns is not None):  # [P], [H]
        _fail(f"tagPatternList and tagPrefixList may only be used if tagStatus is tagged (tagStatus is "
              f"{tag_status})")
    if tag_status == "tagged" and prefixes is None and patterns is None:  # [P]
        _fail("Must specify tagPrefixList or tagPatternList when tagStatus=TAGGED")
    for pattern in patterns or ():
        wildcards = pattern.count("*")
        if wildcards > MAX_PATTERN_WILDCARDS:
            _fail(f"tagPatternList value {json.dumps(pattern)} has {wildcards} wildcards; there is a maximum "
                  f"limit of {MAX_PATTERN_WILDCARDS} wildcards (*) per string")

    action = raw["action"]
    _expect(action, "object")
    _check_keys(action, ("type",), _ACTION_KEYS)
    if _enum(action["type"], _ACTION_TYPES) != "expire":
        _fail("action type transition (archive storage) is not supported by this registry; the supported "
              "value is expire")
    if "targetStorageClass" in action:
        _fail("targetStorageClass may only be specified when the action type is transition")

    return Rule(priority=priority, description=description, tag_status=cast(TagStatus, tag_status),
                tag_prefixes=prefixes or (), tag_patterns=patterns or (),
                count_type=cast(CountType, count_type), count_unit=cast("CountUnit | None", count_unit),
                count_number=count_number, action="expire")


def _check_rule_set(rules: Sequence[Rule]) -> None:
    """Constraints between rules, checked in document order."""
    seen: set[int] = set()
    for rule in rules:  # [P] "you must give them each a unique value for rulePriority"
        if rule.priority in seen:
            _fail(f"rulePriority must be unique across rules; {rule.priority} is used by more than one rule")
        seen.add(rule.priority)
    if sum(rule.tag_status == "untagged" for rule in rules) > 1:  # [H]
        _fail("Only one rule can select Untagged images per storage class")
    highest = max(rule.priority for rule in rules)
    for rule in rules:  # [P] "A rule with a tagStatus value of any must have the highest value for rulePriority"
        if rule.tag_status == "any" and rule.priority != highest:
            _fail(f"Rule for tagStatus=ANY must have the lowest priority per storage class: its rulePriority "
                  f"({rule.priority}) must be the highest in the policy ({highest})")
    prefix_sets: set[frozenset[str]] = set()
    for rule in rules:  # [H] "The set of all rules ... must contain a unique set of prefixes."
        if rule.tag_prefixes:
            key = frozenset(rule.tag_prefixes)
            if key in prefix_sets:
                _fail(f"The set of rules must contain a unique set of tag prefixes; tagPrefixList "
                      f"{_json_list(sorted(key))} is used by more than one rule")
            prefix_sets.add(key)


def parse_lifecycle_policy(text: str) -> LifecyclePolicy:
    """Parse and validate lifecycle policy text ({"rules": [...]}); raise LifecyclePolicyError if invalid."""
    if len(text) > MAX_POLICY_CHARS:
        raise LifecyclePolicyError(
            f"{_CONSTRAINT}'Member must have length less than or equal to {MAX_POLICY_CHARS}'",
            f"Member must have length less than or equal to {MAX_POLICY_CHARS}")
    try:
        doc = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        _fail(_UNMAPPABLE)
    if not isinstance(doc, dict):
        _fail(_UNMAPPABLE)
    _check_keys(doc, ("rules",), ("rules",))
    raw_rules = doc["rules"]
    _expect(raw_rules, "array")
    if not raw_rules:  # [H] "A lifecycle policy contains one or more rules"
        _fail("array is too short: must have at least 1 elements but instance has 0 elements")
    rules = [_parse_rule(raw) for raw in raw_rules]
    _check_rule_set(rules)
    return LifecyclePolicy(tuple(sorted(rules, key=lambda rule: rule.priority)))


# -- evaluation ---------------------------------------------------------------------------------------
#
# Which images a rule counts, and which it may expire. [H] "Lifecycle policy evaluation rules":
#   "All rules are evaluated at the same time, regardless of rule priority. After all rules are
#    evaluated, they are then applied based on rule priority."
#   "An image is expired or archived by exactly one or zero rules."
#   "An image that matches the tagging requirements of a rule cannot be expired or archived by a rule
#    with a lower priority."
#   "Rules can never mark images that are marked by higher priority rules, but can still identify them
#    as if they haven't been expired or archived."
# So each rule first marks images on its own, counting EVERY image its tag filter matches -- including
# images that a higher-priority rule keeps and images it expires -- and only then is the result
# filtered: an image can be expired only by the first rule (in priority order) whose tag filter matches
# it. The worked examples in [E] confirm this reading, and contradict "an image leaves later rules only
# once a rule expires it, and later counts skip claimed images":
#   "Filtering on multiple rules", Example A: A [beta-1, prod-1] 10 days, B [beta-2, prod-2] 9 days,
#     C [beta-3] 8 days; rule 1 prod* keeps 1, rule 2 beta* keeps 1. Rule 2 counts A, B and C and marks
#     A and B, but "if Image B were expired it would violate Rule 1 and thus is skipped". Result: A only.
#   "Filtering on all images", Example B: rule 3 (any, keep 1) "identifies images A, B, C, D, and E ...
#     However, it can't mark images A, B, C, or E because they were identified by higher priority rules.
#     It marks image D for expiration." -- D is expired although it is the only image left to rule 3,
#     so the images identified by rules 1 and 2 still counted toward rule 3's countNumber.
# Age: [H] "all images whose pushed_at_time is older than the specified number of days" (sinceImagePushed);
# for sinceImagePulled the last recorded pull time, or pushed_at_time for an image never pulled. A day is
# 24 hours and "older than" is strict: an image exactly N days old is kept.
# Order: [H] "images are sorted from youngest to oldest based on pushed_at_time and then all images greater
# than the specified count are expired". Equal push times are ordered by digest (the larger digest counts as
# the younger), so the result never depends on the order the images were passed in.


def _newest_first(images: Sequence[ImageFacts]) -> list[ImageFacts]:
    return sorted(images, key=lambda image: (image.pushed_at, image.digest), reverse=True)


def _older_than_days(age: timedelta, days: int) -> bool:
    # Compared field by field: timedelta(days=days) overflows for very large countNumber values.
    return (age.days, age.seconds, age.microseconds) > (days, 0, 0)


def _marked(rule: Rule, matching: Sequence[ImageFacts], now: datetime) -> list[ImageFacts]:
    """The images a rule marks on its own, from all the images its tag filter matches."""
    if rule.count_type == "imageCountMoreThan":
        return _newest_first(matching)[rule.count_number:]
    if rule.count_type == "sinceImagePushed":
        return [image for image in matching if _older_than_days(now - image.pushed_at, rule.count_number)]
    return [image for image in matching
            if _older_than_days(now - (image.last_pulled_at or image.pushed_at), rule.count_number)]


def select_expired(policy: LifecyclePolicy, images: Sequence[ImageFacts], now: datetime) -> list[Expiry]:
    """The images the policy expires at ``now``, each with the priority of the rule that expires it.

    Ordered by rule priority, then oldest first (push time, then digest). Digests must be unique, and all
    datetimes alike timezone-aware (or alike naive).
    """
    if len({image.digest for image in images}) != len(images):
        raise ValueError("select_expired: image digests must be unique")
    rules = sorted(policy.rules, key=lambda rule: rule.priority)  # parse_lifecycle_policy already sorts them
    owner: dict[str, int] = {}  # digest -> priority of the first rule whose tag filter matches the image
    for image in images:
        for rule in rules:
            if rule.matches(image.tags):
                owner[image.digest] = rule.priority
                break
    expired: list[Expiry] = []
    for rule in rules:
        matching = [image for image in images if rule.matches(image.tags)]
        for image in _marked(rule, matching, now):
            if owner[image.digest] == rule.priority:
                expired.append(Expiry(image.digest, image.tags, image.pushed_at, rule.priority))
    expired.sort(key=lambda e: (e.rule_priority, e.pushed_at, e.digest))
    return expired


__all__ = ["MAX_PATTERN_WILDCARDS", "MAX_POLICY_CHARS", "ActionType", "CountType", "CountUnit", "Expiry",
           "ImageFacts", "LifecyclePolicy", "LifecyclePolicyError", "Rule", "TagStatus", "parse_lifecycle_policy",
           "pattern_matches", "select_expired"]
