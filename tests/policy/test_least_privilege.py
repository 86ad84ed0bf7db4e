"""The classic least-privilege pull user, end to end with the AWS CLI and docker.

A user whose only policy is the ECR documentation's pull policy logs in with
`aws ecr get-login-password | docker login --username AWS --password-stdin`, pulls what root
pushed, and is refused a push and a CreateRepository with ECR's own wording. Revoking the policy
and deactivating the key both take effect on the very next request.
"""

from __future__ import annotations

import base64
import json
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.policy.helpers import (
    AWS,
    HOME,
    PULL_ACTIONS,
    REGION,
    AwsCli,
    User,
    build_tiny,
    need_aws_cli,
    new_user,
    push_as_root,
    unique,
)
from tests.support.dockerd import DockerCli, DockerDaemon
from tests.support.server import ServerProcess

pytestmark = pytest.mark.clients

# Exactly the document from the brief (and ECR's "pull only" examples).
LEAST_PRIVILEGE = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": PULL_ACTIONS, "Resource": "*"}]})


@pytest.fixture(scope="module")
def pushed(dockerd: DockerDaemon, server: ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An image root pushed (and no longer has locally): its reference."""
    need_aws_cli()
    base = tmp_path_factory.mktemp("root-push")
    return push_as_root(dockerd.cli(base / "config"), server, f"lp/{unique('app')}", "v1", base / "ctx")


def login_with_cli(aws: AwsCli, docker: DockerCli, server: ServerProcess) -> None:
    """Literally `aws ecr get-login-password | docker login --username AWS --password-stdin HOST`."""
    env = {**aws.env, **{k: v for k, v in docker.env.items() if k.startswith("DOCKER_")}}
    pipeline = (f"set -o pipefail; {AWS} ecr get-login-password --endpoint-url {shlex.quote(server.url)} | "
                f"docker login --username AWS --password-stdin {shlex.quote(server.address)}")
    out = subprocess.run(["bash", "-c", pipeline], env=env, capture_output=True, text=True, timeout=120,
                         stdin=subprocess.DEVNULL)
    assert out.returncode == 0 and "Login Succeeded" in out.stdout, out
    auths = json.loads((docker.config_dir / "config.json").read_text())["auths"]
    assert base64.b64decode(auths[server.address]["auth"]).decode().startswith("AWS:")


def pull_user(iam: Any, tmp_path: Path) -> tuple[User, AwsCli]:
    user = new_user(iam, "puller", LEAST_PRIVILEGE, policy_name="ecr-pull")
    return user, AwsCli(tmp_path / "aws", user.key_id, user.secret)


def test_pull_allowed_push_and_create_repository_denied(pushed: str, iam: Any, server: ServerProcess,
                                                        docker: DockerCli, tmp_path: Path) -> None:
    user, aws = pull_user(iam, tmp_path)
    login_with_cli(aws, docker, server)
    try:
        out = docker("pull", pushed)
        assert "Downloaded newer image" in out.stdout, out.stdout

        # A push of something new: the first refused call is the upload, with ECR's message.
        mine = f"{server.address}/lp/{unique('mine')}:v1"
        build_tiny(docker, mine, tmp_path / "ctx")
        push = docker("push", mine, check=False)
        assert push.returncode != 0
        expected = f"denied: User: {user.arn} is not authorized to perform: ecr:InitiateLayerUpload"
        assert expected in push.stderr, push.stderr
        assert "because no identity-based policy allows the ecr:InitiateLayerUpload action" in push.stderr

        # The pulled image under a new tag in the same repository: every layer exists, the manifest is refused.
        retag = pushed.rsplit(":", 1)[0] + ":retagged"
        docker("tag", pushed, retag)
        push = docker("push", retag, check=False)
        assert push.returncode != 0
        assert f"denied: User: {user.arn} is not authorized to perform: ecr:PutImage" in push.stderr, push.stderr
    finally:
        docker("rmi", "-f", pushed, pushed.rsplit(":", 1)[0] + ":retagged", check=False)

    name = f"lp/{unique('new')}"
    created = aws(server.url, "ecr", "create-repository", "--repository-name", name, check=False)
    assert created.returncode == 254, created
    assert created.stderr.strip() == (
        "An error occurred (AccessDeniedException) when calling the CreateRepository operation: "
        f"User: {user.arn} is not authorized to perform: ecr:CreateRepository on resource: "
        f"arn:aws:ecr:{REGION}:{HOME}:repository/{name} because no identity-based policy allows the "
        "ecr:CreateRepository action"), created.stderr


def test_revoking_the_policy_takes_effect_on_the_next_pull(pushed: str, iam: Any, server: ServerProcess,
                                                           docker: DockerCli, tmp_path: Path) -> None:
    user, aws = pull_user(iam, tmp_path)
    login_with_cli(aws, docker, server)
    try:
        docker("pull", pushed)
        docker("rmi", pushed)
        iam.delete_user_policy(UserName=user.name, PolicyName="ecr-pull")
        pull = docker("pull", pushed, check=False)
        assert pull.returncode != 0
        assert f"User: {user.arn} is not authorized to perform: ecr:BatchGetImage" in pull.stderr, pull.stderr
        # A new login password is refused too: GetAuthorizationToken is no longer allowed.
        refused = aws(server.url, "ecr", "get-login-password", check=False)
        assert refused.returncode == 254 and "AccessDeniedException" in refused.stderr, refused

        # Put back, it works again at once.
        iam.put_user_policy(UserName=user.name, PolicyName="ecr-pull", PolicyDocument=LEAST_PRIVILEGE)
        docker("pull", pushed)
    finally:
        docker("rmi", "-f", pushed, check=False)


def test_deactivated_key_fails_for_sigv4_and_login_token(pushed: str, iam: Any, server: ServerProcess,
                                                         docker: DockerCli, tmp_path: Path) -> None:
    user, aws = pull_user(iam, tmp_path)
    login_with_cli(aws, docker, server)
    try:
        docker("pull", pushed)
        docker("rmi", pushed)
        iam.update_access_key(UserName=user.name, AccessKeyId=user.key_id, Status="Inactive")

        # SigV4: the very next API call.
        api = aws(server.url, "ecr", "describe-images", "--repository-name", pushed.split("/", 1)[1].split(":")[0],
                  check=False)
        assert api.returncode == 254, api
        assert "UnrecognizedClientException" in api.stderr, api.stderr
        # The login token docker holds was issued for that key: refused on docker's next request.
        pull = docker("pull", pushed, check=False)
        assert pull.returncode != 0
        assert "unauthorized" in pull.stderr.lower(), pull.stderr
        assert "no longer valid" in pull.stderr, pull.stderr

        iam.update_access_key(UserName=user.name, AccessKeyId=user.key_id, Status="Active")
        docker("pull", pushed)  # the same token is good again: it names the key, which is active again
    finally:
        docker("rmi", "-f", pushed, check=False)
