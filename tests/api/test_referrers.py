"""Content discovery: the referrers API (OCI Distribution v1.1)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.helpers import (
    EMPTY_JSON,
    OCI_INDEX,
    OCI_MANIFEST,
    Pushed,
    assert_oci_error,
    descriptor,
    digest,
    encode,
    push_artifact,
    push_blob,
    push_image,
    put_manifest,
    random_bytes,
    unique_repo,
)

SBOM = "application/vnd.example.sbom.v1"
SIG = "application/vnd.example.signature.v1"
CONFIG_TYPE = "application/vnd.example.config.v1+json"


def _referrers(client: httpx.Client, repo: str, subject: str, **params: str) -> httpx.Response:
    r = client.get(f"/v2/{repo}/referrers/{subject}", params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == OCI_INDEX
    body = r.json()
    assert body["schemaVersion"] == 2
    assert body["mediaType"] == OCI_INDEX
    assert isinstance(body["manifests"], list)
    return r


def _entries(resp: httpx.Response) -> dict[str, dict[str, Any]]:
    manifests = resp.json()["manifests"]
    by_digest = {m["digest"]: m for m in manifests}
    assert len(by_digest) == len(manifests), "duplicate referrer entries"
    return by_digest


def _expect(pushed: Pushed, artifact_type: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"mediaType": pushed.media_type, "digest": pushed.digest, "size": len(pushed.body),
                             "artifactType": artifact_type}
    if annotations:
        entry["annotations"] = annotations
    return entry


@pytest.fixture(scope="module")
def family(module_client: httpx.Client) -> dict[str, Any]:
    """A subject image with five referrers of three artifact types, plus an unrelated artifact."""
    client = module_client
    repo = unique_repo()
    subject = push_image(client, repo, "subject")
    subj = subject.descriptor()
    sbom_a = push_artifact(client, repo, subj, SBOM, annotations={"org.example.n": "1"})
    sbom_b = push_artifact(client, repo, subj, SBOM, annotations={"org.example.n": "2"}, tag="tagged-sbom")
    sig = push_artifact(client, repo, subj, SIG, annotations={"org.example.n": "3"})
    # An image manifest without artifactType: the referrer's type is its config's media type.
    config = b'{"kind": "example"}'
    push_blob(client, repo, config)
    body = encode({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                   "config": descriptor(CONFIG_TYPE, config), "layers": [],
                   "subject": subj, "annotations": {"org.example.n": "4"}})
    r = put_manifest(client, repo, digest(body), body)
    assert r.status_code == 201, r.text
    assert r.headers["oci-subject"] == subject.digest
    configured = Pushed(repo, body, OCI_MANIFEST)
    # An index with a subject and artifactType is a referrer too.
    child = push_image(client, repo, None)
    index_body = encode({"schemaVersion": 2, "mediaType": OCI_INDEX, "artifactType": SIG,
                         "manifests": [child.descriptor()], "subject": subj,
                         "annotations": {"org.example.n": "5"}})
    r = put_manifest(client, repo, digest(index_body), index_body, OCI_INDEX)
    assert r.status_code == 201, r.text
    assert r.headers["oci-subject"] == subject.digest
    index = Pushed(repo, index_body, OCI_INDEX)
    # A referrer of something else must not show up.
    unrelated = push_artifact(client, repo, child.descriptor(), SBOM)
    return {"repo": repo, "subject": subject, "sbom_a": sbom_a, "sbom_b": sbom_b, "sig": sig,
            "configured": configured, "index": index, "unrelated": unrelated}


def test_lists_every_referrer_with_type_and_annotations(client: httpx.Client, family: dict[str, Any]) -> None:
    r = _referrers(client, family["repo"], family["subject"].digest)
    assert "oci-filters-applied" not in r.headers
    entries = _entries(r)
    expected = [
        _expect(family["sbom_a"], SBOM, {"org.example.n": "1"}),
        _expect(family["sbom_b"], SBOM, {"org.example.n": "2"}),
        _expect(family["sig"], SIG, {"org.example.n": "3"}),
        _expect(family["configured"], CONFIG_TYPE, {"org.example.n": "4"}),
        _expect(family["index"], SIG, {"org.example.n": "5"}),
    ]
    assert set(entries) == {e["digest"] for e in expected}
    for e in expected:
        assert entries[e["digest"]] == e
    assert family["unrelated"].digest not in entries


@pytest.mark.parametrize(("artifact_type", "members"), [
    (SBOM, {"sbom_a", "sbom_b"}),
    (SIG, {"sig", "index"}),
    (CONFIG_TYPE, {"configured"}),
    ("application/vnd.example.none", set()),
])
def test_artifact_type_filter(client: httpx.Client, family: dict[str, Any], artifact_type: str,
                              members: set[str]) -> None:
    r = _referrers(client, family["repo"], family["subject"].digest, artifactType=artifact_type)
    assert r.headers["oci-filters-applied"] == "artifactType"
    entries = _entries(r)
    assert set(entries) == {family[m].digest for m in members}
    assert all(e["artifactType"] == artifact_type for e in entries.values())


def test_no_referrers_is_an_empty_index(client: httpx.Client) -> None:
    repo = unique_repo()
    image = push_image(client, repo, "lonely")
    r = _referrers(client, repo, image.digest)
    assert r.json()["manifests"] == []
    assert "oci-filters-applied" not in r.headers
    r = _referrers(client, repo, digest(random_bytes(32)))
    assert r.json()["manifests"] == []


def test_unknown_repository_is_an_empty_index_not_404(client: httpx.Client) -> None:
    """A registry supporting the referrers API MUST NOT answer it with 404."""
    r = _referrers(client, unique_repo("nowhere"), digest(b"anything"))
    assert r.json()["manifests"] == []


def test_referrer_pushed_before_its_subject(client: httpx.Client) -> None:
    repo = unique_repo()
    config, layer = random_bytes(10), random_bytes(20)
    push_blob(client, repo, config)
    push_blob(client, repo, layer)
    subject_body = encode({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": descriptor("application/vnd.oci.image.config.v1+json", config),
                           "layers": [descriptor("application/vnd.oci.image.layer.v1.tar+gzip", layer)]})
    subj = {"mediaType": OCI_MANIFEST, "digest": digest(subject_body), "size": len(subject_body)}
    early = push_artifact(client, repo, subj, SIG)
    assert set(_entries(_referrers(client, repo, subj["digest"]))) == {early.digest}
    assert put_manifest(client, repo, "late-subject", subject_body).status_code == 201
    assert set(_entries(_referrers(client, repo, subj["digest"]))) == {early.digest}


def test_deleted_referrer_leaves_the_list(client: httpx.Client) -> None:
    repo = unique_repo()
    subject = push_image(client, repo, None)
    keep = push_artifact(client, repo, subject.descriptor(), SBOM)
    drop = push_artifact(client, repo, subject.descriptor(), SIG)
    assert set(_entries(_referrers(client, repo, subject.digest))) == {keep.digest, drop.digest}
    assert client.delete(f"/v2/{repo}/manifests/{drop.digest}").status_code == 202
    assert set(_entries(_referrers(client, repo, subject.digest))) == {keep.digest}


def test_referrers_are_per_repository(client: httpx.Client) -> None:
    repo, other = unique_repo(), unique_repo()
    subject = push_image(client, repo, None)
    push_artifact(client, repo, subject.descriptor(), SBOM)
    push_blob(client, other, EMPTY_JSON)
    assert _referrers(client, other, subject.digest).json()["manifests"] == []


def test_sha512_subject_digest(client: httpx.Client) -> None:
    repo = unique_repo()
    push_blob(client, repo, b"x")
    r = _referrers(client, repo, digest(b"subject", "sha512"))
    assert r.json()["manifests"] == []


@pytest.mark.parametrize("bad", ["sha256:abc", "sha256:" + "A" * 64, "md5:" + "a" * 32, "latest",
                                 "sha256:" + "a" * 65])
def test_invalid_digest_is_400(client: httpx.Client, bad: str) -> None:
    repo = unique_repo()
    push_blob(client, repo, b"x")
    assert_oci_error(client.get(f"/v2/{repo}/referrers/{bad}"), 400, "DIGEST_INVALID")
