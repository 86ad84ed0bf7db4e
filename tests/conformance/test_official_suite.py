"""The re-created official OCI conformance suite against cargohold, with authentication on.

All four workflows run, in the Go suite's order, against the session's live server: Pull, Push
(with a cross-mount namespace; OCI_AUTOMATIC_CROSSMOUNT=0, as cargohold mounts only with `from`),
Content Discovery (tags and referrers) and Content Management. One test per spec, sharing one
module-scoped run; a spec that passes only on the stale state of an earlier failed spec it
depends on is failed here, naming that spec (runner.run_spec strict mode).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.conformance.config import CONTENT_DISCOVERY, CONTENT_MANAGEMENT, PULL, PUSH, Config
from tests.conformance.runner import FAILED, SKIPPED, Result, run_spec
from tests.conformance.suite import Suite
from tests.support.server import ServerProcess

ALL_WORKFLOWS = PULL | PUSH | CONTENT_DISCOVERY | CONTENT_MANAGEMENT


def cargohold_config(server: ServerProcess | None) -> Config:
    run = uuid.uuid4().hex[:10]
    return Config(
        root_url=server.url if server else "http://127.0.0.1:1",
        namespace=f"conformance-{run}/main",
        crossmount_namespace=f"conformance-{run}/crossmount",
        username=server.key_id if server else "",
        password=server.secret if server else "",
        tests_to_run=ALL_WORKFLOWS,
        delete_manifest_before_blobs=True,
        run_automatic_crossmount_test=True,
        automatic_crossmount_enabled=False,
    )


def _spec_names() -> list[str]:
    suite = Suite(cargohold_config(None))
    suite.client.close()
    names: list[str] = []
    for spec in suite.specs():
        name = spec.name
        while name in names:  # the Go suite has two "Populate registry with test blob" (and manifest) specs
            name += " (again)"
        names.append(name)
    return names


SPEC_NAMES = _spec_names()


class OfficialRun:
    def __init__(self, suite: Suite) -> None:
        self.suite = suite
        self.specs = suite.specs()
        self.results: list[Result] = []


@pytest.fixture(scope="module")
def official(server: ServerProcess) -> Iterator[OfficialRun]:
    suite = Suite(cargohold_config(server))
    try:
        yield OfficialRun(suite)
    finally:
        suite.client.close()


@pytest.mark.parametrize("index", range(len(SPEC_NAMES)), ids=SPEC_NAMES)
def test_spec(official: OfficialRun, index: int) -> None:
    spec = official.specs[index]
    assert SPEC_NAMES[index].startswith(spec.name)
    result = run_spec(official.suite, spec, official.results, strict=True)
    official.results.append(result)
    if result.outcome == FAILED:
        pytest.fail(f"{spec.name}\n{result.message}", pytrace=False)
    if result.outcome == SKIPPED:
        pytest.skip(result.message.splitlines()[0])
