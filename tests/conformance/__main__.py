"""python -m tests.conformance: run the re-created OCI conformance suite against any registry.

Configured like the official suite, from the environment:

    OCI_ROOT_URL=http://127.0.0.1:5000 OCI_NAMESPACE=myorg/myrepo OCI_USERNAME=... OCI_PASSWORD=... \\
    OCI_TEST_PULL=1 OCI_TEST_PUSH=1 OCI_TEST_CONTENT_DISCOVERY=1 OCI_TEST_CONTENT_MANAGEMENT=1 \\
    .venv/bin/python -m tests.conformance

Prints one line per spec (PASSED/FAILED/SKIPPED) and a summary; exits 1 if a spec failed.
"""

from __future__ import annotations

import sys

from tests.conformance.config import Config
from tests.conformance.runner import FAILED, report, run_all
from tests.conformance.suite import Suite


def main() -> int:
    config = Config.from_env()
    if not config.root_url:
        print("OCI_ROOT_URL is not set (and OCI_NAMESPACE should be): every request would fail", file=sys.stderr)
        return 2
    if not config.tests_to_run:
        print("no workflow enabled: set OCI_TEST_PULL, OCI_TEST_PUSH, OCI_TEST_CONTENT_DISCOVERY and/or "
              "OCI_TEST_CONTENT_MANAGEMENT to 1; every spec will be skipped", file=sys.stderr)
    suite = Suite(config)
    try:
        results = run_all(suite)
    finally:
        suite.client.close()
    report(results, config)
    return 1 if any(r.outcome == FAILED for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
