"""The beginner's ECR tutorial, verbatim apart from --endpoint-url, with the real AWS CLI and docker."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import boto3
import pytest

from tests.ecr.helpers import unique_name
from tests.support.server import ServerProcess

AWS = "/usr/bin/aws"


def test_boto3_honours_aws_endpoint_url(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    """No endpoint_url argument: boto3 takes AWS_ENDPOINT_URL from the environment."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    client = boto3.client("ecr", region_name="us-east-1", aws_access_key_id=server.key_id,
                          aws_secret_access_key=server.secret)
    name = unique_name("envurl")
    created = client.create_repository(repositoryName=name)["repository"]
    assert created["repositoryUri"] == f"{server.address}/{name}"
    assert name in [r["repositoryName"] for r in client.describe_repositories()["repositories"]]


@pytest.mark.clients
@pytest.mark.timeout(600)
def test_the_tutorial(server: ServerProcess, tmp_path: Path) -> None:
    if not os.access(AWS, os.X_OK):
        pytest.skip(f"{AWS} is not installed")
    from tests.support.dockerd import DockerDaemon, docker_available
    reason = docker_available()
    if reason:
        pytest.skip(reason)
    home = tmp_path / "home"
    home.mkdir()
    app = tmp_path / "app"
    app.mkdir()
    (app / "index.html").write_text("hello from my-app\n")
    (app / "Dockerfile").write_text("FROM scratch\nCOPY index.html /index.html\n")
    repo = unique_name("my-app-repo")
    with DockerDaemon() as daemon:
        docker = daemon.cli(tmp_path / "docker-config")
        env = {k: v for k, v in docker.env.items() if not k.startswith("AWS_")}
        env.update({"HOME": str(home), "AWS_ACCESS_KEY_ID": server.key_id, "AWS_SECRET_ACCESS_KEY": server.secret,
                    "AWS_DEFAULT_REGION": "us-east-1", "AWS_PAGER": "", "AWS_EC2_METADATA_DISABLED": "true",
                    "DOCKER_BUILDKIT": "0", "URL": server.url, "REPO": repo, "HOST": server.address})

        def sh(script: str) -> str:
            proc = subprocess.run(["bash", "-eo", "pipefail", "-c", script], env=env, cwd=app, capture_output=True,
                                  text=True, timeout=300, stdin=subprocess.DEVNULL)
            assert proc.returncode == 0, f"{script}\n{proc.stdout}\n{proc.stderr}"
            return proc.stdout

        uri = json.loads(sh(f'{AWS} ecr create-repository --repository-name "$REPO" --endpoint-url "$URL"'))[
            "repository"]["repositoryUri"]
        assert uri == f"{server.address}/{repo}"
        sh("docker build -t my-app .")
        sh(f'{AWS} ecr get-login-password --endpoint-url "$URL" | '
           'docker login --username AWS --password-stdin "$HOST"')
        sh(f"docker tag my-app:latest {uri}:latest && docker push {uri}:latest")
        image_id = sh(f"docker image inspect -f '{{{{.Id}}}}' {uri}:latest").strip()
        sh(f"docker rmi {uri}:latest my-app:latest && docker pull {uri}:latest")
        assert sh(f"docker image inspect -f '{{{{.Id}}}}' {uri}:latest").strip() == image_id
        described = json.loads(sh(f'{AWS} ecr describe-images --repository-name "$REPO" --endpoint-url "$URL"'))
        assert [d["imageTags"] for d in described["imageDetails"]] == [["latest"]]
