"""Lifecycle policies at the service level: real SQLite + filesystem stores in tmp_path, a fixed clock.

Image histories are pushed through the same services the HTTP faces use (uploads, manifests, pulls), with
the clock set back to each image's push (and pull) time. For every rule set the test checks that

  * the preview (StartLifecyclePolicyPreview's background evaluation) lists exactly the expected images,
    each with the rule priority that expires it, its tags and its push time;
  * a dry run lists the same images and deletes nothing;
  * a real run deletes exactly those images, leaves everything else (and other repositories) alone, and
    records one audit event per expired image.

Expected results are worked out by hand from ECR's documentation ("Lifecycle policy evaluation rules" and
"Examples of lifecycle policies in Amazon ECR"; the documented examples are the ones the domain tests in
tests/unit/test_lifecycle_select.py use, here pushed as real images). The run's guards are checked too: an
image pushed or re-tagged after the run began is kept, and an image an index references is kept while the
index exists.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import pytest

from cargohold.app import Services, build_services
from cargohold.config import Config
from cargohold.errors import Kind, RegistryError
from cargohold.services.identity import Principal, RequestContext, root_arn
from cargohold.services.lifecycle import LIFECYCLE_PRINCIPAL, Expired, Lifecycle
from cargohold.services.repositories import Caller
from cargohold.storage.meta.iam import AuditEvent, IamStore

pytestmark = pytest.mark.timeout(60)

ACCOUNT = "000000000000"
NOW = datetime.datetime(2024, 6, 1, 12, 0, 0, tzinfo=datetime.UTC).timestamp()
DAY = 86_400.0
HOUR = 3_600.0

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Clock:
    """A fixed clock, moved by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Img:
    name: str
    digest: str
    body: bytes
    media_type: str
    tags: tuple[str, ...]
    pushed_at: float
    children: list[str] = field(default_factory=list)


@dataclass
class Registry:
    services: Services
    clock: Clock
    caller: Caller
    images: dict[str, Img] = field(default_factory=dict)  # by name, across repositories

    @property
    def lifecycle(self) -> Lifecycle:
        return self.services.lifecycle

    def name_of(self, digest: str) -> str:
        return next(img.name for img in self.images.values() if img.digest == digest)

    # -- pushing, the way the HTTP faces do it -----------------------------------------------------

    def upload(self, repo: str, data: bytes) -> str:
        d = sha256(data)

        async def body() -> AsyncIterator[bytes]:
            yield data

        assert asyncio.run(self.services.uploads.monolithic(self.caller, repo, d, body())) == len(data)
        return d

    def put(self, repo: str, body: bytes, media_type: str, reference: str) -> str:
        return self.services.content.put_manifest(self.caller, repo, reference, body, media_type).digest

    def push(self, repo: str, name: str, tags: Sequence[str] = (), age_days: float = 0,
             pulled_days: float | None = None) -> Img:
        """An image pushed age_days before NOW (by its first tag, or by digest when untagged), with its
        other tags added at the same moment, and pulled pulled_days before NOW (None: never)."""
        self.clock.now = NOW - age_days * DAY
        config = json.dumps({"architecture": "amd64", "os": "linux", "nonce": uuid.uuid4().hex}).encode()
        layer = os.urandom(48)
        self.upload(repo, config)
        self.upload(repo, layer)
        body = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": sha256(layer), "size": len(layer)}],
        }).encode()
        digest = sha256(body)
        for reference in tags or [digest]:
            assert self.put(repo, body, OCI_MANIFEST, reference) == digest
        img = Img(name, digest, body, OCI_MANIFEST, tuple(sorted(tags)), self.clock.now)
        self.images[name] = img
        if pulled_days is not None:
            self.clock.now = NOW - pulled_days * DAY
            self.services.content.get_manifest(self.caller, repo, digest)
        self.clock.now = NOW
        return img

    def push_index(self, repo: str, name: str, children: Sequence[Img], tags: Sequence[str] = (),
                   age_days: float = 0) -> Img:
        self.clock.now = NOW - age_days * DAY
        body = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": c.media_type, "digest": c.digest, "size": len(c.body),
             "platform": {"architecture": f"arch{i}", "os": "linux"}} for i, c in enumerate(children)]}).encode()
        digest = sha256(body)
        for reference in tags or [digest]:
            assert self.put(repo, body, OCI_INDEX, reference) == digest
        img = Img(name, digest, body, OCI_INDEX, tuple(sorted(tags)), self.clock.now, [c.digest for c in children])
        self.images[name] = img
        self.clock.now = NOW
        return img

    # -- looking -----------------------------------------------------------------------------------

    def repo_id(self, repo: str) -> int:
        found = self.services.meta.get_repository(ACCOUNT, repo)
        assert found is not None
        return int(found.id)

    def present(self, repo: str) -> set[str]:
        rows = self.services.meta.list_manifests(self.repo_id(repo), None, 10_000)
        return {self.name_of(row.digest) for row in rows}

    def preview(self, repo: str, policy: str | None = None) -> list[dict[str, Any]]:
        """Start a preview and wait for the background evaluation to finish; its results."""
        self.lifecycle.start_preview(self.caller, repo, policy)
        deadline = time.monotonic() + 20
        while True:
            _, _, status, results = self.lifecycle.get_preview(self.caller, repo)
            if status != "IN_PROGRESS":
                break
            assert time.monotonic() < deadline, "the preview did not finish"
            time.sleep(0.01)
        assert status == "COMPLETE", status
        return results

    def lifecycle_events(self) -> list[AuditEvent]:
        return IamStore(self.services.meta).events(principal=LIFECYCLE_PRINCIPAL.format(account=ACCOUNT),
                                                   limit=10_000)


@pytest.fixture()
def reg(tmp_path: Path) -> Iterator[Registry]:
    clock = Clock(NOW)
    config = Config(data_dir=str(tmp_path / "data"), account_id=ACCOUNT, gc_interval=0, lifecycle_interval=0,
                    audit=False)
    services = build_services(config, clock=clock)
    principal = Principal(root_arn(ACCOUNT), ACCOUNT, "root", "root", ACCOUNT, "AKIATEST")
    try:
        yield Registry(services, clock, Caller(principal, RequestContext()))
    finally:
        services.meta.engine.dispose()


# -- policies --------------------------------------------------------------------------------------------

COUNT, PUSHED, PULLED = "imageCountMoreThan", "sinceImagePushed", "sinceImagePulled"


def rule(priority: int, status: str, count_type: str, number: int, *, prefixes: Sequence[str] | None = None,
         patterns: Sequence[str] | None = None) -> dict[str, Any]:
    selection: dict[str, Any] = {"tagStatus": status, "countType": count_type, "countNumber": number}
    if count_type != COUNT:
        selection["countUnit"] = "days"
    if prefixes is not None:
        selection["tagPrefixList"] = list(prefixes)
    if patterns is not None:
        selection["tagPatternList"] = list(patterns)
    return {"rulePriority": priority, "description": f"rule {priority}", "selection": selection,
            "action": {"type": "expire"}}


def policy(*rules: dict[str, Any]) -> str:
    return json.dumps({"rules": list(rules)}, indent=2)


# An image history: (name, tags, age in days, days since the last pull or None).
History = list[tuple[str, list[str], float, float | None]]

# [E] "Filtering on multiple rules": A [beta-1, prod-1] 10 days, B [beta-2, prod-2] 9 days, C [beta-3] 8 days.
MULTIPLE_RULES: History = [("A", ["beta-1", "prod-1"], 10, None), ("B", ["beta-2", "prod-2"], 9, None),
                           ("C", ["beta-3"], 8, None)]
# [E] "Filtering on multiple tags in a single rule", Example A.
MULTIPLE_TAGS_A: History = [("A", ["alpha-1"], 12, None), ("B", ["beta-1"], 11, None),
                            ("C", ["alpha-2", "beta-2"], 10, None), ("D", ["alpha-3"], 4, None),
                            ("E", ["beta-3"], 3, None), ("F", ["alpha-4", "beta-4"], 2, None)]
# [E] "Filtering on multiple tags in a single rule", Example B.
MULTIPLE_TAGS_B: History = [("A", ["alpha-1", "beta-1", "gamma-1"], 10, None), ("B", ["alpha-2", "beta-2"], 9, None),
                            ("C", ["alpha-3", "beta-3", "gamma-2"], 8, None)]
# [E] "Filtering on all images", Example A.
ALL_IMAGES_A: History = [("A", ["alpha-1"], 4, None), ("B", ["beta-1"], 3, None), ("C", [], 2, None),
                         ("D", ["alpha-2"], 1, None)]
# [E] "Filtering on all images", Example B. D and E are both "1 day ago" there and the documented result
# needs E to be the younger one; with real digests the tie-break is arbitrary, so E is pushed an hour later.
# D's tag is "git hash" in the documentation -- not a valid tag, so "githash".
ALL_IMAGES_B: History = [("A", ["alpha-1", "beta-1"], 4, None), ("B", [], 3, None), ("C", ["alpha-2"], 2, None),
                         ("D", ["githash"], 1, None), ("E", [], 1 - 1 / 24, None)]

# A realistic repository for a four-rule policy covering every count type.
MIXED: History = [
    ("v100", ["v1.0.0"], 60, 1),           # old but pulled yesterday
    ("v110", ["v1.1.0"], 40, None),
    ("v200", ["v2.0.0", "latest"], 20, None),
    ("rc", ["v2.1.0-rc1"], 10, None),
    ("dev-old", ["dev-abc"], 12, None),
    ("dev-new", ["dev-def"], 3, None),
    ("u1", [], 50, None),
    ("u2", [], 25, None),
    ("u3", [], 2, None),
    ("misc", ["misc"], 45, None),
    ("misc2", ["misc-2"], 45, 5),
]

SCENARIOS: list[Any] = [
    # [E] "Filtering on image count", with a tag prefix: keep the two newest prod images.
    pytest.param(policy(rule(1, "tagged", COUNT, 2, prefixes=["prod"])),
                 [("p1", ["prod-1"], 9, None), ("p2", ["prod-2"], 7, None), ("p3", ["prod-3", "latest"], 5, None),
                  ("p4", ["prod-4"], 3, None), ("d1", ["dev-1"], 8, None), ("u1", [], 10, None)],
                 [("p1", 1), ("p2", 1)], id="count-prefix"),
    # [E] "Filtering on image count": keep one untagged image.
    pytest.param(policy(rule(1, "untagged", COUNT, 1)),
                 [("u1", [], 5, None), ("u2", [], 4, None), ("u3", [], 3, None), ("t1", ["latest"], 9, None)],
                 [("u1", 1), ("u2", 1)], id="documented-untagged-count"),
    # [E] "Filtering on image age" (earlier edition): untagged older than 14 days; exactly 14 days stays.
    pytest.param(policy(rule(1, "untagged", PUSHED, 14)),
                 [("u-old", [], 15, None), ("u-14", [], 14, None), ("u-new", [], 1, None), ("t-old", ["v1"], 90, None)],
                 [("u-old", 1)], id="documented-untagged-age"),
    # [E] "Filtering on image age": prod* older than 14 days.
    pytest.param(policy(rule(1, "tagged", PUSHED, 14, patterns=["prod*"])),
                 [("old-prod", ["prod"], 30, None), ("old-production", ["production-1"], 15, None),
                  ("exactly-14", ["prod-2"], 14, None), ("young-prod", ["prod-3"], 2, None),
                  ("old-dev", ["dev-1"], 40, None), ("old-untagged", [], 40, None)],
                 [("old-prod", 1), ("old-production", 1)], id="documented-pattern-age"),
    # sinceImagePulled: the last pull counts, and an image never pulled counts from its push.
    pytest.param(policy(rule(1, "tagged", PULLED, 7, prefixes=["cache"])),
                 [("cache-a", ["cache-a"], 30, 2), ("cache-b", ["cache-b"], 30, 10), ("cache-c", ["cache-c"], 8, None),
                  ("cache-d", ["cache-d"], 3, None), ("other", ["app"], 30, None)],
                 [("cache-b", 1), ("cache-c", 1)], id="pulled"),
    pytest.param(policy(rule(1, "tagged", COUNT, 1, patterns=["prod*"]),
                        rule(2, "tagged", COUNT, 1, patterns=["beta*"])),
                 MULTIPLE_RULES, [("A", 1)], id="documented-multiple-rules-a"),
    pytest.param(policy(rule(1, "tagged", COUNT, 1, prefixes=["beta"]),
                        rule(2, "tagged", COUNT, 1, prefixes=["prod"])),
                 MULTIPLE_RULES, [("A", 1), ("B", 1)], id="documented-multiple-rules-b"),
    pytest.param(policy(rule(1, "tagged", PUSHED, 5, patterns=["alpha*", "beta*"])),
                 MULTIPLE_TAGS_A, [("C", 1)], id="documented-multiple-tags-a"),
    pytest.param(policy(rule(1, "tagged", COUNT, 1, prefixes=["alpha", "beta"])),
                 MULTIPLE_TAGS_B, [("A", 1), ("B", 1)], id="documented-multiple-tags-b"),
    pytest.param(policy(rule(1, "any", COUNT, 1)), ALL_IMAGES_A, [("A", 1), ("B", 1), ("C", 1)],
                 id="documented-all-images-a"),
    pytest.param(policy(rule(1, "tagged", COUNT, 1, prefixes=["alpha"]), rule(2, "untagged", PUSHED, 1),
                        rule(3, "any", COUNT, 1)),
                 ALL_IMAGES_B, [("A", 1), ("B", 2), ("D", 3)], id="documented-all-images-b"),
    # Priorities across four rules (rule numbers need not be consecutive):
    #  10 v*.*.* keep 2: rc, v200 newest -> v110, v100 (recent pull irrelevant to a count rule);
    #  20 dev- older than 7 days -> dev-old; 30 untagged keep 1 -> u2, u1;
    #  40 any not pulled for 30 days -> v110 and u1 (owned by 10 and 30), misc (misc2 pulled 5 days ago).
    pytest.param(policy(rule(10, "tagged", COUNT, 2, patterns=["v*.*.*"]),
                        rule(20, "tagged", PUSHED, 7, prefixes=["dev-"]),
                        rule(30, "untagged", COUNT, 1),
                        rule(40, "any", PULLED, 30)),
                 MIXED, [("v100", 10), ("v110", 10), ("dev-old", 20), ("u1", 30), ("u2", 30), ("misc", 40)],
                 id="mixed-four-rules"),
]


def _push_history(reg: Registry, repo: str, history: History) -> None:
    # Oldest first, as they would have been pushed; pulls are recorded afterwards at their own times.
    for name, tags, age, _ in sorted(history, key=lambda h: -h[2]):
        reg.push(repo, name, tags, age)
    for name, _, _, pulled in history:
        if pulled is not None:
            reg.clock.now = NOW - pulled * DAY
            reg.services.content.get_manifest(reg.caller, repo, reg.images[name].digest)
    reg.clock.now = NOW


def _expired_names(reg: Registry, expired: Sequence[Expired]) -> list[tuple[str, int]]:
    return sorted((reg.name_of(e.expiry.digest), e.expiry.rule_priority) for e in expired)


@pytest.mark.parametrize(("text", "history", "expected"), SCENARIOS)
def test_preview_dry_run_and_run_agree(reg: Registry, text: str, history: History,
                                       expected: list[tuple[str, int]]) -> None:
    _push_history(reg, "app", history)
    reg.push("bystander", "bystander-old", [], 400)  # another repository, no policy: never touched
    everything = {name for name, *_ in history}
    reg.lifecycle.put(reg.caller, "app", text)

    # The preview.
    results = reg.preview("app")
    assert sorted((reg.name_of(r["imageDigest"]), r["appliedRulePriority"]) for r in results) == sorted(expected)
    for r in results:
        img = reg.images[reg.name_of(r["imageDigest"])]
        assert sorted(r["imageTags"]) == list(img.tags)
        assert r["imagePushedAt"] == pytest.approx(img.pushed_at)

    # A dry run: the same images, nothing deleted, no audit events, lastEvaluatedAt untouched.
    dry = reg.lifecycle.run(dry_run=True)
    assert _expired_names(reg, dry) == sorted(expected)
    assert all(not e.deleted and e.repository == "app" for e in dry)
    assert reg.present("app") == everything
    assert reg.lifecycle_events() == []
    assert reg.lifecycle.get(reg.caller, "app").lifecycle_evaluated_at is None

    # The real run deletes exactly what the preview listed.
    run = reg.lifecycle.run()
    assert _expired_names(reg, run) == sorted(expected)
    assert all(e.deleted for e in run)
    assert reg.present("app") == everything - {name for name, _ in expected}
    assert reg.present("bystander") == {"bystander-old"}
    assert reg.lifecycle.get(reg.caller, "app").lifecycle_evaluated_at == int(NOW * 1000)

    # One audit event per expired image.
    events = reg.lifecycle_events()
    arn = reg.services.repositories.arn("app")
    assert sorted((e.resource, e.policy) for e in events) == sorted(
        (f"{arn}@{reg.images[name].digest}", f"lifecycle rule {priority}") for name, priority in expected)
    for e in events:
        assert e.action == "ecr:BatchDeleteImage" and e.allowed and e.reason == "lifecycle"
        assert e.at == int(NOW * 1000)

    # What is left is what a fresh preview starts from: its results are exactly what a second run deletes.
    again = reg.preview("app")
    second = reg.lifecycle.run()
    assert sorted(r["imageDigest"] for r in again) == sorted(e.expiry.digest for e in second if e.deleted)


def test_preview_of_unsaved_policy_then_run_with_saved_one(reg: Registry) -> None:
    """A preview may evaluate a policy text that is not saved; the run applies the saved one."""
    _push_history(reg, "app", [("a", ["a"], 5, None), ("b", ["b"], 4, None), ("c", ["c"], 3, None)])
    reg.lifecycle.put(reg.caller, "app", policy(rule(1, "any", COUNT, 2)))
    trial = reg.preview("app", policy(rule(1, "any", COUNT, 1)))
    assert sorted(reg.name_of(r["imageDigest"]) for r in trial) == ["a", "b"]
    saved = reg.preview("app")
    assert [reg.name_of(r["imageDigest"]) for r in saved] == ["a"]
    assert [reg.name_of(e.expiry.digest) for e in reg.lifecycle.run() if e.deleted] == ["a"]
    assert reg.present("app") == {"b", "c"}


def test_age_is_measured_at_the_run_time(reg: Registry) -> None:
    """sinceImagePushed: an image 13 days old stays today and goes once the clock has moved a day on."""
    _push_history(reg, "app", [("young", ["y"], 13, None), ("old", ["o"], 20, None)])
    reg.lifecycle.put(reg.caller, "app", policy(rule(1, "any", PUSHED, 14)))
    assert [reg.name_of(e.expiry.digest) for e in reg.lifecycle.run()] == ["old"]
    reg.clock.advance(DAY)  # now exactly 14 days: still kept (older than, strictly)
    assert reg.lifecycle.run() == []
    reg.clock.advance(1)
    assert [reg.name_of(e.expiry.digest) for e in reg.lifecycle.run()] == ["young"]
    assert reg.present("app") == set()


# -- the run's guards --------------------------------------------------------------------------------------


def test_run_keeps_images_pushed_or_retagged_after_it_began(reg: Registry) -> None:
    _push_history(reg, "app", [("old-a", ["a"], 6, None), ("old-b", ["b"], 5, None), ("old-u", [], 4, None),
                               ("old-c", ["c"], 3, None), ("new", ["d"], 1, None)])
    reg.lifecycle.put(reg.caller, "app", policy(rule(1, "any", COUNT, 1)))
    assert sorted(reg.name_of(r["imageDigest"]) for r in reg.preview("app")) == ["old-a", "old-b", "old-c", "old-u"]
    evaluate = Lifecycle.evaluate

    def evaluate_then_race(self: Lifecycle, *args: Any) -> Any:
        chosen = evaluate(self, *args)
        # Between the evaluation and the deletions, a second later:
        reg.clock.advance(1)
        a = reg.images["old-a"]  # deleted and pushed again: a new push time
        reg.services.content.delete_manifest(reg.caller, "app", a.digest)
        reg.put("app", a.body, a.media_type, "a")
        b = reg.images["old-b"]  # its tag pushed again (same image): re-tagged
        reg.put("app", b.body, b.media_type, "b")
        u = reg.images["old-u"]  # an untagged image gets a tag
        reg.put("app", u.body, u.media_type, "rescued")
        return chosen

    with mock.patch.object(Lifecycle, "evaluate", evaluate_then_race):
        run = reg.lifecycle.run()
    outcome = {reg.name_of(e.expiry.digest): e.deleted for e in run}
    assert outcome == {"old-a": False, "old-b": False, "old-u": False, "old-c": True}
    assert reg.present("app") == {"old-a", "old-b", "old-u", "new"}
    assert [e.resource.rsplit("@", 1)[1] for e in reg.lifecycle_events()] == [reg.images["old-c"].digest]

    # The next run evaluates afresh: old-a is now the newest push, so the others go.
    run = reg.lifecycle.run()
    assert {reg.name_of(e.expiry.digest) for e in run if e.deleted} == {"old-b", "old-u", "new"}
    assert reg.present("app") == {"old-a"}


def test_expire_manifest_compares_with_the_run_start(reg: Registry) -> None:
    img = reg.push("app", "img", ["t"], 2)
    retagged = reg.push("app", "retagged", ["r"], 3)
    reg.clock.now = NOW - DAY
    reg.put("app", retagged.body, retagged.media_type, "r2")
    meta, repo_id = reg.services.meta, reg.repo_id("app")
    pushed_ms, retag_ms = int(img.pushed_at * 1000), int((NOW - DAY) * 1000)

    assert not meta.expire_manifest(repo_id, img.digest, pushed_ms - 1)  # pushed after the run began
    assert not meta.expire_manifest(repo_id, retagged.digest, retag_ms - 1)  # re-tagged after the run began
    assert not meta.expire_manifest(repo_id, "sha256:" + "0" * 64, int(NOW * 1000))  # not there
    assert reg.present("app") == {"img", "retagged"}
    assert meta.expire_manifest(repo_id, img.digest, pushed_ms)
    assert meta.expire_manifest(repo_id, retagged.digest, retag_ms)
    assert reg.present("app") == set()
    assert meta.tags_of(repo_id, [img.digest, retagged.digest]) == {img.digest: [], retagged.digest: []}


def test_children_of_an_index_stay_while_the_index_exists(reg: Registry) -> None:
    c1 = reg.push("app", "c1", [], 10)
    c2 = reg.push("app", "c2", [], 10)
    index = reg.push_index("app", "index", [c1, c2], ["multi"], 10)
    reg.push("app", "loose", [], 10)
    reg.push("app", "fresh", [], 1)
    reg.lifecycle.put(reg.caller, "app", policy(rule(1, "untagged", PUSHED, 3)))

    # The rule selects c1, c2 and loose, but the tagged index still references c1 and c2.
    assert [reg.name_of(r["imageDigest"]) for r in reg.preview("app")] == ["loose"]
    assert [reg.name_of(e.expiry.digest) for e in reg.lifecycle.run(dry_run=True)] == ["loose"]
    assert [reg.name_of(e.expiry.digest) for e in reg.lifecycle.run() if e.deleted] == ["loose"]
    assert reg.present("app") == {"c1", "c2", "index", "fresh"}

    # Untagging the index is not enough: an untagged index older than 3 days is itself expired, and its
    # children go with it in the same run (the index first).
    assert reg.services.meta.delete_tag(reg.repo_id("app"), "multi")
    preview = sorted(reg.name_of(r["imageDigest"]) for r in reg.preview("app"))
    assert preview == ["c1", "c2", "index"]
    run = reg.lifecycle.run()
    assert sorted(reg.name_of(e.expiry.digest) for e in run if e.deleted) == preview
    assert reg.present("app") == {"fresh"}
    assert index.digest not in {row.digest for row in reg.services.meta.list_manifests(reg.repo_id("app"), None, 100)}


def test_index_and_children_selected_together_go_in_one_run(reg: Registry) -> None:
    c1 = reg.push("app", "c1", [], 10)
    c2 = reg.push("app", "c2", [], 10)
    reg.push_index("app", "index", [c1, c2], [], 9)
    reg.push("app", "loose", [], 8)
    reg.lifecycle.put(reg.caller, "app", policy(rule(1, "untagged", COUNT, 1)))
    # Rule 1 keeps the newest untagged image (loose) and marks index, c1, c2: the index goes, then its
    # children in the same run.
    preview = sorted(reg.name_of(r["imageDigest"]) for r in reg.preview("app"))
    assert preview == ["c1", "c2", "index"]
    assert sorted(reg.name_of(e.expiry.digest) for e in reg.lifecycle.run() if e.deleted) == preview
    assert reg.present("app") == {"loose"}


def test_children_of_a_kept_index_are_not_expired_by_a_later_rule(reg: Registry) -> None:
    c1 = reg.push("app", "c1", [], 30)
    c2 = reg.push("app", "c2", [], 30)
    reg.push_index("app", "index", [c1, c2], ["release-1"], 30)
    reg.push("app", "old", ["misc"], 30)
    reg.lifecycle.put(reg.caller, "app", policy(rule(1, "tagged", COUNT, 5, prefixes=["release"]),
                                                rule(2, "any", PUSHED, 7)))
    assert sorted(reg.name_of(r["imageDigest"]) for r in reg.preview("app")) == ["old"]
    assert [reg.name_of(e.expiry.digest) for e in reg.lifecycle.run() if e.deleted] == ["old"]
    assert reg.present("app") == {"c1", "c2", "index"}


def test_dry_run_deletes_nothing_across_repositories(reg: Registry) -> None:
    for repo in ("one", "two"):
        for i in range(4):
            reg.push(repo, f"{repo}-{i}", [f"v{i}"], 10 - i)
        reg.lifecycle.put(reg.caller, repo, policy(rule(1, "any", COUNT, 1)))
    dry = reg.lifecycle.run(dry_run=True)
    assert sorted((e.repository, reg.name_of(e.expiry.digest)) for e in dry) == [
        ("one", "one-0"), ("one", "one-1"), ("one", "one-2"), ("two", "two-0"), ("two", "two-1"), ("two", "two-2")]
    assert not any(e.deleted for e in dry)
    assert reg.present("one") == {f"one-{i}" for i in range(4)}
    assert reg.present("two") == {f"two-{i}" for i in range(4)}
    assert reg.lifecycle_events() == []
    progress: list[tuple[str, int]] = []
    run = reg.lifecycle.run(progress=lambda name, done: progress.append((name, done)))
    assert sum(e.deleted for e in run) == 6
    assert progress == [("one", 3), ("two", 6)]
    assert reg.present("one") == {"one-3"} and reg.present("two") == {"two-3"}
    assert len(reg.lifecycle_events()) == 6


def test_deleted_policy_is_not_applied(reg: Registry) -> None:
    _push_history(reg, "app", [("a", ["a"], 5, None), ("b", ["b"], 4, None)])
    reg.lifecycle.put(reg.caller, "app", policy(rule(1, "any", COUNT, 1)))
    reg.lifecycle.delete(reg.caller, "app")
    assert reg.lifecycle.run() == []
    assert reg.present("app") == {"a", "b"}


def test_preview_in_progress_then_complete(reg: Registry) -> None:
    """While a preview is being evaluated, GetLifecyclePolicyPreview says IN_PROGRESS and a second start is
    refused (LifecyclePolicyPreviewInProgressException); once it finishes, a new one may start."""
    _push_history(reg, "app", [("a", ["a"], 5, None), ("b", ["b"], 4, None)])
    text = policy(rule(1, "any", COUNT, 1))
    release, entered = threading.Event(), threading.Event()
    evaluate = Lifecycle.evaluate

    def slow(self: Lifecycle, *args: Any) -> Any:
        entered.set()
        assert release.wait(20)
        return evaluate(self, *args)

    with mock.patch.object(Lifecycle, "evaluate", slow):
        reg.lifecycle.start_preview(reg.caller, "app", text)
        assert entered.wait(20)
        _, shown, status, results = reg.lifecycle.get_preview(reg.caller, "app")
        assert (shown, status, results) == (text, "IN_PROGRESS", [])
        with pytest.raises(RegistryError) as err:
            reg.lifecycle.start_preview(reg.caller, "app", text)
        assert err.value.kind is Kind.LIFECYCLE_PREVIEW_IN_PROGRESS
        release.set()
        deadline = time.monotonic() + 20
        while (found := reg.lifecycle.get_preview(reg.caller, "app"))[2] == "IN_PROGRESS":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert found[2] == "COMPLETE"
        assert [reg.name_of(r["imageDigest"]) for r in found[3]] == ["a"]
        assert [reg.name_of(r["imageDigest"]) for r in reg.preview("app", text)] == ["a"]  # may start again


def test_failed_preview_reports_failed(reg: Registry) -> None:
    reg.push("app", "a", ["a"], 1)

    def broken(self: Lifecycle, *args: Any) -> Any:
        raise RuntimeError("storage went away")

    with mock.patch.object(Lifecycle, "evaluate", broken):
        reg.lifecycle.start_preview(reg.caller, "app", policy(rule(1, "any", COUNT, 1)))
        deadline = time.monotonic() + 20
        while reg.lifecycle.get_preview(reg.caller, "app")[2] == "IN_PROGRESS":
            assert time.monotonic() < deadline
            time.sleep(0.01)
    assert reg.lifecycle.get_preview(reg.caller, "app")[2] == "FAILED"


def test_abandoned_preview_does_not_block_new_ones(reg: Registry) -> None:
    """A preview left IN_PROGRESS by a process that stopped mid-evaluation (its thread is a daemon) must
    not refuse every later StartLifecyclePolicyPreview for the repository."""
    reg.push("app", "a", ["a"], 2)
    reg.push("app", "b", ["b"], 1)
    text = policy(rule(1, "any", COUNT, 1))
    meta, repo_id = reg.services.meta, reg.repo_id("app")
    meta.save_preview(repo_id, text, "IN_PROGRESS", None, int((NOW - 60) * 1000))  # a minute ago: running
    with pytest.raises(RegistryError) as err:
        reg.lifecycle.start_preview(reg.caller, "app", text)
    assert err.value.kind is Kind.LIFECYCLE_PREVIEW_IN_PROGRESS
    assert reg.lifecycle.get_preview(reg.caller, "app")[2] == "IN_PROGRESS"

    meta.save_preview(repo_id, text, "IN_PROGRESS", None, int((NOW - 2 * HOUR) * 1000))  # long gone
    assert reg.lifecycle.get_preview(reg.caller, "app")[2] == "FAILED"
    assert [reg.name_of(r["imageDigest"]) for r in reg.preview("app", text)] == ["a"]
