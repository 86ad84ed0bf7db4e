"""Authentication on the ECR face: SigV4 verification errors and GetAuthorizationToken login tokens."""

from __future__ import annotations

import base64
import datetime
import json
from typing import Any

import botocore
import httpx
import pytest

from tests.ecr.helpers import (
    ACCOUNT,
    OTHER_ACCOUNT,
    ecr_client,
    ecr_error,
    raises,
    signed_request,
    unsigned_request,
)
from tests.support.server import ServerProcess

# -- SigV4 ----------------------------------------------------------------------------------


def test_signed_request_helper_works(server: ServerProcess) -> None:
    r = signed_request(server, "DescribeRegistry", {})
    assert r.status_code == 200, r.text
    assert r.json()["registryId"] == ACCOUNT


def test_unsigned_request(server: ServerProcess) -> None:
    message = ecr_error(unsigned_request(server, "DescribeRepositories"), "MissingAuthenticationTokenException", 403)
    assert message == "Missing Authentication Token"
    unsigned = ecr_client(server, signature_version=botocore.UNSIGNED)
    with raises("MissingAuthenticationTokenException"):
        unsigned.describe_repositories()


def test_bad_signature(server: ServerProcess) -> None:
    with raises("InvalidSignatureException", "The request signature we calculated does not match"):
        ecr_client(server, secret="not-the-secret").describe_repositories()
    r = signed_request(server, "DescribeRepositories", {}, secret="wrong")
    ecr_error(r, "InvalidSignatureException")


def test_body_changed_after_signing(server: ServerProcess) -> None:
    good = signed_request(server, "DescribeRepositories", {})
    assert good.status_code == 200
    request = good.request
    r = httpx.post(str(request.url), content=b'{"maxResults": 1}', headers={
        k: v for k, v in request.headers.items() if k.lower() != "content-length"})
    ecr_error(r, "InvalidSignatureException")


def test_unknown_access_key(server: ServerProcess) -> None:
    with raises("UnrecognizedClientException", "The security token included in the request is invalid"):
        ecr_client(server, key_id="AKIANOSUCHKEY0000000").describe_repositories()


def test_wrong_region_in_scope(server: ServerProcess) -> None:
    with raises("InvalidSignatureException", "Credential should be scoped to a valid region"):
        ecr_client(server, region="eu-west-1").describe_repositories()


def test_wrong_service_in_scope(server: ServerProcess) -> None:
    message = ecr_error(signed_request(server, "DescribeRepositories", {}, service="s3"),
                        "InvalidSignatureException")
    assert "Credential should be scoped to correct service: 'ecr'" in message


@pytest.mark.parametrize("minutes", [-6, 6, -60 * 24])
def test_request_time_skewed(server: ServerProcess, minutes: int) -> None:
    when = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=minutes)
    message = ecr_error(signed_request(server, "DescribeRepositories", {}, when=when), "InvalidSignatureException")
    assert message.startswith("Signature expired: "), message
    assert when.strftime("%Y%m%dT%H%M%SZ") in message
    assert ("earlier" if minutes < 0 else "later") in message


@pytest.mark.parametrize("minutes", [-4, 4])
def test_request_time_within_skew(server: ServerProcess, minutes: int) -> None:
    when = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=minutes)
    r = signed_request(server, "DescribeRegistry", {}, when=when)
    assert r.status_code == 200, r.text


def test_malformed_authorization_headers(server: ServerProcess) -> None:
    four_part_scope = "Credential=AKIA/20240101/us-east-1/ecr, SignedHeaders=host, Signature=" + "0" * 64
    for header in ("AWS4-HMAC-SHA256 Credential=x", "Basic Zm9vOmJhcg==", f"AWS4-HMAC-SHA256 {four_part_scope}"):
        r = unsigned_request(server, "DescribeRepositories", headers={"Authorization": header,
                                                                        "X-Amz-Date": "20240101T000000Z"})
        ecr_error(r, "IncompleteSignatureException")


# -- GetAuthorizationToken ------------------------------------------------------------------

def _token(ecr: Any, **kwargs: Any) -> dict[str, Any]:
    data: list[dict[str, Any]] = ecr.get_authorization_token(**kwargs)["authorizationData"]
    assert len(data) >= 1
    return data[0]


def test_get_authorization_token(ecr: Any, server: ServerProcess) -> None:
    before = datetime.datetime.now(datetime.UTC)
    data = _token(ecr)
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    assert user == "AWS" and password
    assert data["proxyEndpoint"] == server.url
    expires = data["expiresAt"]
    assert abs((expires - before).total_seconds() - 12 * 3600) < 60
    r = httpx.get(f"{server.url}/v2/", auth=("AWS", password), timeout=30)
    assert r.status_code == 200, r.text
    # Each login gets a fresh token; both work.
    other = base64.b64decode(_token(ecr)["authorizationToken"]).decode().partition(":")[2]
    assert other != password
    assert httpx.get(f"{server.url}/v2/", auth=("AWS", other), timeout=30).status_code == 200


def test_get_authorization_token_per_registry(ecr: Any) -> None:
    data = ecr.get_authorization_token(registryIds=[ACCOUNT, ACCOUNT])["authorizationData"]
    assert len(data) == 2


def test_tampered_token_is_refused(ecr: Any, server: ServerProcess) -> None:
    password = base64.b64decode(_token(ecr)["authorizationToken"]).decode().partition(":")[2]
    payload, dot, signature = password.rpartition(".")
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    forged_payload = base64.urlsafe_b64encode(json.dumps({"k": server.key_id, "e": 4102444800}).encode()).decode()
    for bad in (payload + dot + flipped, forged_payload + dot + signature, password[:-5], "", "x" * 40):
        r = httpx.get(f"{server.url}/v2/", auth=("AWS", bad), timeout=30)
        assert r.status_code == 401, (bad, r.status_code, r.text)
        assert r.json()["errors"][0]["code"] == "UNAUTHORIZED"
        assert "www-authenticate" in r.headers
    # The token is a password for user AWS only.
    assert httpx.get(f"{server.url}/v2/", auth=(server.key_id, password), timeout=30).status_code == 401


def test_registry_id_of_another_account_in_token_request(server: ServerProcess) -> None:
    # A token for another registry still authenticates as the caller, to this server's registry.
    data = ecr_client(server).get_authorization_token(registryIds=[OTHER_ACCOUNT])["authorizationData"]
    assert len(data) == 1
