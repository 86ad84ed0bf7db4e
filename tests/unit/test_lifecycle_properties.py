"""Property tests for lifecycle policies: random valid policies x random repository histories.

The main property compares select_expired with a literal reading of ECR's "Lifecycle policy evaluation
rules" written independently here: every rule marks images on its own first, then the marks are applied
in priority order, skipping images already expired and images that meet the tagging requirements of a
higher-priority rule. Tag matching in the reference uses regular expressions, not the module's matcher.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import re
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from cargohold.domain.lifecycle import (
    ImageFacts,
    LifecyclePolicyError,
    Rule,
    parse_lifecycle_policy,
    pattern_matches,
    select_expired,
)

NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)
COUNT, PUSHED, PULLED = "imageCountMoreThan", "sinceImagePushed", "sinceImagePulled"

TAG_POOL = ["a", "ab", "abc", "b", "ba", "prod", "prod-1", "prod-2", "v1.2", "v2-rc", "x", "latest", "a*b"]
PREFIX_POOL = ["a", "ab", "b", "p", "prod", "prod-", "v", "v1", "x", "l", "z"]
PATTERN_POOL = ["*", "a*", "*b", "a*b", "p*-*", "v*.*", "*rc*", "latest", "*a*b*", "x*", "prod-?", "*-*-*"]

# -- strategies ---------------------------------------------------------------------------------------

patterns = st.one_of(st.sampled_from(PATTERN_POOL),
                     st.text(alphabet="ab*-", max_size=7).filter(lambda p: p.count("*") <= 4))


_image_facts = st.tuples(
    st.lists(st.sampled_from(TAG_POOL), max_size=3, unique=True),
    st.integers(-1, 40),  # push day; few distinct push times, so ties in push time are common
    st.sampled_from([0, 1, 43_200]),  # and seconds into it
    st.none() | st.integers(0, 40),  # last pull day
)


@st.composite
def histories(draw: st.DrawFn, max_size: int = 10) -> list[ImageFacts]:
    facts = draw(st.lists(_image_facts, max_size=max_size))
    salt = draw(st.integers(0, 1000))  # digests, and so tie-breaks, in no particular order
    return [ImageFacts("sha256:" + hashlib.sha256(f"{salt}/{index}".encode()).hexdigest(), tuple(tags),
                       NOW - timedelta(days=day, seconds=seconds),
                       None if pull_day is None else NOW - timedelta(days=pull_day, hours=1))
            for index, (tags, day, seconds, pull_day) in enumerate(facts)]


@st.composite
def rule_docs(draw: st.DrawFn) -> dict[str, Any]:
    status = draw(st.sampled_from(["tagged", "untagged", "any"]))
    count_type = draw(st.sampled_from([COUNT, PUSHED, PULLED]))
    selection: dict[str, Any] = {"tagStatus": status, "countType": count_type,
                                 "countNumber": draw(st.integers(1, 8) if count_type == COUNT else st.integers(1, 40))}
    if count_type != COUNT:
        selection["countUnit"] = "days"
    if status == "tagged":
        if draw(st.booleans()):
            selection["tagPrefixList"] = draw(st.lists(st.sampled_from(PREFIX_POOL), min_size=1, max_size=3))
        else:
            selection["tagPatternList"] = draw(st.lists(patterns, min_size=1, max_size=3))
    doc: dict[str, Any] = {"rulePriority": 0, "selection": selection, "action": {"type": "expire"}}
    if draw(st.booleans()):
        doc["description"] = draw(st.text(max_size=10))
    return doc


@st.composite
def policies(draw: st.DrawFn, max_rules: int = 5) -> list[dict[str, Any]]:
    """Rule documents for a valid policy, in a random document order."""
    docs = draw(st.lists(rule_docs(), min_size=1, max_size=max_rules))
    kept: list[dict[str, Any]] = []
    seen_untagged = seen_any = False
    prefix_sets: set[frozenset[str]] = set()
    for doc in docs:  # repair into a valid policy: one untagged rule, one any rule, unique prefix sets
        selection = doc["selection"]
        if selection["tagStatus"] == "untagged":
            if seen_untagged:
                continue
            seen_untagged = True
        if selection["tagStatus"] == "any":
            if seen_any:
                continue
            seen_any = True
        if "tagPrefixList" in selection:
            key = frozenset(selection["tagPrefixList"])
            if key in prefix_sets:
                continue
            prefix_sets.add(key)
        kept.append(doc)
    priorities = sorted(draw(st.lists(st.integers(1, 500), min_size=len(kept), max_size=len(kept), unique=True)))
    # The any rule (if there is one) takes the highest priority value; the others take the rest in draw order.
    kept.sort(key=lambda d: d["selection"]["tagStatus"] == "any")
    for doc, priority in zip(kept, priorities, strict=True):
        doc["rulePriority"] = priority
    order = draw(st.permutations(kept))
    return list(order)


def text_of(docs: list[dict[str, Any]]) -> str:
    return json.dumps({"rules": docs})


# -- reference model ----------------------------------------------------------------------------------


def ref_matches(doc: dict[str, Any], tags: tuple[str, ...]) -> bool:
    selection = doc["selection"]
    status = selection["tagStatus"]
    if status == "any":
        return True
    if status == "untagged":
        return len(tags) == 0
    if "tagPrefixList" in selection:
        return all(any(t[:len(p)] == p for t in tags) for p in selection["tagPrefixList"])
    regexes = [re.compile(".*".join(re.escape(part) for part in p.split("*")), re.DOTALL)
               for p in selection["tagPatternList"]]
    return all(any(rx.fullmatch(t) for t in tags) for rx in regexes)


def ref_select(docs: list[dict[str, Any]], images: list[ImageFacts], now: datetime) -> list[tuple[str, int]]:
    rules = sorted(docs, key=lambda d: d["rulePriority"])
    marks: list[list[ImageFacts]] = []
    for doc in rules:  # "All rules are evaluated at the same time, regardless of rule priority."
        selection = doc["selection"]
        matching = [i for i in images if ref_matches(doc, i.tags)]
        n = selection["countNumber"]
        if selection["countType"] == COUNT:
            youngest_first = sorted(matching, key=lambda i: (i.pushed_at, i.digest), reverse=True)
            marks.append(youngest_first[n:])
        elif selection["countType"] == PUSHED:
            marks.append([i for i in matching if now - i.pushed_at > timedelta(days=n)])
        else:
            marks.append([i for i in matching if now - (i.last_pulled_at or i.pushed_at) > timedelta(days=n)])
    expired: dict[str, tuple[datetime, int]] = {}
    for index, doc in enumerate(rules):  # "... they are then applied based on rule priority."
        for image in marks[index]:
            if image.digest in expired:  # "An image is expired ... by exactly one or zero rules."
                continue
            if any(ref_matches(higher, image.tags) for higher in rules[:index]):
                continue  # "An image that matches the tagging requirements of a rule cannot be expired ... by a
                # rule with a lower priority."
            expired[image.digest] = (image.pushed_at, doc["rulePriority"])
    ordered = sorted(expired.items(), key=lambda kv: (kv[1][1], kv[1][0], kv[0]))
    return [(digest, priority) for digest, (_, priority) in ordered]


def pairs(policy_text: str, images: list[ImageFacts], now: datetime = NOW) -> list[tuple[str, int]]:
    return [(e.digest, e.rule_priority) for e in select_expired(parse_lifecycle_policy(policy_text), images, now)]


# -- properties ---------------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None)
@given(policies(), histories())
def test_agrees_with_literal_reading_of_the_evaluation_rules(docs: list[dict[str, Any]],
                                                             images: list[ImageFacts]) -> None:
    assert pairs(text_of(docs), images) == ref_select(docs, images, NOW)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), histories(max_size=12))
def test_one_any_count_rule_keeps_exactly_the_newest(n: int, images: list[ImageFacts]) -> None:
    policy_text = text_of([{"rulePriority": 1, "selection": {"tagStatus": "any", "countType": COUNT, "countNumber": n},
                            "action": {"type": "expire"}}])
    expired = {digest for digest, _ in pairs(policy_text, images)}
    survivors = [i for i in images if i.digest not in expired]
    assert len(survivors) == min(n, len(images))
    newest = sorted(images, key=lambda i: (i.pushed_at, i.digest), reverse=True)[:n]
    assert {i.digest for i in survivors} == {i.digest for i in newest}


@settings(max_examples=60, deadline=None)
@given(policies(), histories())
def test_each_image_expires_once_by_the_first_rule_matching_it(docs: list[dict[str, Any]],
                                                               images: list[ImageFacts]) -> None:
    policy = parse_lifecycle_policy(text_of(docs))
    expired = select_expired(policy, images, NOW)
    digests = [e.digest for e in expired]
    assert len(digests) == len(set(digests))  # the sets expired by different rules never overlap
    by_digest = {i.digest: i for i in images}
    for expiry in expired:
        image = by_digest[expiry.digest]
        assert (expiry.tags, expiry.pushed_at) == (image.tags, image.pushed_at)
        first = next(rule for rule in policy.rules if rule.matches(image.tags))
        assert expiry.rule_priority == first.priority
    keys = [(e.rule_priority, e.pushed_at, e.digest) for e in expired]
    assert keys == sorted(keys)


@settings(max_examples=60, deadline=None)
@given(policies(), histories(), st.randoms(use_true_random=False))
def test_result_does_not_depend_on_image_order(docs: list[dict[str, Any]], images: list[ImageFacts],
                                               rnd: random.Random) -> None:
    shuffled = list(images)
    rnd.shuffle(shuffled)
    assert pairs(text_of(docs), shuffled) == pairs(text_of(docs), images)


@settings(max_examples=60, deadline=None)
@given(policies(max_rules=4), histories(), st.integers(1, 30), st.integers(1, 60))
def test_adding_a_last_rule_never_spares_an_image(docs: list[dict[str, Any]], images: list[ImageFacts],
                                                 days: int, extra: int) -> None:
    if any(d["selection"]["tagStatus"] == "any" for d in docs):
        return  # nothing may follow an any rule
    last = max(d["rulePriority"] for d in docs) + extra
    more = [*docs, {"rulePriority": last, "selection": {"tagStatus": "any", "countType": PUSHED,
                                                        "countUnit": "days", "countNumber": days},
                    "action": {"type": "expire"}}]
    before = set(pairs(text_of(docs), images))
    after = set(pairs(text_of(more), images))
    assert before <= after
    assert all(priority == last for _, priority in after - before)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([PUSHED, PULLED]), st.integers(1, 30), histories(), st.integers(0, 10**7))
def test_age_rules_only_ever_expire_more_as_time_passes(count_type: str, days: int, images: list[ImageFacts],
                                                        later: int) -> None:
    policy_text = text_of([{"rulePriority": 1, "selection": {"tagStatus": "any", "countType": count_type,
                                                             "countUnit": "days", "countNumber": days},
                            "action": {"type": "expire"}}])
    assert set(pairs(policy_text, images)) <= set(pairs(policy_text, images, NOW + timedelta(seconds=later)))


@given(policies())
def test_valid_policies_round_trip(docs: list[dict[str, Any]]) -> None:
    policy = parse_lifecycle_policy(text_of(docs))
    expected = []
    for doc in sorted(docs, key=lambda d: d["rulePriority"]):
        s = doc["selection"]
        expected.append(Rule(priority=doc["rulePriority"], description=doc.get("description"),
                             tag_status=s["tagStatus"], tag_prefixes=tuple(s.get("tagPrefixList", ())),
                             tag_patterns=tuple(s.get("tagPatternList", ())), count_type=s["countType"],
                             count_unit=s.get("countUnit"), count_number=s["countNumber"], action="expire"))
    assert list(policy.rules) == expected


@settings(max_examples=200)
@given(st.text(alphabet="ab*.", max_size=8).filter(lambda p: p.count("*") <= 6), st.text(alphabet="ab.", max_size=10))
def test_pattern_matches_agrees_with_a_regex(pattern: str, tag: str) -> None:
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    assert pattern_matches(pattern, tag) is (re.fullmatch(regex, tag, re.DOTALL) is not None)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 10**20) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=6) | st.sampled_from(["tagged", "untagged", "any", "expire", "days", COUNT, PUSHED, PULLED]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.sampled_from(["rules", "rulePriority", "selection", "action", "type", "tagStatus", "countType",
                         "countNumber", "countUnit", "tagPrefixList", "tagPatternList", "x"]), children, max_size=4),
    max_leaves=10)


@settings(max_examples=100, deadline=None)
@given(policies(max_rules=3), st.data())
def test_mutated_policies_fail_only_with_lifecycle_policy_error(docs: list[dict[str, Any]],
                                                                data: st.DataObject) -> None:
    top: dict[str, Any] = {"rules": docs}
    rule = data.draw(st.sampled_from(docs))
    target = data.draw(st.sampled_from([top, rule, rule["selection"], rule["action"]]))
    key = data.draw(st.sampled_from([*target.keys(), "extra"]))
    if data.draw(st.booleans()):
        target.pop(key, None)
    else:
        target[key] = data.draw(json_values)
    try:
        parse_lifecycle_policy(json.dumps(top))
    except LifecyclePolicyError as err:
        assert str(err).startswith("Invalid parameter at 'LifecyclePolicyText' failed to satisfy constraint: '")


@given(st.text(max_size=60) | json_values.map(json.dumps))
def test_arbitrary_text_fails_only_with_lifecycle_policy_error(policy_text: str) -> None:
    with contextlib.suppress(LifecyclePolicyError):
        parse_lifecycle_policy(policy_text)
