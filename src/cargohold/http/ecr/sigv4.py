"""AWS Signature Version 4, header form, verified with the error texts AWS clients print."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import quote, unquote

from cargohold.errors import Kind, RegistryError

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_SKEW_SECONDS = 5 * 60
_AUTH_RE = re.compile(
    r"AWS4-HMAC-SHA256\s+Credential=(?P<credential>[^,\s]+)\s*,\s*SignedHeaders=(?P<signed>[^,\s]+)\s*,"
    r"\s*Signature=(?P<signature>[0-9a-f]{64})\s*")


@dataclass(frozen=True)
class SignedRequest:
    access_key_id: str
    date: str
    region: str
    service: str
    signed_headers: list[str]
    signature: str
    amz_date: str


def parse_authorization(header: str | None) -> SignedRequest | None:
    """The parsed Authorization header, or None when the request is not SigV4-signed at all."""
    if not header:
        return None
    if not header.startswith(ALGORITHM):
        raise RegistryError(Kind.INCOMPLETE_SIGNATURE,
                            f"Authorization header requires '{ALGORITHM}' signing algorithm.")
    m = _AUTH_RE.fullmatch(header.strip())
    if m is None:
        raise RegistryError(Kind.INCOMPLETE_SIGNATURE,
                            "Authorization header requires 'Credential', 'Signature' and "
                            "'SignedHeaders' parameters.")
    parts = m["credential"].split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise RegistryError(Kind.INCOMPLETE_SIGNATURE,
                            "Credential must have exactly 5 slash-delimited elements, e.g. "
                            "keyid/date/region/service/term")
    return SignedRequest(parts[0], parts[1], parts[2], parts[3], m["signed"].split(";"),
                         m["signature"], "")


def _canonical_query(query: str) -> str:
    pairs = []
    for item in query.split("&") if query else []:
        key, _, value = item.partition("=")
        pairs.append((quote(unquote(key), safe="-_.~"), quote(unquote(value), safe="-_.~")))
    return "&".join(f"{k}={v}" for k, v in sorted(pairs))


def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    key = hmac.new(f"AWS4{secret}".encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def verify(method: str, path: str, query: str, headers: Mapping[str, str], body: bytes,
           secret_for: Callable[[str], str | None], *, now: float, region: str,
           services: tuple[str, ...]) -> SignedRequest:
    """Verify a request; returns its parsed signature. Raises RegistryError as AWS would."""
    signed = parse_authorization(headers.get("authorization"))
    if signed is None:
        raise RegistryError(Kind.MISSING_AUTH, "Missing Authentication Token")
    amz_date = headers.get("x-amz-date", "")
    try:
        when = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
    except ValueError:
        raise RegistryError(Kind.INCOMPLETE_SIGNATURE,
                            "Authorization header requires existence of either a 'X-Amz-Date' or a "
                            "'Date' header.") from None
    secret = secret_for(signed.access_key_id)
    if secret is None:
        raise RegistryError(Kind.UNRECOGNIZED_CLIENT, "The security token included in the request is invalid.")
    if signed.date != amz_date[:8]:
        raise RegistryError(Kind.SIGNATURE_INVALID,
                            f"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of "
                            f"date from HTTP: '{signed.date}' != '{amz_date[:8]}', from '{amz_date}'.")
    if signed.region != region:
        raise RegistryError(Kind.SIGNATURE_INVALID,
                            f"Credential should be scoped to a valid region, not '{signed.region}'. ")
    if signed.service not in services:
        raise RegistryError(Kind.SIGNATURE_INVALID,
                            f"Credential should be scoped to correct service: '{services[0]}'. ")
    skew = when.timestamp() - now
    if abs(skew) > MAX_SKEW_SECONDS:
        stamp = datetime.datetime.fromtimestamp(now, datetime.UTC)
        fmt = "%Y%m%dT%H%M%SZ"
        bound = stamp - datetime.timedelta(seconds=MAX_SKEW_SECONDS) if skew < 0 \
            else stamp + datetime.timedelta(seconds=MAX_SKEW_SECONDS)
        relation = "earlier" if skew < 0 else "later"
        sign = "-" if skew < 0 else "+"
        raise RegistryError(Kind.SIGNATURE_INVALID,
                            f"Signature expired: {amz_date} is now {relation} than {bound.strftime(fmt)} "
                            f"({stamp.strftime(fmt)} {sign} 5 min.)")
    if "host" not in signed.signed_headers:
        raise RegistryError(Kind.SIGNATURE_INVALID, "'Host' must be a 'SignedHeader' in the AWS Authorization.")
    canonical_headers = "".join(
        f"{name}:{' '.join(headers.get(name, '').split())}\n" for name in signed.signed_headers)
    body_hash = hashlib.sha256(body).hexdigest()
    payload_hash = headers.get("x-amz-content-sha256") or body_hash
    if payload_hash not in (body_hash, "UNSIGNED-PAYLOAD"):
        raise RegistryError(Kind.SIGNATURE_INVALID,
                            "The provided 'x-amz-content-sha256' header does not match what was computed.")
    canonical_path = quote(path or "/", safe="/-_.~")
    canonical = "\n".join([method, canonical_path, _canonical_query(query), canonical_headers,
                           ";".join(signed.signed_headers), payload_hash])
    scope = f"{signed.date}/{signed.region}/{signed.service}/aws4_request"
    to_sign = "\n".join([ALGORITHM, amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _signing_key(secret, signed.date, signed.region, signed.service)
    expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signed.signature):
        raise RegistryError(
            Kind.SIGNATURE_INVALID,
            "The request signature we calculated does not match the signature you provided. Check your "
            "AWS Secret Access Key and signing method. Consult the service documentation for details.")
    return SignedRequest(signed.access_key_id, signed.date, signed.region, signed.service,
                         signed.signed_headers, signed.signature, amz_date)
