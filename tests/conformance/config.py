"""Settings from the OCI_* environment variables, read as the official Go suite reads them.

The official suite (opencontainers/distribution-spec, conformance/setup.go) parses booleans with
Go's strconv.ParseBool, so "1", "t", "T", "TRUE", "true", "True" mean true, "0", "f", "F",
"FALSE", "false", "False" mean false, and anything else (or unset) is false -- except
OCI_DELETE_MANIFEST_BEFORE_BLOBS, which is true when unset.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

PULL, PUSH, CONTENT_DISCOVERY, CONTENT_MANAGEMENT = 1, 2, 4, 8

WORKFLOW_VARS = {
    "OCI_TEST_PULL": PULL,
    "OCI_TEST_PUSH": PUSH,
    "OCI_TEST_CONTENT_DISCOVERY": CONTENT_DISCOVERY,
    "OCI_TEST_CONTENT_MANAGEMENT": CONTENT_MANAGEMENT,
}

_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def parse_bool(value: str | None) -> tuple[bool, bool]:
    """Go's strconv.ParseBool: (value, ok)."""
    if value in _TRUE:
        return True, True
    if value in _FALSE:
        return False, True
    return False, False


@dataclass(frozen=True)
class Config:
    root_url: str = ""
    namespace: str = ""
    crossmount_namespace: str = ""
    username: str = ""
    password: str = ""
    auth_scope: str = ""
    debug: bool = False
    tests_to_run: int = 0
    hide_skipped_workflows: bool = False
    blob_digest: str = ""  # OCI_BLOB_DIGEST: replaces the digest of every generated config
    manifest_digest: str = ""  # OCI_MANIFEST_DIGEST: replaces the digest of every generated manifest
    tag_name: str = ""  # OCI_TAG_NAME
    tag_list: str = ""  # OCI_TAG_LIST
    delete_manifest_before_blobs: bool = True
    run_automatic_crossmount_test: bool = False  # OCI_AUTOMATIC_CROSSMOUNT is set at all
    automatic_crossmount_enabled: bool = False  # ... and parses as true

    @property
    def run_pull_setup(self) -> bool:
        return not (self.tag_name and self.manifest_digest and self.blob_digest)

    @property
    def run_push_setup(self) -> bool:
        return True

    @property
    def run_content_discovery_setup(self) -> bool:
        return not self.tag_list

    @property
    def run_content_management_setup(self) -> bool:
        return True

    def enabled(self, workflow: int) -> bool:
        return bool(self.tests_to_run & workflow)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Config:
        env = os.environ if env is None else env
        tests_to_run = 0
        for var, flag in WORKFLOW_VARS.items():
            if parse_bool(env.get(var))[0]:
                tests_to_run |= flag
        delete_first = True
        if "OCI_DELETE_MANIFEST_BEFORE_BLOBS" in env:
            delete_first = parse_bool(env["OCI_DELETE_MANIFEST_BEFORE_BLOBS"])[0]
        crossmount = env.get("OCI_CROSSMOUNT_NAMESPACE", "") or f"conformance-{uuid.uuid4()}"
        return cls(
            root_url=env.get("OCI_ROOT_URL", ""),
            namespace=env.get("OCI_NAMESPACE", ""),
            crossmount_namespace=crossmount,
            username=env.get("OCI_USERNAME", ""),
            password=env.get("OCI_PASSWORD", ""),
            auth_scope=env.get("OCI_AUTH_SCOPE", ""),
            debug=parse_bool(env.get("OCI_DEBUG"))[0],
            tests_to_run=tests_to_run,
            hide_skipped_workflows=parse_bool(env.get("OCI_HIDE_SKIPPED_WORKFLOWS"))[0],
            blob_digest=env.get("OCI_BLOB_DIGEST", ""),
            manifest_digest=env.get("OCI_MANIFEST_DIGEST", ""),
            tag_name=env.get("OCI_TAG_NAME", ""),
            tag_list=env.get("OCI_TAG_LIST", ""),
            delete_manifest_before_blobs=delete_first,
            run_automatic_crossmount_test="OCI_AUTOMATIC_CROSSMOUNT" in env,
            automatic_crossmount_enabled=parse_bool(env.get("OCI_AUTOMATIC_CROSSMOUNT"))[0],
        )
