"""An in-process registry on a fixed clock, reached through Starlette's TestClient from any client address."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from cargohold.app import CargoholdApp, Services, build_services
from cargohold.config import Config

ACCOUNT = "000000000000"
ROOT_ARN = f"arn:aws:iam::{ACCOUNT}:root"
KEY_ID = "AKIAUSAGETEST0000001"
SECRET = "usage-test-secret-0123456789abcdefghijkl"
MIB = 1 << 20
GB = 1 << 30


def ms(when: str) -> int:
    """Milliseconds of an ISO-8601 UTC instant, e.g. 2024-03-01T00:30."""
    return int(datetime.datetime.fromisoformat(when).replace(tzinfo=datetime.UTC).timestamp()) * 1000


class FixedClock:
    def __init__(self, when: str) -> None:
        self.now = ms(when) / 1000

    def __call__(self) -> float:
        return self.now

    def set(self, when: str) -> None:
        self.now = ms(when) / 1000


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class Client:
    """A synchronous HTTP client for the ASGI app in process, seen as coming from `address`."""

    def __init__(self, app: CargoholdApp, address: str, auth: tuple[str, str] | None) -> None:
        self.app, self.address, self.auth = app, address, auth

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, client=(self.address, 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://registry.test",
                                         auth=self.auth) as client:
                return await client.request(method, url, **kwargs)
        return asyncio.run(go())

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def head(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("HEAD", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)


@dataclass
class Registry:
    services: Services
    app: CargoholdApp
    clock: FixedClock

    def client(self, address: str = "127.0.0.1", *, auth: bool = True) -> Client:
        return Client(self.app, address, (KEY_ID, SECRET) if auth else None)

    def push_blob(self, repo: str, data: bytes, address: str = "127.0.0.1") -> str:
        digest = sha256(data)
        r = self.client(address).post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data)
        assert r.status_code == 201, r.text
        return digest

    def report(self, months: int = 1) -> dict[str, Any]:
        assert self.services.metering is not None and self.services.usage is not None
        self.services.metering.flush()
        return self.services.usage.report(ACCOUNT, months)


def make_registry(tmp_path: Path, **settings: Any) -> Iterator[Registry]:
    config = Config(data_dir=str(tmp_path / "data"), gc_interval=0, lifecycle_interval=0, audit=False,
                    metering_flush_seconds=0, metering_snapshot_seconds=0, **settings)
    clock = FixedClock("2024-03-01T00:00")
    services = build_services(config, clock=clock)
    services.identity.ensure_root_credentials(config.data_path, KEY_ID, SECRET)
    try:
        yield Registry(services, CargoholdApp(services), clock)
    finally:
        services.meta.engine.dispose()


@pytest.fixture()
def registry(tmp_path: Path) -> Iterator[Registry]:
    yield from make_registry(tmp_path)


def line(report: dict[str, Any], month: str, repository: str) -> dict[str, Any]:
    for entry in report["months"]:
        if entry["month"] == month:
            for found in entry["repositories"]:
                if found["repository"] == repository:
                    return dict(found)
            raise AssertionError(f"{repository} not in {month}: {entry['repositories']}")
    raise AssertionError(f"{month} not in the report")
