"""Fixtures for the console suite: Debian's Chromium driven by Playwright against the live server.

Never `playwright install`: the browser is /usr/bin/chromium (apt-get install chromium). Without
it (or without the playwright package) the browser tests are skipped, and fail instead when
CARGOHOLD_REQUIRE_CLIENTS=1, as the real-client tests do. Screenshots go to artifacts/console/.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import httpx
import pytest

from tests.api.helpers import Pushed, push_image, push_index
from tests.support.clients import unavailable
from tests.support.server import ServerProcess

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "console"
REGION = "us-east-1"
PULL_ONLY_POLICY = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow",
    "Action": ["ecr:GetAuthorizationToken", "ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer",
               "ecr:BatchGetImage", "ecr:DescribeRepositories", "ecr:DescribeImages", "ecr:ListImages"],
    "Resource": "*"}]}


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is not installed (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright package is not installed")
        raise
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture()
def page(browser: Any, server: ServerProcess) -> Iterator[Any]:
    context = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in(page: Any, key_id: str, secret: str, path: str = "/console/") -> None:
    page.goto(path)
    page.get_by_label("Access key ID").fill(key_id)
    page.get_by_label("Secret access key or login token").fill(secret)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def aws(service: str, server: ServerProcess, key_id: str | None = None, secret: str | None = None) -> Any:
    cfg = botocore.config.Config(retries={"total_max_attempts": 1}, connect_timeout=10, read_timeout=60)
    return boto3.client(service, endpoint_url=server.url, region_name=REGION,
                        aws_access_key_id=key_id or server.key_id, aws_secret_access_key=secret or server.secret,
                        config=cfg)


def login_token(server: ServerProcess) -> str:
    """What `aws ecr get-login-password` prints."""
    data = aws("ecr", server).get_authorization_token()["authorizationData"][0]
    return base64.b64decode(data["authorizationToken"]).decode().partition(":")[2]


@dataclass
class Gallery:
    """A repository with real pushed content: tagged images, an untagged one, an index, a referrer."""

    repo: str
    v1: Pushed
    v2: Pushed
    untagged: Pushed
    index: Pushed
    children: list[Pushed]
    sbom: Pushed


@pytest.fixture(scope="package")
def gallery(server: ServerProcess) -> Gallery:
    repo = f"console/app-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=server.url, auth=server.auth, timeout=60) as client:
        v1 = push_image(client, repo, "v1", layers=2)
        v2 = push_image(client, repo, "v2", layers=3)
        untagged = push_image(client, repo, None, layers=1)
        children = [push_image(client, repo, None, layers=1) for _ in range(2)]
        index = push_index(client, repo, children, "multi")
        sbom = push_image(client, repo, None, layers=1, artifactType="application/vnd.example.sbom+json",
                          subject=v1.descriptor())
    return Gallery(repo, v1, v2, untagged, index, children, sbom)


@dataclass(frozen=True)
class User:
    name: str
    key_id: str
    secret: str


@pytest.fixture(scope="package")
def pull_only_user(server: ServerProcess) -> User:
    """An IAM user whose only policy is a managed pull-only one (made with boto3's IAM client)."""
    iam = aws("iam", server)
    name = f"console-reader-{uuid.uuid4().hex[:6]}"
    iam.create_user(UserName=name)
    policy = iam.create_policy(PolicyName=f"{name}-pull-only", PolicyDocument=json.dumps(PULL_ONLY_POLICY))
    arn = policy["Policy"]["Arn"]
    iam.attach_user_policy(UserName=name, PolicyArn=arn)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return User(name, key["AccessKeyId"], key["SecretAccessKey"])
