"""Authentication on /v2 (Basic, Bearer tokens), the base endpoint, /healthz and /metrics."""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.api.helpers import (
    OCI_MANIFEST,
    assert_oci_error,
    digest,
    image_manifest,
    push_blob,
    push_image,
    start_upload,
    unique_repo,
)
from tests.support.server import ServerProcess

D = digest(b"anything")


@pytest.fixture()
def anonymous(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def _assert_challenge(resp: httpx.Response) -> None:
    assert_oci_error(resp, 401, None if resp.request.method == "HEAD" else "UNAUTHORIZED")
    challenges = resp.headers.get_list("www-authenticate")
    assert challenges, resp.headers
    schemes = {c.split(" ", 1)[0].lower() for c in challenges}
    assert "basic" in schemes or "bearer" in schemes
    for c in challenges:
        assert re.search(r'realm="[^"]+"', c), c


# -- the base endpoint ----------------------------------------------------------------------

def test_base_endpoint_with_credentials(client: httpx.Client) -> None:
    r = client.get("/v2/")
    assert r.status_code == 200
    assert r.headers["docker-distribution-api-version"] == "registry/2.0"
    assert r.json() == {}
    assert client.get("/v2").status_code == 200


def test_base_endpoint_without_credentials_challenges(anonymous: httpx.Client) -> None:
    r = anonymous.get("/v2/")
    _assert_challenge(r)
    assert r.headers["docker-distribution-api-version"] == "registry/2.0"


# -- every endpoint demands credentials -----------------------------------------------------

def _requests(repo: str, upload: str) -> list[tuple[str, str, bytes | None]]:
    return [
        ("GET", "/v2/", None),
        ("GET", "/v2/_catalog", None),
        ("GET", f"/v2/{repo}/tags/list", None),
        ("GET", f"/v2/{repo}/manifests/latest", None),
        ("HEAD", f"/v2/{repo}/manifests/latest", None),
        ("PUT", f"/v2/{repo}/manifests/latest", image_manifest(b"{}", [])),
        ("DELETE", f"/v2/{repo}/manifests/latest", None),
        ("GET", f"/v2/{repo}/blobs/{D}", None),
        ("HEAD", f"/v2/{repo}/blobs/{D}", None),
        ("DELETE", f"/v2/{repo}/blobs/{D}", None),
        ("POST", f"/v2/{repo}/blobs/uploads/", None),
        ("POST", f"/v2/{repo}/blobs/uploads/?digest={digest(b'x')}", b"x"),
        ("POST", f"/v2/{repo}/blobs/uploads/?mount={D}&from={repo}", None),
        ("GET", upload, None),
        ("PATCH", upload, b"chunk"),
        ("PUT", f"{upload}?digest={digest(b'chunk')}", b"chunk"),
        ("DELETE", upload, None),
        ("GET", f"/v2/{repo}/referrers/{D}", None),
    ]


@pytest.fixture()
def target(client: httpx.Client) -> tuple[str, str]:
    """An existing repository with a tagged image and an open upload session."""
    repo = unique_repo("auth")
    push_image(client, repo, "latest")
    return repo, start_upload(client, repo)


@pytest.mark.parametrize("authorization", [
    None,
    "wrong-secret",
    "unknown-key",
    "Basic !!!not-base64!!!",
    "Basic " + base64.b64encode(b"no-colon").decode(),
    "Basic",
    "Bearer not-a-token",
    "Bearer",
    "Digest username=x",
    "AWS4-HMAC-SHA256 Credential=x",
], ids=["none", "wrong-secret", "unknown-key", "bad-base64", "no-colon", "empty-basic", "bad-bearer",
        "empty-bearer", "digest-scheme", "sigv4-scheme"])
def test_every_endpoint_requires_valid_credentials(server: ServerProcess, client: httpx.Client,
                                                   target: tuple[str, str], authorization: str | None) -> None:
    if authorization == "wrong-secret":
        authorization = _basic(server.key_id, server.secret + "x")
    elif authorization == "unknown-key":
        authorization = _basic("AKIAUNKNOWNKEY000000", server.secret)
    repo, upload = target
    headers = {"Authorization": authorization} if authorization is not None else {}
    with httpx.Client(base_url=server.url, timeout=30) as c:
        for method, path, body in _requests(repo, upload):
            r = c.request(method, path, content=body, headers=headers)
            assert r.status_code == 401, (method, path, r.status_code, r.text)
            _assert_challenge(r)
    # Nothing was changed by any of the refused requests.
    assert client.get(f"/v2/{repo}/manifests/latest").status_code == 200
    status = client.get(upload)
    assert status.status_code == 204
    assert status.headers["range"].removeprefix("bytes=") == "0-0"


def test_unauthenticated_push_creates_nothing(anonymous: httpx.Client, client: httpx.Client) -> None:
    repo = unique_repo("anon")
    body = image_manifest(b"{}", [])
    assert anonymous.post(f"/v2/{repo}/blobs/uploads/").status_code == 401
    assert anonymous.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest(b"x")},
                          content=b"x").status_code == 401
    assert anonymous.put(f"/v2/{repo}/manifests/v1", content=body,
                         headers={"Content-Type": OCI_MANIFEST}).status_code == 401
    assert_oci_error(client.get(f"/v2/{repo}/tags/list"), 404, "NAME_UNKNOWN")
    assert repo not in client.get("/v2/_catalog").json()["repositories"]


def test_refusal_does_not_reveal_existence(anonymous: httpx.Client, target: tuple[str, str]) -> None:
    repo, _ = target
    known = anonymous.get(f"/v2/{repo}/manifests/latest")
    unknown = anonymous.get(f"/v2/{unique_repo('ghost')}/manifests/latest")
    assert known.status_code == unknown.status_code == 401
    assert known.json()["errors"][0]["code"] == unknown.json()["errors"][0]["code"]


# -- tokens ---------------------------------------------------------------------------------

def test_token_endpoint_and_bearer_access(server: ServerProcess, anonymous: httpx.Client) -> None:
    # The challenge names an absolute token realm the client can reach.
    challenges = anonymous.get("/v2/").headers.get_list("www-authenticate")
    bearer = [c for c in challenges if c.lower().startswith("bearer ")]
    assert bearer, challenges
    realm = re.search(r'realm="([^"]+)"', bearer[0])
    assert realm and realm.group(1).startswith(("http://", "https://"))
    r = anonymous.get(realm.group(1), headers={"Authorization": server.basic_header})
    assert r.status_code == 200, r.text
    body = r.json()
    token = body.get("token") or body.get("access_token")
    assert token
    assert body.get("expires_in", 1) > 0
    assert anonymous.get("/v2/", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    # The same token works as the password of the "AWS" user (docker login with an ECR token).
    assert anonymous.get("/v2/", headers={"Authorization": _basic("AWS", token)}).status_code == 200
    # A tampered token does not.
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    _assert_challenge(anonymous.get("/v2/", headers={"Authorization": f"Bearer {forged}"}))
    _assert_challenge(anonymous.get("/v2/", headers={"Authorization": _basic("AWS", forged)}))


def test_token_endpoint_requires_credentials(anonymous: httpx.Client, server: ServerProcess) -> None:
    _assert_challenge(anonymous.get("/token"))
    _assert_challenge(anonymous.get("/token", headers={"Authorization": _basic(server.key_id, "nope")}))


def test_bearer_token_can_push_and_pull(server: ServerProcess, anonymous: httpx.Client) -> None:
    token = anonymous.get("/token", headers={"Authorization": server.basic_header}).json()["token"]
    with httpx.Client(base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {token}"}) as c:
        repo = unique_repo("bearer")
        d = push_blob(c, repo, b"pushed with a token")
        assert c.get(f"/v2/{repo}/blobs/{d}").content == b"pushed with a token"


# -- unauthenticated operational endpoints --------------------------------------------------

def test_healthz_needs_no_credentials(anonymous: httpx.Client) -> None:
    r = anonymous.get("/healthz")
    assert r.status_code == 200
    assert r.json()["status"] == "ok"


def _request_count(text: str, face: str, method: str, status: str) -> float:
    pattern = re.compile(r'^cargohold_http_requests_total\{([^}]*)\}\s+([0-9.e+]+)$', re.M)
    total = 0.0
    for labels, value in pattern.findall(text):
        found = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if found.get("face") == face and found.get("method") == method and found.get("status") == status:
            total += float(value)
    return total


def test_metrics_count_requests(server: ServerProcess, anonymous: httpx.Client, client: httpx.Client) -> None:
    if server.workers != 1:
        pytest.skip("counters are per worker process")
    r = anonymous.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    assert "# TYPE cargohold_http_requests_total counter" in r.text
    assert "cargohold_http_request_seconds" in r.text
    before = _request_count(r.text, "oci", "GET", "404")
    for _ in range(3):
        client.get(f"/v2/{unique_repo('metrics')}/tags/list")
    after = _request_count(anonymous.get("/metrics").text, "oci", "GET", "404")
    assert after - before == 3


def test_unknown_top_level_path_is_404(anonymous: httpx.Client) -> None:
    r = anonymous.get(f"/no-such-{uuid.uuid4().hex}")
    assert r.status_code == 404
    assert r.json()["errors"]


def test_made_up_methods_do_not_mint_metric_labels(server: ServerProcess, anonymous: httpx.Client) -> None:
    if server.workers != 1:
        pytest.skip("counters are per worker process")
    methods = [f"X{uuid.uuid4().hex[:8].upper()}" for _ in range(3)]
    for method in methods:  # not HTTP methods at all: the server answers 501 itself
        assert anonymous.request(method, "/v2/").status_code == 501
    anonymous.request("PROPFIND", "/v2/")  # an HTTP method the registry does not use: counted as OTHER
    text = anonymous.get("/metrics").text
    assert not any(method in text for method in methods)
    assert "PROPFIND" not in text
    assert 'method="OTHER"' in text
