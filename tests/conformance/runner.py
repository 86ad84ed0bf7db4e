"""Runs the steps in order, as ginkgo runs the Go suite's specs, and reports a line per spec."""

from __future__ import annotations

import sys
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TextIO

from tests.conformance.checks import SpecFailure, SpecSkipped
from tests.conformance.config import Config
from tests.conformance.suite import Spec, Suite

PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"


@dataclass
class Result:
    spec: Spec
    outcome: str
    message: str = ""
    warnings: list[str] = field(default_factory=list)
    blocked_by: list[str] = field(default_factory=list)  # needed specs that failed before this one
    seconds: float = 0.0

    @property
    def name(self) -> str:
        return self.spec.name


def run_spec(suite: Suite, spec: Spec, earlier: Iterable[Result], strict: bool = False) -> Result:
    """Run one spec. A failed Expect fails it and stops it there; any other error fails it too
    (a Go spec that panics fails). With strict, a pass that relied on a failed earlier spec's
    state is reported as a failure naming that spec."""
    failed_before = {r.spec.text for r in earlier if r.spec.workflow == spec.workflow and r.outcome == FAILED}
    blocked_by = [text for text in spec.needs if text in failed_before]
    suite.warnings = []
    start = time.monotonic()
    try:
        spec.run()
        outcome, message = PASSED, ""
    except SpecSkipped as skip:
        outcome, message = SKIPPED, str(skip)
    except SpecFailure as failure:
        outcome, message = FAILED, str(failure)
    except Exception as exc:  # a panic in Go: the spec fails
        outcome, message = FAILED, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"
    if blocked_by:
        note = "depends on earlier failed spec(s): " + "; ".join(blocked_by)
        message = f"{message}\n{note}" if message else note
        if strict and outcome == PASSED:
            outcome = FAILED
    return Result(spec, outcome, message, list(suite.warnings), blocked_by, time.monotonic() - start)


def run_all(suite: Suite, strict: bool = False) -> list[Result]:
    results: list[Result] = []
    for spec in suite.specs():
        results.append(run_spec(suite, spec, results, strict))
    return results


def failed_names(results: Iterable[Result]) -> list[str]:
    return [r.name for r in results if r.outcome == FAILED]


def report(results: list[Result], config: Config, out: TextIO = sys.stdout) -> None:
    hidden = {spec_workflow for spec_workflow in ("Pull", "Push", "Content Discovery", "Content Management")
              if config.hide_skipped_workflows and all(r.outcome == SKIPPED for r in results
                                                       if r.spec.workflow == spec_workflow)}
    for r in results:
        if r.spec.workflow in hidden:
            continue
        print(f"{r.outcome.upper():7} {r.name}", file=out)
        if r.outcome == FAILED:
            for line in r.message.strip().splitlines()[:12]:
                print(f"        {line}", file=out)
        for warning in r.warnings:
            print(f"        WARNING: {warning}", file=out)
    counts = {o: sum(r.outcome == o for r in results) for o in (PASSED, FAILED, SKIPPED)}
    print(f"\n{len(results)} specs: {counts[PASSED]} passed, {counts[FAILED]} failed, {counts[SKIPPED]} skipped",
          file=out)
