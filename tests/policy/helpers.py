"""Helpers for the policy suite: AWS clients, IAM users with keys, the CLIs, tiny docker images."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import boto3
import botocore.config
import pytest
from botocore.exceptions import ClientError

from tests.support.dockerd import DockerCli
from tests.support.server import ServerProcess

HOME = "000000000000"
OTHER = "111122223333"
REGION = "us-east-1"
AWS = "/usr/bin/aws"  # Debian's AWS CLI v2 (a v1 shim may come first on PATH)
VERSION = "2012-10-17"
T = TypeVar("T")

# The classic least-privilege pull policy from the ECR documentation.
PULL_ACTIONS = ["ecr:GetAuthorizationToken", "ecr:BatchCheckLayerAvailability", "ecr:GetDownloadUrlForLayer",
                "ecr:BatchGetImage"]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": VERSION, "Statement": list(statements)})


def allow(actions: list[str] | str, resource: str = "*", **extra: Any) -> dict[str, Any]:
    return {"Effect": "Allow", "Action": actions, "Resource": resource, **extra}


def aws_client(service: str, server: ServerProcess | str, key_id: str | None = None,
               secret: str | None = None) -> Any:
    """A boto3 client for the server (or a URL of one of its listeners); no retries."""
    url = server if isinstance(server, str) else server.url
    if key_id is None:
        assert isinstance(server, ServerProcess)
        key_id, secret = server.key_id, server.secret
    cfg = botocore.config.Config(retries={"total_max_attempts": 1}, connect_timeout=10, read_timeout=60)
    return boto3.client(service, endpoint_url=url, region_name=REGION, aws_access_key_id=key_id,
                        aws_secret_access_key=secret, config=cfg)


@contextmanager
def raises(code: str, match: str | None = None) -> Iterator[pytest.ExceptionInfo[ClientError]]:
    """Expect a boto3 ClientError with this code (and a message containing `match`)."""
    with pytest.raises(ClientError) as info:
        yield info
    error = info.value.response["Error"]
    assert error["Code"] == code, info.value.response
    if match is not None:
        assert match in error["Message"], error["Message"]


@dataclass(frozen=True)
class User:
    name: str
    arn: str
    key_id: str
    secret: str
    account: str = HOME

    def client(self, service: str, server: ServerProcess | str) -> Any:
        return aws_client(service, server, self.key_id, self.secret)


def new_user(iam: Any, prefix: str = "user", document: str | None = None, policy_name: str = "access") -> User:
    """An IAM user with an access key and, when given, one inline policy."""
    name = unique(prefix)
    created = iam.create_user(UserName=name)["User"]
    key = iam.create_access_key(UserName=name)["AccessKey"]
    if document is not None:
        iam.put_user_policy(UserName=name, PolicyName=policy_name, PolicyDocument=document)
    return User(name, created["Arn"], key["AccessKeyId"], key["SecretAccessKey"], created["Arn"].split(":")[4])


def cargohold(*args: str, check: bool = True, subprocess_: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the `cargohold` command line beside the running server, on its data directory.

    In this process through typer's runner by default (a new interpreter costs seconds per call
    on a busy machine); subprocess_=True runs `python -m cargohold` for real."""
    cleared = {k: None for k in os.environ if k.startswith("CARGOHOLD_")}
    if subprocess_:
        env = {k: v for k, v in os.environ.items() if k not in cleared}
        proc = subprocess.run([sys.executable, "-m", "cargohold", *args], capture_output=True, text=True,
                              timeout=120, env=env, stdin=subprocess.DEVNULL)
    else:
        from typer.testing import CliRunner

        from cargohold.cli import app
        result = CliRunner().invoke(app, list(args), env=cleared, catch_exceptions=False)
        proc = subprocess.CompletedProcess(["cargohold", *args], result.exit_code, result.stdout, result.stderr)
    if check and proc.returncode != 0:
        raise AssertionError(f"cargohold {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def create_account(server: ServerProcess, account: str) -> tuple[str, str]:
    """`cargohold account create` (a real process) on the server's data directory: the new account's root key."""
    out = cargohold("account", "create", account, "--data-dir", str(server.data_dir), subprocess_=True).stdout
    fields = {k.strip(): v.strip() for k, _, v in (line.partition("=") for line in out.splitlines()) if v}
    return fields["aws_access_key_id"], fields["aws_secret_access_key"]


class AwsCli:
    """/usr/bin/aws with a private, empty configuration and the given credentials."""

    def __init__(self, home: Path, key_id: str, secret: str) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        self.env.update({
            "HOME": str(home), "AWS_CONFIG_FILE": str(home / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
            "AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret, "AWS_DEFAULT_REGION": REGION,
            "AWS_PAGER": "", "AWS_CLI_AUTO_PROMPT": "off", "AWS_EC2_METADATA_DISABLED": "true",
        })

    def __call__(self, url: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([AWS, *args, "--endpoint-url", url], env=self.env, capture_output=True, text=True,
                              timeout=120, stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise AssertionError(f"aws {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc


def need_aws_cli() -> None:
    from tests.support.clients import unavailable
    unavailable(None if os.access(AWS, os.X_OK) else f"{AWS} (AWS CLI v2) is not installed")


def build_tiny(docker: DockerCli, ref: str, context: Path) -> None:
    """A one-layer image FROM scratch with a unique file: every build has a layer new to the registry."""
    context.mkdir(parents=True)
    (context / "id.txt").write_text(f"{ref} {uuid.uuid4().hex}\n")
    (context / "Dockerfile").write_text("FROM scratch\nCOPY id.txt /id.txt\nCMD [\"/nothing\"]\n")
    docker("build", "-q", "-t", ref, str(context))


def docker_login(docker: DockerCli, address: str, username: str, password: str) -> None:
    out = docker("login", address, "-u", username, "--password-stdin", input=password)
    assert "Login Succeeded" in out.stdout, out.stdout


def push_as_root(dockerd_cli: DockerCli, server: ServerProcess, repo: str, tag: str, context: Path) -> str:
    """Root builds and pushes a tiny image, then drops it locally so that a later pull fetches its blobs."""
    ref = f"{server.address}/{repo}:{tag}"
    docker_login(dockerd_cli, server.address, server.key_id, server.secret)
    build_tiny(dockerd_cli, ref, context)
    dockerd_cli("push", ref)
    dockerd_cli("rmi", "-f", ref)
    return ref


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def put_small_image(ecr: Any, repo: str, tag: str) -> str:
    """Push a one-layer image through the ECR API only (no docker); returns its digest."""
    layer = os.urandom(64)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": [sha256(layer)]}}).encode()
    for blob in (config, layer):
        upload = ecr.initiate_layer_upload(repositoryName=repo)["uploadId"]
        ecr.upload_layer_part(repositoryName=repo, uploadId=upload, partFirstByte=0, partLastByte=len(blob) - 1,
                              layerPartBlob=blob)
        ecr.complete_layer_upload(repositoryName=repo, uploadId=upload, layerDigests=[sha256(blob)])
    media = "application/vnd.docker.distribution.manifest.v2+json"
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": media,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": sha256(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": sha256(layer),
                    "size": len(layer)}]})
    image = ecr.put_image(repositoryName=repo, imageManifest=manifest, imageManifestMediaType=media, imageTag=tag)
    return str(image["image"]["imageId"]["imageDigest"])


def wait_for(probe: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.25) -> T:
    """Poll until probe() returns something truthy (e.g. audit events, flushed ~1 s after a decision)."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing after {timeout:.0f}s")
        time.sleep(interval)


def wait_for_count(fetch: Callable[[], list[T]], count: int, timeout: float = 10.0) -> list[T]:
    """Poll fetch() until it returns at least `count` items; those items."""
    def probe() -> list[T] | None:
        got = fetch()
        return got if len(got) >= count else None
    return wait_for(probe, timeout)
