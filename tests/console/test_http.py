"""The console over plain HTTP (no browser): redirects, cookies, CSRF, headers, errors."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest

from tests.console.conftest import Gallery
from tests.support.server import ServerProcess, cleanup, temp_server

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture()
def anon(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def signed_in(client: httpx.Client, server: ServerProcess) -> str:
    """Sign in through the form; returns a CSRF token for later posts."""
    form = client.get("/console/signin")
    token = CSRF.search(form.text)
    assert token, form.text
    r = client.post("/console/signin", data={"csrf_token": token[1], "access_key_id": server.key_id,
                                             "secret": server.secret, "next": "/console/usage"})
    assert r.status_code == 303 and r.headers["location"] == "/console/usage", r.text
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/console" in cookie
    assert "Secure" not in cookie  # plain HTTP here; Secure is set when served over TLS
    page = client.get("/console/repositories")
    match = CSRF.search(page.text)  # the sign-out form's, on every page of a signed-in person
    assert page.status_code in (200, 403) and match, page.text
    return match[1]


def test_unauthenticated_pages_redirect_to_sign_in(anon: httpx.Client, gallery: Gallery) -> None:
    r = anon.get(f"/console/repositories/{gallery.repo}?after=x")
    assert r.status_code == 303
    assert r.headers["location"].startswith("/console/signin?next=")
    assert "%2Fconsole%2Frepositories%2F" in r.headers["location"]
    assert anon.get("/console").headers["location"] == "/console/repositories"


def test_sign_in_never_redirects_off_site(anon: httpx.Client, server: ServerProcess) -> None:
    form = anon.get("/console/signin", params={"next": "https://evil.example/"})
    assert "evil.example" not in form.text
    token = CSRF.search(form.text)
    assert token
    r = anon.post("/console/signin", data={"csrf_token": token[1], "access_key_id": server.key_id,
                                           "secret": server.secret, "next": "//evil.example/x"})
    assert r.headers["location"] == "/console/repositories"


def test_forms_need_the_csrf_token(anon: httpx.Client, server: ServerProcess, gallery: Gallery) -> None:
    token = signed_in(anon, server)
    target = f"/console/repositories/{gallery.repo}/-/delete"
    r = anon.post(target, data={"confirm": "delete"})
    assert r.status_code == 403 and "This form has expired" in r.text
    r = anon.post(target, data={"confirm": "delete", "csrf_token": token + "x"})
    assert r.status_code == 403
    r = anon.post(target, data={"confirm": "delete", "csrf_token": token},
                  headers={"Origin": "https://evil.example"})
    assert r.status_code == 403
    r = anon.post(target, data={"confirm": "nope", "csrf_token": token})
    assert r.status_code == 400  # right token, but not confirmed: nothing deleted
    # The sign-in form has its own token (a double-submit cookie).
    with httpx.Client(base_url=server.url, timeout=30) as fresh:
        r = fresh.post("/console/signin", data={"access_key_id": server.key_id, "secret": server.secret})
        assert r.status_code == 403


def test_pages_send_security_headers_and_errors_are_pages(anon: httpx.Client, server: ServerProcess) -> None:
    signed_in(anon, server)
    r = anon.get("/console/repositories")
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    assert r.headers["cache-control"] == "no-store"
    missing = anon.get("/console/repositories/console/does-not-exist-here")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("text/html")
    assert "does not exist" in missing.text and "<h1>Not found</h1>" in missing.text
    assert anon.get("/console/no-such-page").status_code == 404
    assert anon.get("/console/static/console.css").headers["content-type"].startswith("text/css")
    assert anon.get("/console/static/../pages.py").status_code == 404


def test_a_deactivated_key_ends_the_session(anon: httpx.Client, server: ServerProcess) -> None:
    from tests.console.conftest import aws

    iam = aws("iam", server)
    name = "console-temp-user"
    iam.create_user(UserName=name)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    user = ServerProcess(server.data_dir, server.host, server.port, key_id=key["AccessKeyId"],
                         secret=key["SecretAccessKey"])
    signed_in(anon, user)
    iam.update_access_key(UserName=name, AccessKeyId=key["AccessKeyId"], Status="Inactive")
    r = anon.get("/console/repositories")
    assert r.status_code == 303 and r.headers["location"].startswith("/console/signin")


def test_session_cookie_is_secure_over_tls() -> None:
    server = temp_server(scheme="https", extra_args=["--tls-self-signed"]).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30, verify=False) as client:
            form = client.get("/console/signin")
            assert "Secure" in form.headers["set-cookie"]  # the sign-in form's cookie too
            token = CSRF.search(form.text)
            assert token
            r = client.post("/console/signin", data={"csrf_token": token[1], "access_key_id": server.key_id,
                                                     "secret": server.secret})
            assert r.status_code == 303
            assert "Secure" in r.headers["set-cookie"] and "HttpOnly" in r.headers["set-cookie"]
            csrf = CSRF.search(client.get("/console/create-repository").text)
            assert csrf
            r = client.post("/console/create-repository", data={"csrf_token": csrf[1], "name": "tls/app"})
            assert r.status_code == 303, r.text
            page = client.get("/console/repositories/tls/app/-/push-commands")
            assert f"--endpoint-url {server.url} |" in page.text
    finally:
        cleanup(server)


def test_signing_out_revokes_the_session_token(anon: httpx.Client, server: ServerProcess) -> None:
    """A copied cookie is worthless after sign-out: the token behind it is revoked server-side."""
    csrf = signed_in(anon, server)
    token = anon.cookies.get("cargohold_console")
    assert token
    r = anon.post("/console/signout", data={"csrf_token": csrf})
    assert r.status_code == 303 and r.headers["location"].startswith("/console/signin")
    with httpx.Client(base_url=server.url, timeout=30, cookies={"cargohold_console": token}) as thief:
        r = thief.get("/console/repositories")
        assert r.status_code == 303 and r.headers["location"].startswith("/console/signin")
    r = httpx.get(f"{server.url}/v2/", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 401
    signed_in(anon, server)  # signing in again gets a fresh token that works
    assert anon.get("/console/repositories").status_code in (200, 403)
