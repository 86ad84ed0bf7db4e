"""The real AWS CLI v2 against the ECR face (--endpoint-url), with a private, empty configuration."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ecr.helpers import ACCOUNT, build_image, sha256, unique_name, upload_layer
from tests.support.server import ServerProcess

AWS = "/usr/bin/aws"  # Debian's awscli 2.x, not a v1 shim that may come first on PATH

pytestmark = [
    pytest.mark.clients,
    pytest.mark.skipif(not os.access(AWS, os.X_OK), reason=f"{AWS} (AWS CLI v2) is not installed"),
]

AwsCli = Callable[..., subprocess.CompletedProcess[str]]


def _version() -> str:
    return subprocess.run([AWS, "--version"], capture_output=True, text=True, timeout=60).stdout


@pytest.fixture(scope="module")
def aws_env(server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("aws-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({
        "HOME": str(home), "AWS_CONFIG_FILE": str(home / "config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
        "AWS_ACCESS_KEY_ID": server.key_id, "AWS_SECRET_ACCESS_KEY": server.secret,
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_PAGER": "", "AWS_CLI_AUTO_PROMPT": "off",
        "AWS_EC2_METADATA_DISABLED": "true",
    })
    return env


@pytest.fixture()
def aws(server: ServerProcess, aws_env: dict[str, str]) -> AwsCli:
    def run(*args: str, env: dict[str, str] | None = None, check: bool = True,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([AWS, *args, "--endpoint-url", server.url], env={**aws_env, **(env or {})},
                              capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, cwd=cwd)
        if check and proc.returncode != 0:
            raise AssertionError(f"aws {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc
    return run


def _json(proc: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(proc.stdout)


def test_cli_is_v2() -> None:
    assert _version().startswith("aws-cli/2."), _version()


def test_create_and_describe_repository(aws: AwsCli, server: ServerProcess) -> None:
    name = unique_name("cli")
    created = _json(aws("ecr", "create-repository", "--repository-name", name, "--image-tag-mutability", "IMMUTABLE",
                        "--image-scanning-configuration", "scanOnPush=true", "--tags", "Key=team,Value=cli",
                        "--output", "json"))["repository"]
    assert created["repositoryName"] == name
    assert created["repositoryUri"] == f"{server.address}/{name}"
    assert created["imageTagMutability"] == "IMMUTABLE"
    assert created["imageScanningConfiguration"] == {"scanOnPush": True}
    described = _json(aws("ecr", "describe-repositories", "--repository-names", name, "--output", "json"))
    assert described["repositories"] == [created]
    tags = _json(aws("ecr", "list-tags-for-resource", "--resource-arn", created["repositoryArn"], "--output", "json"))
    assert tags["tags"] == [{"Key": "team", "Value": "cli"}]
    proc = aws("ecr", "create-repository", "--repository-name", name, check=False)
    assert proc.returncode == 254
    assert ("An error occurred (RepositoryAlreadyExistsException) when calling the CreateRepository operation: "
            f"The repository with name '{name}' already exists") in proc.stderr, proc.stderr


def test_describe_repositories_paginates(aws: AwsCli, ecr: Any) -> None:
    prefix = unique_name("clipage")
    names = [f"{prefix}-{i}" for i in range(3)]
    for name in names:
        ecr.create_repository(repositoryName=name)
    # The CLI follows nextToken itself; page size 1 means one request per repository.
    listed = _json(aws("ecr", "describe-repositories", "--page-size", "1", "--output", "json",
                       "--query", "repositories[].repositoryName"))
    assert set(names) <= set(listed)
    assert len(listed) == len(set(listed))


def test_get_login_password(aws: AwsCli, server: ServerProcess) -> None:
    password = aws("ecr", "get-login-password").stdout.strip()
    assert password and "\n" not in password
    assert httpx.get(f"{server.url}/v2/", auth=("AWS", password), timeout=30).status_code == 200
    token = _json(aws("ecr", "get-authorization-token", "--output", "json"))["authorizationData"][0]
    assert base64.b64decode(token["authorizationToken"]).decode().startswith("AWS:")
    assert token["proxyEndpoint"] == server.url


def test_error_exit_code_and_message(aws: AwsCli) -> None:
    name = unique_name("cli-missing")
    proc = aws("ecr", "describe-repositories", "--repository-names", name, check=False)
    assert proc.returncode == 254, proc
    assert proc.stdout == ""
    assert (f"An error occurred (RepositoryNotFoundException) when calling the DescribeRepositories operation: "
            f"The repository with name '{name}' does not exist in the registry with id '{ACCOUNT}'") in proc.stderr


def test_error_bad_credentials(aws: AwsCli) -> None:
    proc = aws("ecr", "describe-repositories", check=False, env={"AWS_ACCESS_KEY_ID": "AKIANOSUCHKEY0000000"})
    assert proc.returncode == 254
    assert ("An error occurred (UnrecognizedClientException) when calling the DescribeRepositories operation: "
            "The security token included in the request is invalid.") in proc.stderr
    proc = aws("ecr", "describe-repositories", check=False, env={"AWS_SECRET_ACCESS_KEY": "wrong"})
    assert proc.returncode == 254
    assert "An error occurred (InvalidSignatureException) when calling the DescribeRepositories operation" \
        in proc.stderr
    proc = aws("ecr", "describe-repositories", "--region", "eu-west-1", check=False)
    assert proc.returncode == 254
    assert "Credential should be scoped to a valid region" in proc.stderr


def test_push_an_image_with_the_cli(aws: AwsCli, ecr: Any, server: ServerProcess, tmp_path: Path) -> None:
    name = unique_name("cli-push")
    aws("ecr", "create-repository", "--repository-name", name)
    image = build_image([os.urandom(3000)])
    # The layer through the CLI's three upload commands; the config through boto3, to keep this quick.
    upload_layer(ecr, name, image.config)
    for blob in image.layers:
        path = tmp_path / "part"
        path.write_bytes(blob)
        upload_id = _json(aws("ecr", "initiate-layer-upload", "--repository-name", name,
                              "--output", "json"))["uploadId"]
        aws("ecr", "upload-layer-part", "--repository-name", name, "--upload-id", upload_id,
            "--part-first-byte", "0", "--part-last-byte", str(len(blob) - 1), "--layer-part-blob", f"fileb://{path}")
        done = _json(aws("ecr", "complete-layer-upload", "--repository-name", name, "--upload-id", upload_id,
                         "--layer-digests", sha256(blob), "--output", "json"))
        assert done["layerDigest"] == sha256(blob)
    manifest = tmp_path / "manifest.json"
    manifest.write_bytes(image.manifest)
    put = _json(aws("ecr", "put-image", "--repository-name", name, "--image-tag", "cli",
                    "--image-manifest", f"file://{manifest}", "--output", "json"))["image"]
    assert put["imageId"] == {"imageDigest": image.digest, "imageTag": "cli"}
    details = _json(aws("ecr", "describe-images", "--repository-name", name, "--output", "json"))["imageDetails"]
    assert [(d["imageDigest"], d["imageTags"], d["imageSizeInBytes"]) for d in details] == [
        (image.digest, ["cli"], image.layer_bytes)]
    r = httpx.get(f"{server.url}/v2/{name}/manifests/cli", auth=server.auth, timeout=30,
                  headers={"Accept": image.media_type})
    assert r.content == image.manifest
    proc = aws("ecr", "put-image", "--repository-name", name, "--image-tag", "cli",
               "--image-manifest", f"file://{manifest}", check=False)
    assert proc.returncode == 254 and "(ImageAlreadyExistsException)" in proc.stderr
    deleted = _json(aws("ecr", "batch-delete-image", "--repository-name", name, "--image-ids", "imageTag=cli",
                        "--output", "json"))
    assert deleted["imageIds"] == [{"imageDigest": image.digest, "imageTag": "cli"}]
