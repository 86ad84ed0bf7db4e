"""Which images a lifecycle policy expires: AWS's documented examples, then a table of rule sets x histories.

Every expected result below was worked out by hand from the documented semantics (see the comment block
above select_expired in cargohold.domain.lifecycle), not copied from the implementation's output.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from string import Template
from typing import Any

import pytest

from cargohold.domain.lifecycle import Expiry, ImageFacts, LifecyclePolicy, parse_lifecycle_policy, select_expired

NOW = datetime(2024, 6, 1, 12, 0, 0, tzinfo=UTC)
DAY = timedelta(days=1)


_NAMES: dict[str, str] = {}


def digest(name: str) -> str:
    """A digest that sorts like the name, so tie-break expectations can be read off the names."""
    value = "sha256:" + name.encode().hex().ljust(64, "0")
    _NAMES[value] = name
    return value


def img(name: str, tags: Sequence[str] = (), pushed: float = 0, pulled: float | None = None) -> ImageFacts:
    """An image pushed `pushed` days before NOW and last pulled `pulled` days before NOW (None: never)."""
    return ImageFacts(digest(name), tuple(tags), NOW - pushed * DAY, None if pulled is None else NOW - pulled * DAY)


def named(expired: Sequence[Expiry]) -> list[tuple[str, int]]:
    return [(_NAMES[e.digest], e.rule_priority) for e in expired]


def run(policy_text: str, images: Sequence[ImageFacts], now: datetime = NOW) -> list[tuple[str, int]]:
    return named(select_expired(parse_lifecycle_policy(policy_text), images, now))


# -- AWS's documented examples, policy text verbatim ---------------------------------------------------
# [E] = "Examples of lifecycle policies in Amazon ECR" (lifecycle_policy_examples.html). The current page
# uses tagPatternList; the earlier edition of the same page (awsdocs/amazon-ecr-user-guide on GitHub,
# doc_source/lifecycle_policy_examples.md) had the same examples with tagPrefixList. Both are reproduced.

FILTERING_ON_IMAGE_AGE = """{
    "rules": [
        {
            "rulePriority": 1,
            "description": "Expire images older than 14 days",
            "selection": {
                "tagStatus": "tagged",
                "tagPatternList": ["prod*"],
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": 14
            },
            "action": {
                "type": "expire"
            }
        }
    ]
}"""

FILTERING_ON_IMAGE_AGE_EARLIER_EDITION = """{
    "rules": [
        {
            "rulePriority": 1,
            "description": "Expire images older than 14 days",
            "selection": {
                "tagStatus": "untagged",
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": 14
            },
            "action": {
                "type": "expire"
            }
        }
    ]
}"""

FILTERING_ON_IMAGE_COUNT = """{
    "rules": [
        {
            "rulePriority": 1,
            "description": "Keep only one untagged image, expire all others",
            "selection": {
                "tagStatus": "untagged",
                "countType": "imageCountMoreThan",
                "countNumber": 1
            },
            "action": {
                "type": "expire"
            }
        }
    ]
}"""


def _two_rules(first: str, second: str, key: str = "tagPatternList") -> str:
    return Template("""{
    "rules": [
        {
            "rulePriority": 1,
            "description": "Rule 1",
            "selection": {
                "tagStatus": "tagged",
                "$key": ["$first"],
                "countType": "imageCountMoreThan",
                "countNumber": 1
            },
            "action": {
                "type": "expire"
            }
        },
        {
            "rulePriority": 2,
            "description": "Rule 2",
            "selection": {
                "tagStatus": "tagged",
                "$key": ["$second"],
                "countType": "imageCountMoreThan",
                "countNumber": 1
            },
            "action": {
                "type": "expire"
            }
        }
    ]
}""").substitute(key=key, first=first, second=second)


MULTIPLE_RULES_REPOSITORY = [
    img("A", ["beta-1", "prod-1"], 10),
    img("B", ["beta-2", "prod-2"], 9),
    img("C", ["beta-3"], 8),
]

MULTIPLE_TAGS_A_REPOSITORY = [
    img("A", ["alpha-1"], 12),
    img("B", ["beta-1"], 11),
    img("C", ["alpha-2", "beta-2"], 10),
    img("D", ["alpha-3"], 4),
    img("E", ["beta-3"], 3),
    img("F", ["alpha-4", "beta-4"], 2),
]

MULTIPLE_TAGS_B_REPOSITORY = [
    img("A", ["alpha-1", "beta-1", "gamma-1"], 10),
    img("B", ["alpha-2", "beta-2"], 9),
    img("C", ["alpha-3", "beta-3", "gamma-2"], 8),
]


def _multiple_tags(key: str, values: str, count_type: str, number: int) -> str:
    unit = ',\n                "countUnit": "days"' if count_type == "sinceImagePushed" else ""
    return Template("""{
    "rules": [
        {
            "rulePriority": 1,
            "description": "Rule 1",
            "selection": {
                "tagStatus": "tagged",
                "$key": [$values],
                "countType": "$count_type",
                "countNumber": $number$unit
            },
            "action": {
                "type": "expire"
            }
        }
    ]
}""").substitute(key=key, values=values, count_type=count_type, number=number, unit=unit)


ALL_IMAGES_A = """{
    "rules": [
        {
            "rulePriority": 1,
            "description": "Rule 1",
            "selection": {
                "tagStatus": "any",
                "countType": "imageCountMoreThan",
                "countNumber": 1
            },
            "action": {
                "type": "expire"
            }
        }
    ]
}"""

ALL_IMAGES_B_TEMPLATE = Template("""{
    "rules": [
        {
            "rulePriority": 1,
            "description": "Rule 1",
            "selection": {
                "tagStatus": "tagged",
                "$key": ["$value"],
                "countType": "imageCountMoreThan",
                "countNumber": 1
            },
            "action": {
                "type": "expire"
            }
        },
        {
            "rulePriority": 2,
            "description": "Rule 2",
            "selection": {
                "tagStatus": "untagged",
                "countType": "sinceImagePushed",
                "countUnit": "days",
                "countNumber": 1
            },
            "action": {
                "type": "expire"
            }
        },
        {
            "rulePriority": 3,
            "description": "Rule 3",
            "selection": {
                "tagStatus": "any",
                "countType": "imageCountMoreThan",
                "countNumber": 1
            },
            "action": {
                "type": "expire"
            }
        }
    ]
}""")

ALL_IMAGES_A_REPOSITORY = [
    img("A", ["alpha-1"], 4),
    img("B", ["beta-1"], 3),
    img("C", [], 2),
    img("D", ["alpha-2"], 1),
]

# D and E are both "Pushed: 1 day ago". The documented result (D expired, E kept by rule 3) needs E to
# count as the younger of the two; with equal push times the larger digest counts as younger, and E's
# digest is larger than D's.
ALL_IMAGES_B_REPOSITORY = [
    img("A", ["alpha-1", "beta-1"], 4),
    img("B", [], 3),
    img("C", ["alpha-2"], 2),
    img("D", ["git hash"], 1),
    img("E", [], 1),
]


def test_documented_filtering_on_image_age() -> None:
    # [E] "Filtering on image age": the policy is verbatim; the page gives no repository, so this one
    # probes it: prod-prefixed tags older than 14 days go, the 14-day-old one stays ("older than").
    images = [img("old-prod", ["prod"], 30), img("old-production", ["production-1"], 15),
              img("exactly-14", ["prod-2"], 14), img("young-prod", ["prod-3"], 2),
              img("old-dev", ["dev-1"], 40), img("old-untagged", [], 40)]
    assert run(FILTERING_ON_IMAGE_AGE, images) == [("old-prod", 1), ("old-production", 1)]


def test_documented_filtering_on_image_age_earlier_edition() -> None:
    # Earlier edition of [E]: "a policy that expires untagged images older than 14 days".
    images = [img("u-old", [], 15), img("u-14", [], 14), img("u-new", [], 1), img("t-old", ["v1"], 90)]
    assert run(FILTERING_ON_IMAGE_AGE_EARLIER_EDITION, images) == [("u-old", 1)]


def test_documented_filtering_on_image_count() -> None:
    # [E] "Filtering on image count": "keeps only one untagged image and expires all others".
    images = [img("u1", [], 5), img("u2", [], 4), img("u3", [], 3), img("t1", ["latest"], 9)]
    assert run(FILTERING_ON_IMAGE_COUNT, images) == [("u1", 1), ("u2", 1)]


@pytest.mark.parametrize("key", ["tagPatternList", "tagPrefixList"])
def test_documented_multiple_rules_example_a(key: str) -> None:
    # [E] "Filtering on multiple rules", Example A -- "Result: Image A is expired."
    first, second = ("prod*", "beta*") if key == "tagPatternList" else ("prod", "beta")
    assert run(_two_rules(first, second, key), MULTIPLE_RULES_REPOSITORY) == [("A", 1)]


@pytest.mark.parametrize("key", ["tagPatternList", "tagPrefixList"])
def test_documented_multiple_rules_example_b(key: str) -> None:
    # [E] "Filtering on multiple rules", Example B -- "Result: Images A and B are expired."
    first, second = ("beta*", "prod*") if key == "tagPatternList" else ("beta", "prod")
    assert run(_two_rules(first, second, key), MULTIPLE_RULES_REPOSITORY) == [("A", 1), ("B", 1)]


@pytest.mark.parametrize(("key", "values"), [("tagPatternList", '"alpha*", "beta*"'),
                                             ("tagPrefixList", '"alpha", "beta"')])
def test_documented_multiple_tags_example_a(key: str, values: str) -> None:
    # [E] "Filtering on multiple tags in a single rule", Example A -- "Result: Image C is expired."
    policy = _multiple_tags(key, values, "sinceImagePushed", 5)
    assert run(policy, MULTIPLE_TAGS_A_REPOSITORY) == [("C", 1)]


@pytest.mark.parametrize(("key", "values"), [("tagPatternList", '"alpha*", "beta*"'),
                                             ("tagPrefixList", '"alpha", "beta"')])
def test_documented_multiple_tags_example_b(key: str, values: str) -> None:
    # [E] "Filtering on multiple tags in a single rule", Example B -- "Result: Images A and B are expired."
    policy = _multiple_tags(key, values, "imageCountMoreThan", 1)
    assert run(policy, MULTIPLE_TAGS_B_REPOSITORY) == [("A", 1), ("B", 1)]


def test_documented_all_images_example_a() -> None:
    # [E] "Filtering on all images", Example A -- "Result: Images A, B, and C are expired."
    assert run(ALL_IMAGES_A, ALL_IMAGES_A_REPOSITORY) == [("A", 1), ("B", 1), ("C", 1)]


@pytest.mark.parametrize(("key", "value"), [("tagPatternList", "alpha*"), ("tagPrefixList", "alpha")])
def test_documented_all_images_example_b(key: str, value: str) -> None:
    # [E] "Filtering on all images", Example B -- "Result: Images A, B, and D are expired."
    policy = ALL_IMAGES_B_TEMPLATE.substitute(key=key, value=value)
    assert run(policy, ALL_IMAGES_B_REPOSITORY) == [("A", 1), ("B", 2), ("D", 3)]


def test_documented_examples_do_not_depend_on_input_order() -> None:
    for policy, images, expected in [
        (_two_rules("prod*", "beta*"), MULTIPLE_RULES_REPOSITORY, [("A", 1)]),
        (ALL_IMAGES_B_TEMPLATE.substitute(key="tagPatternList", value="alpha*"), ALL_IMAGES_B_REPOSITORY,
         [("A", 1), ("B", 2), ("D", 3)]),
    ]:
        assert run(policy, list(reversed(images))) == expected


# -- the table -----------------------------------------------------------------------------------------


def r(priority: int, status: str, count_type: str, number: int, *, prefixes: Sequence[str] | None = None,
      patterns: Sequence[str] | None = None) -> dict[str, Any]:
    selection: dict[str, Any] = {"tagStatus": status, "countType": count_type, "countNumber": number}
    if count_type != "imageCountMoreThan":
        selection["countUnit"] = "days"
    if prefixes is not None:
        selection["tagPrefixList"] = list(prefixes)
    if patterns is not None:
        selection["tagPatternList"] = list(patterns)
    return {"rulePriority": priority, "selection": selection, "action": {"type": "expire"}}


COUNT, PUSHED, PULLED = "imageCountMoreThan", "sinceImagePushed", "sinceImagePulled"

# One repository history shared by most rows; ages in days before NOW.
# Oldest to youngest: u1 40, v1 35, p1 30, v2 25, u2 20, p2 18, v3 12, d1 9, p3 6, d2 4, v4 3, u3 2.
REPO = [
    img("u1", [], 40),
    img("u2", [], 20),
    img("u3", [], 2),
    img("v1", ["v1.0.0"], 35, pulled=1),
    img("v2", ["v1.1.0", "latest-stable"], 25),
    img("v3", ["v2.0.0-rc1"], 12, pulled=11),
    img("v4", ["v2.0.0", "latest"], 3, pulled=0.5),
    img("p1", ["prod-2024-01", "sha-aaaa"], 30),
    img("p2", ["prod-2024-02", "sha-bbbb", "release"], 18, pulled=17.5),
    img("p3", ["prod-2024-03", "sha-cccc", "release"], 6),
    img("d1", ["dev-feature-x"], 9),
    img("d2", ["dev-feature-y", "sha-dddd"], 4),
]

TABLE: list[Any] = [
    # -- one rule: each count type, on every tag status
    pytest.param([r(1, "any", COUNT, 5)], REPO,
                 [("u1", 1), ("v1", 1), ("p1", 1), ("v2", 1), ("u2", 1), ("p2", 1), ("v3", 1)], id="any-count-5"),
    pytest.param([r(1, "any", COUNT, 12)], REPO, [], id="any-count-equal-to-size"),
    pytest.param([r(1, "any", COUNT, 1000)], REPO, [], id="any-count-above-size"),
    pytest.param([r(1, "any", PUSHED, 20)], REPO, [("u1", 1), ("v1", 1), ("p1", 1), ("v2", 1)],
                 id="any-pushed-20-days-u2-exactly-20-stays"),
    pytest.param([r(1, "any", PULLED, 10)], REPO,
                 [("u1", 1), ("p1", 1), ("v2", 1), ("u2", 1), ("p2", 1), ("v3", 1)],
                 id="any-pulled-10-days-never-pulled-uses-push-time"),
    pytest.param([r(1, "any", PULLED, 18)], REPO, [("u1", 1), ("p1", 1), ("v2", 1), ("u2", 1)],
                 id="any-pulled-18-days-p2-pulled-17.5-stays"),
    pytest.param([r(1, "untagged", COUNT, 1)], REPO, [("u1", 1), ("u2", 1)], id="untagged-count-1"),
    pytest.param([r(1, "untagged", PUSHED, 14)], REPO, [("u1", 1), ("u2", 1)], id="untagged-pushed-14"),
    pytest.param([r(1, "untagged", PUSHED, 30)], REPO, [("u1", 1)], id="untagged-pushed-30"),
    pytest.param([r(1, "untagged", PULLED, 30)], REPO, [("u1", 1)], id="untagged-pulled-30"),
    # -- tagPrefixList: starts-with, every entry matched by some tag (AND), case-sensitive
    pytest.param([r(1, "tagged", COUNT, 2, prefixes=["v"])], REPO, [("v1", 1), ("v2", 1)], id="prefix-v-count-2"),
    pytest.param([r(1, "tagged", PUSHED, 7, prefixes=["prod"])], REPO, [("p1", 1), ("p2", 1)],
                 id="prefix-prod-pushed-7"),
    pytest.param([r(1, "tagged", PULLED, 7, prefixes=["prod"])], REPO, [("p1", 1), ("p2", 1)],
                 id="prefix-prod-pulled-7"),
    pytest.param([r(1, "tagged", PULLED, 5, prefixes=["v"])], REPO, [("v2", 1), ("v3", 1)],
                 id="prefix-v-pulled-5-recent-pulls-protect-old-images"),
    pytest.param([r(1, "tagged", COUNT, 1, prefixes=["prod", "release"])], REPO, [("p2", 1)],
                 id="prefixes-and-p1-lacks-release"),
    pytest.param([r(1, "tagged", PUSHED, 1, prefixes=["sha-", "dev"])], REPO, [("d2", 1)],
                 id="prefixes-and-across-two-tags"),
    pytest.param([r(1, "tagged", COUNT, 1, prefixes=["pro", "prod-2024"])], REPO, [("p1", 1), ("p2", 1)],
                 id="prefixes-and-one-tag-satisfies-both"),
    pytest.param([r(1, "tagged", PUSHED, 1, prefixes=["V"])], REPO, [], id="prefix-case-sensitive"),
    pytest.param([r(1, "tagged", PUSHED, 1, prefixes=["sha-aaaa-longer"])], REPO, [], id="prefix-longer-than-tag"),
    pytest.param([r(1, "tagged", PUSHED, 1, prefixes=["v1.0.0"])], REPO, [("v1", 1)], id="prefix-whole-tag"),
    # -- tagPatternList: whole-tag wildcard match, every entry matched by some tag (AND)
    pytest.param([r(1, "tagged", COUNT, 2, patterns=["v*"])], REPO, [("v1", 1), ("v2", 1)], id="pattern-v-star"),
    pytest.param([r(1, "tagged", PUSHED, 1, patterns=["*-rc*"])], REPO, [("v3", 1)], id="pattern-infix"),
    pytest.param([r(1, "tagged", COUNT, 1, patterns=["v*.*.*"])], REPO, [("v1", 1), ("v2", 1), ("v3", 1)],
                 id="pattern-three-wildcards"),
    pytest.param([r(1, "tagged", PUSHED, 1, patterns=["v*.*.*-*"])], REPO, [("v3", 1)],
                 id="pattern-four-wildcards"),
    pytest.param([r(1, "tagged", PUSHED, 1, patterns=["*e*a*u*e-x"])], REPO, [("d1", 1)],
                 id="pattern-four-wildcards-scattered"),
    pytest.param([r(1, "tagged", PUSHED, 1, patterns=["latest"])], REPO, [("v4", 1)],
                 id="pattern-without-wildcard-is-exact"),
    pytest.param([r(1, "tagged", PUSHED, 1, patterns=["latest*"])], REPO, [("v2", 1), ("v4", 1)],
                 id="pattern-star-matches-empty"),
    pytest.param([r(1, "tagged", COUNT, 3, patterns=["*"])], REPO,
                 [("v1", 1), ("p1", 1), ("v2", 1), ("p2", 1), ("v3", 1), ("d1", 1)], id="pattern-star-all-tagged"),
    pytest.param([r(1, "tagged", PUSHED, 1, patterns=["prod-*", "*-bbbb"])], REPO, [("p2", 1)],
                 id="patterns-and"),
    pytest.param([r(1, "tagged", PUSHED, 1, patterns=["prod-*", "*-zzzz"])], REPO, [],
                 id="patterns-and-one-unmatched"),
    pytest.param([r(1, "tagged", PULLED, 10, patterns=["*2024*"])], REPO, [("p1", 1), ("p2", 1)],
                 id="pattern-pulled-10"),
    # -- several rules: priority order, images matched by earlier rules protected but still counted
    pytest.param([r(1, "tagged", COUNT, 5, prefixes=["prod"]), r(2, "any", COUNT, 4)], REPO,
                 [("u1", 2), ("v1", 2), ("v2", 2), ("u2", 2), ("v3", 2), ("d1", 2)],
                 id="kept-prod-images-still-count-toward-any-rule"),
    pytest.param([r(1, "untagged", PUSHED, 30), r(2, "any", COUNT, 2)], REPO,
                 [("u1", 1), ("v1", 2), ("p1", 2), ("v2", 2), ("p2", 2), ("v3", 2), ("d1", 2), ("p3", 2), ("d2", 2)],
                 id="young-untagged-protected-but-counted"),
    pytest.param([r(1, "tagged", COUNT, 1, prefixes=["v"]), r(2, "tagged", COUNT, 1, prefixes=["sha-"]),
                  r(3, "untagged", COUNT, 1), r(4, "any", PUSHED, 5)], REPO,
                 [("v1", 1), ("v2", 1), ("v3", 1), ("p1", 2), ("p2", 2), ("p3", 2), ("u1", 3), ("u2", 3), ("d1", 4)],
                 id="four-rules-each-image-owned-by-first-match"),
    pytest.param([r(1, "tagged", COUNT, 1, prefixes=["release"]), r(2, "tagged", COUNT, 1, prefixes=["prod"])],
                 REPO, [("p2", 1), ("p1", 2)], id="overlapping-prefixes-release-first"),
    pytest.param([r(1, "tagged", COUNT, 1, prefixes=["prod"]), r(2, "tagged", COUNT, 1, prefixes=["release"])],
                 REPO, [("p1", 1), ("p2", 1)], id="overlapping-prefixes-prod-first"),
    pytest.param([r(1, "tagged", PULLED, 10, prefixes=["v"]), r(2, "any", COUNT, 1)], REPO,
                 [("v2", 1), ("v3", 1), ("u1", 2), ("p1", 2), ("u2", 2), ("p2", 2), ("d1", 2), ("p3", 2), ("d2", 2)],
                 id="pulled-rule-then-any"),
    pytest.param([r(100, "any", COUNT, 10), r(7, "untagged", PUSHED, 10),
                  r(30, "tagged", COUNT, 1, patterns=["dev-*"])], REPO,
                 [("u1", 7), ("u2", 7), ("d1", 30), ("v1", 100)], id="non-sequential-priorities-out-of-order"),
    pytest.param([r(1, "tagged", COUNT, 1, prefixes=["nomatch"]), r(2, "any", PUSHED, 30)], REPO,
                 [("u1", 2), ("v1", 2)], id="rule-matching-nothing-then-any-p1-exactly-30"),
    pytest.param([r(1, "tagged", COUNT, 1, patterns=["*"]), r(2, "untagged", COUNT, 1)], REPO,
                 [("v1", 1), ("p1", 1), ("v2", 1), ("p2", 1), ("v3", 1), ("d1", 1), ("p3", 1), ("d2", 1),
                  ("u1", 2), ("u2", 2)], id="all-tagged-then-untagged"),
    pytest.param([r(1, "tagged", PUSHED, 1000, prefixes=["p"]), r(2, "tagged", COUNT, 1, prefixes=["sha"])], REPO,
                 [], id="lenient-first-rule-shields-prod-from-second"),
    # -- small histories: ties, boundaries, odd inputs
    pytest.param([r(1, "any", COUNT, 1)], [img("b", ["x"], 5), img("c", [], 5), img("a", ["y"], 5)],
                 [("a", 1), ("b", 1)], id="tie-in-push-time-larger-digest-is-younger"),
    pytest.param([r(1, "any", COUNT, 2)], [img("b", [], 5), img("c", [], 5), img("a", [], 5), img("z", [], 6)],
                 [("z", 1), ("a", 1)], id="tie-straddling-the-cut"),
    pytest.param([r(1, "any", PUSHED, 7)],
                 [img("exact", [], 7), img("over", [], 7 + 1e-6 / 86400 * 2), img("under", [], 7 - 1 / 86400)],
                 [("over", 1)], id="pushed-boundary-is-strict"),
    pytest.param([r(1, "any", PULLED, 7)],
                 [img("exact", [], 30, pulled=7), img("over", [], 30, pulled=7 + 1 / 86400),
                  img("never-exact", [], 7)], [("over", 1)], id="pulled-boundary-is-strict"),
    pytest.param([r(1, "any", PUSHED, 1)], [img("future", [], -3), img("old", [], 3)], [("old", 1)],
                 id="pushed-in-the-future-is-not-old"),
    pytest.param([r(1, "any", COUNT, 1)], [img("future", [], -3), img("old", [], 3)], [("old", 1)],
                 id="pushed-in-the-future-counts-as-youngest"),
    pytest.param([r(1, "any", PUSHED, 10**12)], [img("ancient", [], 365 * 2000)], [], id="huge-count-number"),
    pytest.param([r(1, "any", COUNT, 1)], [], [], id="empty-repository"),
    pytest.param([r(1, "any", COUNT, 1)], [img("only", ["x"], 400)], [], id="single-image-kept"),
    pytest.param([r(1, "tagged", COUNT, 1, patterns=["*"])], [img("u", [], 9), img("w", [], 8), img("t", ["x"], 1)],
                 [], id="tagged-rule-ignores-untagged"),
    pytest.param([r(1, "untagged", COUNT, 1)], [img("t1", ["a"], 9), img("t2", ["b"], 8), img("u", [], 1)],
                 [], id="untagged-rule-ignores-tagged"),
    pytest.param([r(1, "tagged", COUNT, 1, prefixes=["a", "b"]), r(2, "tagged", COUNT, 1, prefixes=["a"]),
                  r(3, "any", COUNT, 1)],
                 [img("ab1", ["a1", "b1"], 6), img("ab2", ["b2", "a2"], 5), img("a1", ["a3"], 4),
                  img("a2", ["a4"], 3), img("x", ["x"], 2)],
                 [("ab1", 1), ("a1", 2)], id="many-tags-first-matching-rule-owns-image"),
]


@pytest.mark.parametrize(("rules", "images", "expected"), TABLE)
def test_table(rules: list[dict[str, Any]], images: list[ImageFacts], expected: list[tuple[str, int]]) -> None:
    policy_text = json.dumps({"rules": rules})
    assert run(policy_text, images) == expected
    # The answer never depends on the order the images are given in.
    assert run(policy_text, list(reversed(images))) == expected


def test_expiry_carries_the_image_facts() -> None:
    images = [img("old", ["v1", "stable"], 10), img("new", ["v2"], 1)]
    (expiry,) = select_expired(parse_lifecycle_policy(json.dumps({"rules": [r(4, "any", COUNT, 1)]})), images, NOW)
    assert expiry == Expiry(digest("old"), ("v1", "stable"), NOW - 10 * DAY, 4)


def test_duplicate_digests_are_refused() -> None:
    policy = parse_lifecycle_policy(json.dumps({"rules": [r(1, "any", COUNT, 1)]}))
    with pytest.raises(ValueError, match="unique"):
        select_expired(policy, [img("a", [], 1), img("a", ["x"], 2)], NOW)



def test_rules_are_applied_in_priority_order_even_if_the_policy_was_built_unsorted() -> None:
    policy = parse_lifecycle_policy(json.dumps({"rules": [r(1, "tagged", COUNT, 1, prefixes=["prod"]),
                                                          r(2, "any", COUNT, 4)]}))
    unsorted = LifecyclePolicy(tuple(reversed(policy.rules)))
    assert select_expired(unsorted, REPO, NOW) == select_expired(policy, REPO, NOW)
