import datetime
from typing import Any

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from cargohold.errors import Kind, RegistryError
from cargohold.http.ecr.sigv4 import verify

KEY, SECRET = "AKIAUNITTEST", "unit-secret"
BODY = b'{"repositoryName": "x"}'


def signed(region: str = "us-east-1", service: str = "ecr", secret: str = SECRET,
           body: bytes = BODY) -> dict[str, str]:
    request = AWSRequest(method="POST", url="http://127.0.0.1:5000/", data=body, headers={
        "X-Amz-Target": "AmazonEC2ContainerRegistry_V20150921.CreateRepository",
        "Content-Type": "application/x-amz-json-1.1"})
    SigV4Auth(Credentials(KEY, secret), service, region).add_auth(request)
    request.headers["host"] = "127.0.0.1:5000"
    return {k.lower(): v for k, v in request.headers.items()}


def check(headers: dict[str, str], body: bytes = BODY, now: float | None = None, **kw: Any) -> Any:
    now = datetime.datetime.now(datetime.UTC).timestamp() if now is None else now
    return verify("POST", "/", "", headers, body, {KEY: SECRET}.get, now=now, region="us-east-1",
                  services=("ecr",), **kw)


def kind_of(headers: dict[str, str], body: bytes = BODY, now: float | None = None) -> Kind:
    with pytest.raises(RegistryError) as exc:
        check(headers, body, now)
    return exc.value.kind


def test_valid_signature() -> None:
    assert check(signed()).access_key_id == KEY


def test_errors() -> None:
    assert kind_of({}) is Kind.MISSING_AUTH
    assert kind_of(signed(secret="wrong")) is Kind.SIGNATURE_INVALID
    assert kind_of(signed(region="eu-west-1")) is Kind.SIGNATURE_INVALID
    assert kind_of(signed(service="s3")) is Kind.SIGNATURE_INVALID
    assert kind_of(signed(), body=b'{"repositoryName": "y"}') is Kind.SIGNATURE_INVALID
    headers = signed()
    headers["authorization"] = headers["authorization"].replace(KEY, "AKIAOTHER")
    assert kind_of(headers) is Kind.UNRECOGNIZED_CLIENT
    headers = signed()
    headers["authorization"] = "AWS4-HMAC-SHA256 Credential=x"
    assert kind_of(headers) is Kind.INCOMPLETE_SIGNATURE


def test_clock_skew_window() -> None:
    """The server's clock moves instead of the client's: same window either way."""
    headers = signed()
    now = datetime.datetime.now(datetime.UTC).timestamp()
    assert check(headers, now=now + 4 * 60)
    assert check(headers, now=now - 4 * 60)
    with pytest.raises(RegistryError) as exc:
        check(headers, now=now + 6 * 60)
    assert exc.value.kind is Kind.SIGNATURE_INVALID and "Signature expired" in exc.value.message
    assert kind_of(headers, now=now - 6 * 60) is Kind.SIGNATURE_INVALID
