"""The four workflows of the official OCI conformance suite, as ordered steps sharing state.

Each step is one spec of the Go suite (opencontainers/distribution-spec, conformance/0[1-4]_*.go),
named with its text, making the same requests and the same assertions. State lives where the Go
suite keeps it: per-workflow variables (lastResponse, tagList, manifestRefs, ...) set at the same
points, so a step that fails midway leaves them as the Go spec would. SPECS.md maps every step to
its Go spec.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.conformance import checks
from tests.conformance.checks import expect, expect_2xx, expect_location, expect_status, run_only_if, run_only_if_not
from tests.conformance.client import RegistryClient, Response
from tests.conformance.config import CONTENT_DISCOVERY, CONTENT_MANAGEMENT, PULL, PUSH, WORKFLOW_VARS, Config
from tests.conformance.testdata import (
    ARTIFACT_TYPE_FILTER,
    EMPTY_JSON_DIGEST,
    EMPTY_LAYER_TEST_TAG,
    INVALID_MANIFEST_CONTENT,
    NONEXISTENT_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    REF_ARTIFACT_TYPE_A,
    TEST_ANNOTATION_KEY,
    TEST_TAG_NAME,
    TestData,
    digest_of,
)

OCTET = "application/octet-stream"
ERROR_CODES = ("BLOB_UNKNOWN", "BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN", "DIGEST_INVALID",
               "MANIFEST_BLOB_UNKNOWN", "MANIFEST_INVALID", "MANIFEST_UNKNOWN", "MANIFEST_UNVERIFIED",
               "NAME_INVALID", "NAME_UNKNOWN", "SIZE_INVALID", "TAG_INVALID", "UNAUTHORIZED", "DENIED",
               "UNSUPPORTED")

# The version of the Go suite this re-creates (SPECS.md says how it was chosen).
GO_SOURCES = {
    "Pull": "conformance/01_pull_test.go",
    "Push": "conformance/02_push_test.go",
    "Content Discovery": "conformance/03_discovery_test.go",
    "Content Management": "conformance/04_management_test.go",
}


@dataclass(frozen=True)
class Spec:
    workflow: str
    context: str
    text: str
    run: Callable[[], None] = field(compare=False, repr=False)
    # Earlier specs (by text, same workflow) whose state this one uses: if one of them failed,
    # a pass here only means the registry answered stale state well (see runner.strict).
    needs: tuple[str, ...] = ()
    step: str = ""  # the Python method (and arguments) that makes this spec's requests

    @property
    def name(self) -> str:
        return f"{self.workflow} / {self.context} / {self.text}"

    @property
    def source(self) -> str:
        return GO_SOURCES[self.workflow]


class Suite:
    """One run of the suite: configuration, client, generated data and every workflow's state."""

    def __init__(self, config: Config, client: RegistryClient | None = None, data: TestData | None = None) -> None:
        self.config = config
        self.client = client or RegistryClient(config)
        self.data = data or TestData.generate(config)
        self.warnings: list[str] = []
        self.workflows = [Pull(self), Push(self), ContentDiscovery(self), ContentManagement(self)]

    def specs(self) -> list[Spec]:
        return [spec for workflow in self.workflows for spec in workflow.specs()]

    # -- what the Go suite's setup.go provides ----------------------------------------------

    @property
    def ns(self) -> str:
        return self.config.namespace

    def request(self, method: str, path: str, **kwargs: Any) -> Response:
        return self.client.request(method, path, **kwargs)

    def skip_if_disabled(self, workflow: int) -> None:
        if not self.config.enabled(workflow):
            lines = [f"\t{var}={os.environ.get(var, '')}" for var in WORKFLOW_VARS]
            raise checks.SpecSkipped("you have skipped this test; if this is an error, check your environment "
                                     "variable settings:\n" + "\n".join(lines))

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def tag_list(self, resp: Response) -> list[str]:
        """getTagList: the "tags" of the body, [] if the body does not parse."""
        try:
            doc = json.loads(resp.body)
        except ValueError:
            return []
        tags = doc.get("tags") if isinstance(doc, dict) else None
        return [str(t) for t in tags] if isinstance(tags, list) else []

    def push_blob(self, blob_refs: list[str], digest: str, content: bytes, length: str,
                  media_type: str = OCTET) -> list[str]:
        """pushBlob: POST (201 or 202), PUT ?digest= with the blob (201); returns blob_refs + [digest]."""
        resp = self.request("POST", f"/v2/{self.ns}/blobs/uploads/")
        expect_status(resp, 202, 201)
        resp = self.request("PUT", resp.relative_location(), params={"digest": digest},
                            headers={"Content-Type": media_type, "Content-Length": length}, body=content)
        expect_status(resp, 201)
        return [*blob_refs, digest]

    def push_manifest(self, manifest_refs: list[str], *, digest: str, content: bytes, tag: str = "",
                      subject: str = "", index: bool = False) -> list[str]:
        """pushManifest: PUT by tag (else digest): 201, a Location, OCI-Subject the subject or absent."""
        reference = tag or digest
        media_type = OCI_INDEX if index else OCI_MANIFEST
        resp = self.request("PUT", f"/v2/{self.ns}/manifests/{reference}", headers={"Content-Type": media_type},
                            body=content)
        expect_status(resp, 201)
        expect_location(resp)
        expect(resp.header("OCI-Subject") in (subject, ""),
               f"OCI-Subject {resp.header('OCI-Subject')!r} is neither {subject!r} nor empty")
        refs = [*manifest_refs, reference]
        if tag:
            refs.append(digest)
        return refs

    def delete_manifest(self, ref: str) -> None:
        """deleteManifest: if GET answers 200, DELETE (202, 405 or 404), then GET .../<ref> must be 404.

        That last GET is written "/v2/<name>/manifests/<ref>" in the Go suite, and "<ref>" is not a
        placeholder reggie fills in: the request goes to the literal reference "<ref>".
        """
        resp = self.request("GET", f"/v2/{self.ns}/manifests/{ref}")
        if resp.status_code == 200:
            resp = self.request("DELETE", f"/v2/{self.ns}/manifests/{ref}")
            expect_status(resp, 202, 405, 404)
            resp = self.request("GET", f"/v2/{self.ns}/manifests/<ref>")
            expect_status(resp, 404)

    def delete_manifests(self, manifest_refs: list[str]) -> None:
        for ref in reversed(manifest_refs):
            self.delete_manifest(ref)

    def delete_blob(self, ref: str) -> int:
        """deleteBlob: DELETE (202, 404, 400 or 405); "ns/digest" names a blob in another namespace."""
        namespace, digest = ref.rsplit("/", 1) if "/" in ref else (self.ns, ref)
        resp = self.request("DELETE", f"/v2/{namespace}/blobs/{digest}")
        expect_status(resp, 202, 404, 400, 405)
        return resp.status_code

    def delete_blobs(self, blob_refs: list[str]) -> None:
        for ref in reversed(blob_refs):
            self.delete_blob(ref)


class Workflow:
    title = ""

    def __init__(self, suite: Suite) -> None:
        self.s = suite
        self.d = suite.data
        self.config = suite.config

    def spec(self, context: str, text: str, fn: Callable[..., None], *args: Any, needs: tuple[str, ...] = (),
             **kwargs: Any) -> Spec:
        shown = ", ".join([*(repr(a) for a in args), *(f"{k}={v!r}" for k, v in kwargs.items())])
        step = f"{type(self).__name__}.{fn.__name__}({shown})"
        return Spec(self.title, context, text, functools.partial(fn, *args, **kwargs), needs, step)

    def specs(self) -> list[Spec]:
        raise NotImplementedError


# -- 01 Pull --------------------------------------------------------------------------------

class Pull(Workflow):
    title = "Pull"

    def __init__(self, suite: Suite) -> None:
        super().__init__(suite)
        self.tag = ""
        self.blob_refs: list[str] = []
        self.manifest_refs: list[str] = []

    def specs(self) -> list[Spec]:
        s = self.spec
        setup, blobs, manifests = "Setup", "Pull blobs", "Pull manifests"
        teardown_manifests = s("Teardown", "Delete manifests created in setup", self.delete_manifests)
        return [
            s(setup, "Populate registry with test blob", self.populate_blob, 0),
            s(setup, "Populate registry with test blob", self.populate_blob, 1),
            s(setup, "Populate registry with test layer", self.populate_layer),
            s(setup, "Populate registry with test manifest", self.populate_tagged_manifest),
            s(setup, "Populate registry with test manifest", self.populate_manifest_by_digest),
            s(setup, "Get tag name from environment", self.tag_from_environment),
            s(blobs, "HEAD request to nonexistent blob should result in 404 response",
              self.blob, "HEAD", "dummy", 404),
            s(blobs, "HEAD request to existing blob should yield 200",
              self.blob, "HEAD", "configs[0]", 200, check_digest=True),
            s(blobs, "GET nonexistent blob should result in 404 response",
              self.blob, "GET", "dummy", 404),
            s(blobs, "GET request to existing blob URL should yield 200",
              self.blob, "GET", "configs[0]", 200),
            s(manifests, "HEAD request to nonexistent manifest should return 404",
              self.nonexistent_manifest, "HEAD"),
            s(manifests, "HEAD request to manifest[0] path (digest) should yield 200 response",
              self.manifest, "HEAD", "manifests[0]", check_digest=True),
            s(manifests, "HEAD request to manifest[1] path (digest) should yield 200 response",
              self.manifest, "HEAD", "manifests[1]", check_digest=True),
            s(manifests, "HEAD request to manifest path (tag) should yield 200 response",
              self.manifest_by_tag, "HEAD"),
            s(manifests, "GET nonexistent manifest should return 404", self.nonexistent_manifest, "GET"),
            s(manifests, "GET request to manifest[0] path (digest) should yield 200 response",
              self.manifest, "GET", "manifests[0]"),
            s(manifests, "GET request to manifest[1] path (digest) should yield 200 response",
              self.manifest, "GET", "manifests[1]"),
            s(manifests, "GET request to manifest path (tag) should yield 200 response",
              self.manifest_by_tag, "GET"),
            s("Error codes", "400 response body should contain OCI-conforming JSON message", self.error_body),
            *([teardown_manifests] if self.config.delete_manifest_before_blobs else []),
            s("Teardown", "Delete blobs created in setup", self.delete_blobs),
            *([] if self.config.delete_manifest_before_blobs else [teardown_manifests]),
        ]

    def setup(self) -> None:
        self.s.skip_if_disabled(PULL)
        run_only_if(self.config.run_pull_setup)

    def populate_blob(self, i: int) -> None:
        self.setup()
        blob = self.d.configs[i]
        self.blob_refs = self.s.push_blob(self.blob_refs, blob.digest, blob.content, blob.content_length)

    def populate_layer(self) -> None:
        self.setup()
        self.blob_refs = self.s.push_blob(self.blob_refs, self.d.layer_blob_digest, self.d.layer_blob,
                                          str(len(self.d.layer_blob)))

    def populate_tagged_manifest(self) -> None:
        self.setup()
        self.tag = TEST_TAG_NAME
        m = self.d.manifests[0]
        self.manifest_refs = self.s.push_manifest(self.manifest_refs, tag=self.tag, digest=m.digest,
                                                  content=m.content)

    def populate_manifest_by_digest(self) -> None:
        self.setup()
        m = self.d.manifests[1]
        self.manifest_refs = self.s.push_manifest(self.manifest_refs, digest=m.digest, content=m.content)

    def tag_from_environment(self) -> None:
        self.s.skip_if_disabled(PULL)
        run_only_if_not(self.config.run_pull_setup)
        if self.config.tag_name:
            self.tag = self.config.tag_name

    def blob(self, method: str, which: str, status: int, check_digest: bool = False) -> None:
        self.s.skip_if_disabled(PULL)
        digest = self.d.digest(which)
        resp = self.s.request(method, f"/v2/{self.s.ns}/blobs/{digest}")
        expect_status(resp, status)
        header = resp.header("Docker-Content-Digest")
        if check_digest and header:
            expect(header == digest, f"Docker-Content-Digest {header!r} != {digest!r}")

    def nonexistent_manifest(self, method: str) -> None:
        self.s.skip_if_disabled(PULL)
        resp = self.s.request(method, f"/v2/{self.s.ns}/manifests/{NONEXISTENT_MANIFEST}")
        expect_status(resp, 404)

    def manifest(self, method: str, which: str, check_digest: bool = False) -> None:
        digest = self.d.digest(which)
        self.pull_manifest(method, digest, digest if check_digest else "")

    def pull_manifest(self, method: str, reference: str, expected_digest: str = "") -> None:
        self.s.skip_if_disabled(PULL)
        resp = self.s.request(method, f"/v2/{self.s.ns}/manifests/{reference}", headers={"Accept": OCI_MANIFEST})
        expect_status(resp, 200)
        header = resp.header("Docker-Content-Digest")
        if expected_digest and header:
            expect(header == expected_digest, f"Docker-Content-Digest {header!r} != {expected_digest!r}")

    def manifest_by_tag(self, method: str) -> None:
        self.s.skip_if_disabled(PULL)
        expect(self.tag != "", "no tag to pull (setup did not push one and OCI_TAG_NAME is not set)")
        self.pull_manifest(method, self.tag, self.d.manifests[0].digest if method == "HEAD" else "")

    def error_body(self) -> None:
        self.s.skip_if_disabled(PULL)
        # The Go spec sets a Content-Type and a body on this GET; its client sends no body on a GET.
        resp = self.s.request("GET", f"/v2/{self.s.ns}/manifests/sha256:totallywrong",
                              headers={"Content-Type": OCI_MANIFEST}, body=INVALID_MANIFEST_CONTENT)
        expect_status(resp, 400, 404)
        if resp.status_code == 400:
            errors = resp.errors()
            expect(bool(errors), "empty error list")
            expect(errors[0].code in ERROR_CODES, f"error code {errors[0].code!r} is not an OCI error code")

    def delete_manifests(self) -> None:
        self.s.skip_if_disabled(PULL)
        run_only_if(self.config.run_pull_setup)
        self.s.delete_manifests(self.manifest_refs)

    def delete_blobs(self) -> None:
        self.s.skip_if_disabled(PULL)
        run_only_if(self.config.run_pull_setup)
        self.s.delete_blobs(self.blob_refs)


# -- 02 Push --------------------------------------------------------------------------------

class Push(Workflow):
    title = "Push"

    def __init__(self, suite: Suite) -> None:
        super().__init__(suite)
        self.last_response: Response | None = None
        self.prev_response: Response | None = None
        self.empty_layer_manifest_ref = ""

    def specs(self) -> list[Spec]:
        s = self.spec
        streamed, mono, chunked = "Blob Upload Streamed", "Blob Upload Monolithic", "Blob Upload Chunked"
        mount, upload, teardown = "Cross-Repository Blob Mount", "Manifest Upload", "Teardown"
        patch_streamed = "PATCH request with blob in body should yield 202 response"
        post_digest = "POST request with digest and blob should yield a 201 or 202"
        post_session = "POST request should yield a session ID"
        first_chunk = "PATCH request with first chunk should return 202"
        stale = "Get on stale blob upload should return 204 with a range and location"
        second_chunk = "PATCH request with second chunk should return 202"
        mount_from = "POST request to mount another repository's blob should return 201 or 202"
        delete_manifest = s(teardown, "Delete manifest created in tests", self.delete_manifest)
        return [
            s(streamed, patch_streamed, self.patch_streamed),
            s(streamed, "PUT request to session URL with digest should yield 201 response", self.put_streamed,
              needs=(patch_streamed,)),
            s(mono, "GET nonexistent blob should result in 404 response", self.get_nonexistent_blob),
            s(mono, post_digest, self.post_with_digest),
            s(mono, "GET request to blob URL from prior request should yield 200 or 404 based on response code",
              self.get_after_post, needs=(post_digest,)),
            s(mono, post_session, self.post_session),
            s(mono, "PUT upload of a blob should yield a 201 Response", self.put_blob, needs=(post_session,)),
            s(mono, "GET request to existing blob should yield 200 response",
              self.get_blob, "configs[1]"),
            s(mono, "PUT upload of a layer blob should yield a 201 Response", self.put_layer),
            s(mono, "GET request to existing layer should yield 200 response",
              self.get_blob, "layer"),
            s(chunked, "Out-of-order blob upload should return 416", self.out_of_order),
            s(chunked, first_chunk, self.first_chunk),
            s(chunked, "Retry previous blob chunk should return 416", self.retry_chunk, needs=(first_chunk,)),
            s(chunked, stale, self.stale_upload, needs=(first_chunk,)),
            s(chunked, second_chunk, self.second_chunk, needs=(stale,)),
            s(chunked, "PUT request with digest should return 201", self.put_chunked, needs=(second_chunk,)),
            s(mount, "Cross-mounting of a blob without the from argument should yield session id",
              self.mount_without_from),
            s(mount, mount_from, self.mount_from),
            s(mount, "GET request to test digest within cross-mount namespace should return 200",
              self.get_mounted, needs=(mount_from,)),
            s(mount, "Cross-mounting of nonexistent blob should yield session id", self.mount_gave_session,
              needs=(mount_from,)),
            s(mount, "Cross-mounting without from, and automatic content discovery enabled should return a 201",
              self.automatic_mount, enabled=True, needs=(mount_from,)),
            s(mount, "Cross-mounting without from, and automatic content discovery disabled should return a 202",
              self.automatic_mount, enabled=False, needs=(mount_from,)),
            s(upload, "GET nonexistent manifest should return 404", self.get_nonexistent_manifest),
            s(upload, "PUT should accept a manifest upload", self.put_manifests),
            s(upload, "Registry should accept a manifest upload with no layers", self.put_empty_layer_manifest),
            s(upload, "GET request to manifest URL (digest) should yield 200 response", self.get_manifest),
            *([delete_manifest] if self.config.delete_manifest_before_blobs else []),
            s(teardown, "Delete config blob created in tests", self.delete_blob, "configs[1]"),
            s(teardown, "Delete layer blob created in setup", self.delete_blob, "layer"),
            *([] if self.config.delete_manifest_before_blobs else [delete_manifest]),
        ]

    def enabled(self) -> None:
        self.s.skip_if_disabled(PUSH)

    def last(self) -> Response:
        # A nil lastResponse makes the Go spec panic, which fails it.
        expect(self.last_response is not None, "no response from an earlier spec to continue from")
        assert self.last_response is not None
        return self.last_response

    def patch_streamed(self) -> None:
        self.enabled()
        resp = self.s.request("POST", f"/v2/{self.s.ns}/blobs/uploads/")
        expect_location(resp)
        resp = self.s.request("PATCH", resp.relative_location(), headers={"Content-Type": OCTET},
                              body=self.d.test_blob_a)
        expect_status(resp, 202)
        self.last_response = resp

    def put_streamed(self) -> None:
        self.enabled()
        last = self.last()
        resp = self.s.request("PUT", last.relative_location(), params={"digest": self.d.test_blob_a_digest},
                              headers={"Content-Type": OCTET, "Content-Length": str(len(self.d.test_blob_a))})
        expect_status(resp, 201)
        expect_location(resp)

    def get_nonexistent_blob(self) -> None:
        self.enabled()
        expect_status(self.s.request("GET", f"/v2/{self.s.ns}/blobs/{self.d.dummy_digest}"), 404)

    def post_with_digest(self) -> None:
        self.enabled()
        blob = self.d.configs[1]
        resp = self.s.request("POST", f"/v2/{self.s.ns}/blobs/uploads/", params={"digest": blob.digest},
                              headers={"Content-Length": blob.content_length, "Content-Type": OCTET},
                              body=blob.content)
        expect_location(resp)
        expect_status(resp, 201, 202)
        self.last_response = resp

    def get_after_post(self) -> None:
        self.enabled()
        last = self.last()
        resp = self.s.request("GET", f"/v2/{self.s.ns}/blobs/{self.d.configs[1].digest}")
        expect_status(resp, 404 if last.status_code == 202 else 200)

    def post_session(self) -> None:
        self.enabled()
        resp = self.s.request("POST", f"/v2/{self.s.ns}/blobs/uploads/")
        expect_status(resp, 202)
        self.last_response = resp

    def put_blob(self) -> None:
        self.enabled()
        blob = self.d.configs[1]
        resp = self.s.request("PUT", self.last().relative_location(), params={"digest": blob.digest},
                              headers={"Content-Length": blob.content_length, "Content-Type": OCTET},
                              body=blob.content)
        expect_location(resp)
        expect_status(resp, 201)

    def get_blob(self, which: str) -> None:
        self.enabled()
        expect_status(self.s.request("GET", f"/v2/{self.s.ns}/blobs/{self.d.digest(which)}"), 200)

    def put_layer(self) -> None:
        self.enabled()
        resp = self.s.request("POST", f"/v2/{self.s.ns}/blobs/uploads/")
        resp = self.s.request("PUT", resp.relative_location(), params={"digest": self.d.layer_blob_digest},
                              headers={"Content-Length": str(len(self.d.layer_blob)), "Content-Type": OCTET},
                              body=self.d.layer_blob)
        expect_location(resp)
        expect_status(resp, 201)

    def out_of_order(self) -> None:
        self.enabled()
        resp = self.s.request("POST", f"/v2/{self.s.ns}/blobs/uploads/", headers={"Content-Length": "0"})
        expect_location(resp)
        # Rebuild the chunked blob if the registry's minimum chunk is larger than our chunks.
        min_size = resp.header("OCI-Chunk-Min-Length")
        if min_size:
            expect(min_size.isdigit(), f"OCI-Chunk-Min-Length {min_size!r} is not a number")
            if int(min_size) > len(self.d.chunked.chunk1):
                self.d.set_up_chunked_blob(int(min_size) * 2 - 2)
        c = self.d.chunked
        resp = self.s.request("PATCH", resp.relative_location(), body=c.chunk2, headers={
            "Content-Type": OCTET, "Content-Length": str(len(c.chunk2)), "Content-Range": c.chunk2_range})
        expect_status(resp, 416)

    def first_chunk(self) -> None:
        self.enabled()
        resp = self.s.request("POST", f"/v2/{self.s.ns}/blobs/uploads/", headers={"Content-Length": "0"})
        expect_location(resp)
        self.prev_response = resp
        c = self.d.chunked
        resp = self.s.request("PATCH", resp.relative_location(), body=c.chunk1, headers={
            "Content-Type": OCTET, "Content-Length": str(len(c.chunk1)), "Content-Range": c.chunk1_range})
        expect_status(resp, 202)
        expect(resp.header("Range") == c.chunk1_range, f"Range {resp.header('Range')!r} != {c.chunk1_range!r}")
        self.last_response = resp

    def prev(self) -> Response:
        expect(self.prev_response is not None, "no upload session from an earlier spec")
        assert self.prev_response is not None
        return self.prev_response

    def retry_chunk(self) -> None:
        self.enabled()
        c = self.d.chunked
        resp = self.s.request("PATCH", self.prev().relative_location(), body=c.chunk1, headers={
            "Content-Type": OCTET, "Content-Length": str(len(c.chunk1)), "Content-Range": c.chunk1_range})
        expect_status(resp, 416)

    def stale_upload(self) -> None:
        self.enabled()
        resp = self.s.request("GET", self.prev().relative_location())
        expect_status(resp, 204)
        expect_location(resp)
        c = self.d.chunked
        expect(resp.header("Range") == c.chunk1_range, f"Range {resp.header('Range')!r} != {c.chunk1_range!r}")
        self.last_response = resp

    def second_chunk(self) -> None:
        self.enabled()
        c = self.d.chunked
        resp = self.s.request("PATCH", self.last().relative_location(), body=c.chunk2, headers={
            "Content-Length": str(len(c.chunk2)), "Content-Range": c.chunk2_range, "Content-Type": OCTET})
        expect_status(resp, 202)
        expect_location(resp)
        self.last_response = resp

    def put_chunked(self) -> None:
        self.enabled()
        resp = self.s.request("PUT", self.last().relative_location(), params={"digest": self.d.chunked.digest},
                              headers={"Content-Length": "0", "Content-Type": OCTET})
        expect_status(resp, 201)
        expect_location(resp)

    def mount_without_from(self) -> None:
        self.enabled()
        resp = self.s.request("POST", f"/v2/{self.config.crossmount_namespace}/blobs/uploads/",
                              params={"mount": self.d.dummy_digest})
        expect_status(resp, 202)
        expect(resp.absolute_location() != "", f"expected a Location: {resp.describe()}")

    def mount_from(self) -> None:
        self.enabled()
        resp = self.s.request("POST", f"/v2/{self.config.crossmount_namespace}/blobs/uploads/",
                              params={"mount": self.d.test_blob_a_digest, "from": self.s.ns})
        expect_status(resp, 201, 202)
        self.last_response = resp

    def get_mounted(self) -> None:
        self.enabled()
        last = self.last()
        run_only_if(last.status_code == 201)
        want = f"/v2/{self.config.crossmount_namespace}/blobs/{self.d.test_blob_a_digest}"
        expect(last.relative_location() == want, f"Location {last.relative_location()!r} != {want!r}")
        expect_status(self.s.request("GET", last.relative_location()), 200)

    def mount_gave_session(self) -> None:
        self.enabled()
        last = self.last()
        run_only_if(last.status_code == 202)
        prefix = f"/v2/{self.config.crossmount_namespace}/blobs/uploads/"
        expect(last.relative_location().startswith(prefix), f"Location {last.relative_location()!r} not under {prefix}")

    def automatic_mount(self, enabled: bool) -> None:
        self.enabled()
        run_only_if(self.config.run_automatic_crossmount_test)
        run_only_if(self.last().status_code == 201)
        if enabled:
            run_only_if(self.config.automatic_crossmount_enabled)
        else:
            run_only_if_not(self.config.automatic_crossmount_enabled)
        resp = self.s.request("POST", f"/v2/{self.config.crossmount_namespace}/blobs/uploads/",
                              params={"mount": self.d.test_blob_a_digest})
        expect_status(resp, 201 if enabled else 202)

    def get_nonexistent_manifest(self) -> None:
        self.enabled()
        expect_status(self.s.request("GET", f"/v2/{self.s.ns}/manifests/{NONEXISTENT_MANIFEST}"), 404)

    def put_manifests(self) -> None:
        self.enabled()
        for i in range(4):
            resp = self.s.request("PUT", f"/v2/{self.s.ns}/manifests/test{i}", headers={"Content-Type": OCI_MANIFEST},
                                  body=self.d.manifests[1].content)
            expect_location(resp)
            expect_status(resp, 201)

    def put_empty_layer_manifest(self) -> None:
        self.enabled()
        resp = self.s.request("PUT", f"/v2/{self.s.ns}/manifests/{EMPTY_LAYER_TEST_TAG}",
                              headers={"Content-Type": OCI_MANIFEST}, body=self.d.empty_layer_manifest)
        if resp.status_code == 201:
            self.empty_layer_manifest_ref = resp.header("Location")
            expect_location(resp)
        else:
            self.s.warn("image manifest with no layers is not supported")

    def get_manifest(self) -> None:
        self.enabled()
        resp = self.s.request("GET", f"/v2/{self.s.ns}/manifests/{self.d.manifests[1].digest}",
                              headers={"Accept": OCI_MANIFEST})
        expect_status(resp, 200)

    def delete_manifest(self) -> None:
        self.enabled()
        run_only_if(self.config.run_push_setup)
        resp = self.s.request("DELETE", f"/v2/{self.s.ns}/manifests/{self.d.manifests[1].digest}")
        expect_2xx(resp, 405)
        if self.empty_layer_manifest_ref:
            resp = self.s.request("DELETE", f"/v2/{self.s.ns}/manifests/{self.d.empty_layer_manifest_digest}")
            expect_2xx(resp, 405)

    def delete_blob(self, which: str) -> None:
        self.enabled()
        run_only_if(self.config.run_push_setup)
        expect_2xx(self.s.request("DELETE", f"/v2/{self.s.ns}/blobs/{self.d.digest(which)}"), 404, 405)


# -- 03 Content Discovery -------------------------------------------------------------------

class ContentDiscovery(Workflow):
    title = "Content Discovery"

    def __init__(self, suite: Suite) -> None:
        super().__init__(suite)
        self.num_tags = 4
        self.tag_list_: list[str] = []
        self.blob_refs: list[str] = []
        self.manifest_refs: list[str] = []

    def specs(self) -> list[Spec]:
        s = self.spec
        setup, tags, refs, teardown = ("Setup", "Test content discovery endpoints (listing tags)",
                                       "Test content discovery endpoints (listing references)", "Teardown")
        populate, references = "Populate registry with test tags", "References setup"
        listing = "GET request to list tags should yield 200 response and be in sorted order"
        delete_manifests = s(teardown, "Delete created manifest & associated tags", self.delete_manifests)
        return [
            s(setup, "Populate registry with test blob", self.populate_blob),
            s(setup, "Populate registry with test layer", self.populate_layer),
            s(setup, populate, self.populate_tags),
            s(setup, "Populate registry with test tags (no push)", self.tags_from_environment),
            s(setup, references, self.references_setup),
            s(tags, listing, self.list_tags, needs=(populate,)),
            s(tags, "GET number of tags should be limitable by `n` query parameter", self.limit_n,
              needs=(populate, listing)),
            s(tags, "GET start of tag is set by `last` query parameter", self.start_at_last, needs=(populate, listing)),
            s(refs, "GET request to nonexistent blob should result in empty 200 response", self.referrers_unknown),
            s(refs, "GET request to existing blob should yield 200", self.referrers, needs=(references,)),
            s(refs, "GET request to existing blob with filter should yield 200", self.referrers_filtered,
              needs=(references,)),
            s(refs, "GET request to missing manifest should yield 200", self.referrers_missing_subject,
              needs=(references,)),
            *([delete_manifests] if self.config.delete_manifest_before_blobs else []),
            s(teardown, "Delete blobs created in tests", self.delete_blobs),
            *([] if self.config.delete_manifest_before_blobs else [delete_manifests]),
        ]

    def setup(self) -> None:
        self.s.skip_if_disabled(CONTENT_DISCOVERY)
        run_only_if(self.config.run_content_discovery_setup)

    def enabled(self) -> None:
        self.s.skip_if_disabled(CONTENT_DISCOVERY)

    def push_blob(self, digest: str, content: bytes) -> None:
        self.blob_refs = self.s.push_blob(self.blob_refs, digest, content, str(len(content)))

    def push_manifest(self, digest: str, content: bytes, *, tag: str = "", subject: str = "",
                      index: bool = False) -> None:
        self.manifest_refs = self.s.push_manifest(self.manifest_refs, digest=digest, content=content, tag=tag,
                                                  subject=subject, index=index)

    def populate_blob(self) -> None:
        self.setup()
        self.push_blob(self.d.configs[2].digest, self.d.configs[2].content)

    def populate_layer(self) -> None:
        self.setup()
        self.push_blob(self.d.layer_blob_digest, self.d.layer_blob)

    def populate_tags(self) -> None:
        self.setup()
        m = self.d.manifests[2]
        for i in range(self.num_tags):
            for tag in (f"test{i}", f"TEST{i}"):
                self.tag_list_.append(tag)
                self.push_manifest(m.digest, m.content, tag=tag)
        resp = self.s.request("GET", f"/v2/{self.s.ns}/tags/list")
        self.tag_list_ = self.s.tag_list(resp)

    def tags_from_environment(self) -> None:
        self.enabled()
        run_only_if_not(self.config.run_content_discovery_setup)
        self.tag_list_ = self.config.tag_list.split(",")

    def references_setup(self) -> None:
        self.setup()
        d = self.d
        expect(d.empty_json_descriptor["digest"] == EMPTY_JSON_DIGEST, "unexpected digest of the empty JSON blob")
        self.push_blob(EMPTY_JSON_DIGEST, d.empty_json_blob)
        # The reference blob before the image manifest is pushed ...
        self.push_blob(digest_of(d.ref_blob_a), d.ref_blob_a)
        subject = d.manifests[4].digest
        self.push_manifest(digest_of(d.refs_a_config), d.refs_a_config, subject=subject)
        self.push_manifest(digest_of(d.refs_a_layer), d.refs_a_layer, subject=subject)
        self.push_manifest(digest_of(d.refs_index), d.refs_index, subject=subject, index=True)
        self.push_blob(d.configs[4].digest, d.configs[4].content)
        self.push_blob(d.layer_blob_digest, d.layer_blob)
        self.push_manifest(d.manifests[4].digest, d.manifests[4].content, tag=TEST_TAG_NAME)
        # ... and after it.
        self.push_blob(digest_of(d.ref_blob_b), d.ref_blob_b)
        self.push_manifest(digest_of(d.refs_b_config), d.refs_b_config, subject=subject)
        self.push_manifest(digest_of(d.refs_b_layer), d.refs_b_layer, subject=subject)
        # An artifact whose subject is never pushed.
        self.push_manifest(digest_of(d.refs_c_layer), d.refs_c_layer, subject=d.manifests[3].digest)

    def list_tags(self) -> None:
        self.enabled()
        resp = self.s.request("GET", f"/v2/{self.s.ns}/tags/list")
        expect_status(resp, 200)
        self.tag_list_ = self.s.tag_list(resp)
        self.num_tags = len(self.tag_list_)
        # Lexical (case-insensitive) order, or -- as registries have historically done -- byte order.
        lexical = sorted(self.tag_list_, key=str.lower)
        asciibetical = sorted(self.tag_list_)
        expect(self.tag_list_ in (lexical, asciibetical), f"tags are not sorted: {self.tag_list_}")

    def limit_n(self) -> None:
        self.enabled()
        n = self.num_tags // 2
        resp = self.s.request("GET", f"/v2/{self.s.ns}/tags/list", params={"n": str(n)})
        expect_status(resp, 200)
        self.tag_list_ = self.s.tag_list(resp)
        expect(len(self.tag_list_) == n, f"n={n} gave {len(self.tag_list_)} tags: {self.tag_list_}")

    def start_at_last(self) -> None:
        self.enabled()
        n = self.num_tags // 2
        resp = self.s.request("GET", f"/v2/{self.s.ns}/tags/list", params={"n": str(n)})
        expect_status(resp, 200)
        self.tag_list_ = self.s.tag_list(resp)
        # tagList[numResults-1] panics in Go when the list is shorter: the spec fails.
        expect(0 < n <= len(self.tag_list_), f"index {n - 1} out of range for {self.tag_list_}")
        last = self.tag_list_[n - 1]
        resp = self.s.request("GET", f"/v2/{self.s.ns}/tags/list", params={"n": str(n), "last": last})
        expect_status(resp, 200)
        self.tag_list_ = self.s.tag_list(resp)
        expect(len(self.tag_list_) <= n, f"n={n} gave {len(self.tag_list_)} tags")
        expect(last not in self.tag_list_, f"last={last!r} is in the next page {self.tag_list_}")

    def get_referrers(self, digest: str, params: dict[str, str] | None = None) -> tuple[Response, list[Any]]:
        resp = self.s.request("GET", f"/v2/{self.s.ns}/referrers/{digest}", params=params)
        expect_status(resp, 200)
        content_type = resp.header("Content-Type")
        expect(content_type == OCI_INDEX, f"Content-Type {content_type!r} != {OCI_INDEX!r}")
        doc = json.loads(resp.body)
        expect(isinstance(doc, dict), f"not a JSON object: {resp.body[:200]!r}")
        manifests = doc.get("manifests") or []
        expect(isinstance(manifests, list), f"manifests is not a list: {doc!r}")
        return resp, manifests

    def check_annotations(self, manifests: list[Any]) -> None:
        for entry in manifests:
            annotations = entry.get("annotations") or {}
            expect(len(annotations) == 1, f"expected one annotation on {entry!r}")
            want = self.d.annotation_values.get(str(entry.get("digest")), "")
            got = annotations.get(TEST_ANNOTATION_KEY, "")
            expect(got == want, f"annotation {got!r} != {want!r} on {entry.get('digest')}")

    def referrers_unknown(self) -> None:
        self.enabled()
        _, manifests = self.get_referrers(self.d.dummy_digest)
        expect(len(manifests) == 0, f"expected no referrers, got {manifests!r}")

    def referrers(self) -> None:
        self.enabled()
        _, manifests = self.get_referrers(self.d.manifests[4].digest)
        expect(len(manifests) == 5, f"expected 5 referrers, got {len(manifests)}: {manifests!r}")
        expect(manifests[0].get("digest") != manifests[1].get("digest"), "the first two referrers are the same")
        self.check_annotations(manifests)

    def referrers_filtered(self) -> None:
        self.enabled()
        resp, manifests = self.get_referrers(self.d.manifests[4].digest, {"artifactType": REF_ARTIFACT_TYPE_A})
        applied = resp.header("OCI-Filters-Applied")
        if applied:
            expect(len(manifests) == 2, f"expected 2 filtered referrers, got {len(manifests)}: {manifests!r}")
            expect(applied == ARTIFACT_TYPE_FILTER, f"OCI-Filters-Applied {applied!r} != {ARTIFACT_TYPE_FILTER!r}")
        else:
            expect(len(manifests) == 5, f"expected 5 (unfiltered) referrers, got {len(manifests)}")
            self.s.warn("filtering by artifact-type is not implemented")
        self.check_annotations(manifests)

    def referrers_missing_subject(self) -> None:
        self.enabled()
        _, manifests = self.get_referrers(self.d.manifests[3].digest)
        expect(len(manifests) == 1, f"expected 1 referrer, got {manifests!r}")
        want = digest_of(self.d.refs_c_layer)
        expect(manifests[0].get("digest") == want, f"referrer {manifests[0].get('digest')} != {want}")

    def delete_manifests(self) -> None:
        self.setup()
        self.s.delete_manifests(self.manifest_refs)

    def delete_blobs(self) -> None:
        self.setup()
        self.s.delete_blobs(self.blob_refs)


# -- 04 Content Management ------------------------------------------------------------------

class ContentManagement(Workflow):
    title = "Content Management"
    default_tag_name = "tagtest0"

    def __init__(self, suite: Suite) -> None:
        super().__init__(suite)
        self.tag_to_delete = ""
        self.num_tags = 0
        self.blob_delete_allowed = True

    def specs(self) -> list[Spec]:
        s = self.spec
        setup, manifests, blobs = "Setup", "Manifest delete", "Blob delete"
        populate_tag = "Populate registry with test tag"
        count = "Check how many tags there are before anything gets deleted"
        delete_blob = "DELETE request to blob URL should yield 202 response"
        return [
            s(setup, "Populate registry with test config blob", self.populate_config),
            s(setup, "Populate registry with test layer", self.populate_layer),
            s(setup, populate_tag, self.populate_tag),
            s(setup, count, self.count_tags),
            s(manifests, "DELETE request to manifest tag should return 202, unless tag deletion is disallowed "
                         "(400/405)", self.delete_tag, needs=(populate_tag,)),
            s(manifests, "DELETE request to manifest (digest) should yield 202 response unless already deleted",
              self.delete_digest),
            s(manifests, "GET request to deleted manifest URL should yield 404 response, unless delete is disallowed",
              self.get_deleted),
            s(manifests, "GET request to tags list should reflect manifest deletion", self.tags_after_delete,
              needs=(count,)),
            s(blobs, delete_blob, self.delete_blobs),
            s(blobs, "GET request to deleted blob URL should yield 404 response", self.get_deleted_blob,
              needs=(delete_blob,)),
        ]

    def setup(self) -> None:
        self.s.skip_if_disabled(CONTENT_MANAGEMENT)
        run_only_if(self.config.run_content_management_setup)

    def enabled(self) -> None:
        self.s.skip_if_disabled(CONTENT_MANAGEMENT)

    def upload(self, digest: str, content: bytes) -> None:
        resp = self.s.request("POST", f"/v2/{self.s.ns}/blobs/uploads/")
        resp = self.s.request("PUT", resp.relative_location(), params={"digest": digest},
                              headers={"Content-Length": str(len(content)), "Content-Type": OCTET}, body=content)
        expect_2xx(resp)

    def populate_config(self) -> None:
        self.setup()
        self.upload(self.d.configs[3].digest, self.d.configs[3].content)

    def populate_layer(self) -> None:
        self.setup()
        self.upload(self.d.layer_blob_digest, self.d.layer_blob)

    def populate_tag(self) -> None:
        self.setup()
        self.tag_to_delete = self.default_tag_name
        resp = self.s.request("PUT", f"/v2/{self.s.ns}/manifests/{self.tag_to_delete}",
                              headers={"Content-Type": OCI_MANIFEST}, body=self.d.manifests[3].content)
        expect_2xx(resp)

    def tags(self) -> list[Any]:
        resp = self.s.request("GET", f"/v2/{self.s.ns}/tags/list")
        expect_status(resp, 200)
        doc = json.loads(resp.body)  # a body that is not JSON fails the spec, as in Go
        tags = doc.get("tags") if isinstance(doc, dict) else None
        return tags if isinstance(tags, list) else []

    def count_tags(self) -> None:
        self.setup()
        self.num_tags = len(self.tags())

    def delete_tag(self) -> None:
        self.enabled()
        resp = self.s.request("DELETE", f"/v2/{self.s.ns}/manifests/{self.tag_to_delete}")
        expect_status(resp, 400, 202, 405)
        if resp.status_code == 400:
            errors = resp.errors()
            expect(bool(errors), "empty error list")
            expect(errors[0].code == "UNSUPPORTED", f"a 400 must be UNSUPPORTED, not {errors[0].code!r}")

    def delete_digest(self) -> None:
        self.enabled()
        resp = self.s.request("DELETE", f"/v2/{self.s.ns}/manifests/{self.d.manifests[3].digest}")
        expect_status(resp, 202, 404)

    def get_deleted(self) -> None:
        self.enabled()
        resp = self.s.request("GET", f"/v2/{self.s.ns}/manifests/{self.d.manifests[3].digest}")
        expect_status(resp, 404, 200)

    def tags_after_delete(self) -> None:
        self.enabled()
        tags = self.tags()
        expect(len(tags) < self.num_tags, f"{len(tags)} tags after the delete, {self.num_tags} before: {tags}")

    def delete_blobs(self) -> None:
        self.setup()
        resp = self.s.request("DELETE", f"/v2/{self.s.ns}/blobs/{self.d.configs[3].digest}")
        expect_status(resp, 202, 404, 405)
        resp = self.s.request("DELETE", f"/v2/{self.s.ns}/blobs/{self.d.layer_blob_digest}")
        expect_status(resp, 202, 404, 405)
        if resp.status_code == 405:
            self.blob_delete_allowed = False

    def get_deleted_blob(self) -> None:
        self.setup()
        run_only_if(self.blob_delete_allowed)
        expect_status(self.s.request("GET", f"/v2/{self.s.ns}/blobs/{self.d.configs[3].digest}"), 404)
