"""The suite's assertions (gomega's Expect(...).To(...)) and skips (ginkgo's Skip), in Python."""

from __future__ import annotations

from tests.conformance.client import Response


class SpecFailure(AssertionError):
    """An Expect that did not hold: the spec fails and stops there, as in ginkgo."""


class SpecSkipped(Exception):
    """g.Skip: the spec is skipped."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise SpecFailure(message)


def expect_status(resp: Response, *accepted: int) -> None:
    """Expect(resp.StatusCode()).To(Equal(a)) or To(SatisfyAny(Equal(a), Equal(b), ...))."""
    expect(resp.status_code in accepted, f"expected status in {sorted(accepted)}: {resp.describe()}")


def expect_2xx(resp: Response, *also: int) -> None:
    """SatisfyAll(>= 200, < 300), or SatisfyAny of that and the statuses in `also`."""
    ok = 200 <= resp.status_code < 300 or resp.status_code in also
    extra = f" or {sorted(also)}" if also else ""
    expect(ok, f"expected a 2xx status{extra}: {resp.describe()}")


def expect_location(resp: Response) -> None:
    """Expect(resp.Header().Get("Location")).ToNot(BeEmpty())."""
    expect(resp.header("Location") != "", f"expected a Location header: {resp.describe()}")


def run_only_if(condition: bool) -> None:
    if not condition:
        raise SpecSkipped("you have skipped this test.")


def run_only_if_not(condition: bool) -> None:
    run_only_if(not condition)
