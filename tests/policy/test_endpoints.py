"""Private endpoints (aws:SourceVpce), aws:SourceIp conditions and trusted proxies.

The endpoint server has a second listener, 127.0.0.2:<port2>, that is private endpoint
vpce-0a1b2c3d: requests through it carry aws:SourceVpce, requests through the main address do not.
Both listeners are on loopback.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.policy.helpers import (
    HOME,
    REGION,
    aws_client,
    cargohold,
    docker_login,
    new_user,
    policy,
    push_as_root,
    put_small_image,
    raises,
    unique,
    wait_for,
    wait_for_count,
)
from tests.support.dockerd import DockerCli, DockerDaemon
from tests.support.server import ServerProcess, cleanup, free_port, temp_server

VPCE = "vpce-0a1b2c3d"
ENDPOINT_HOST = "127.0.0.2"
DATA_PLANE = ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability",
              "ecr:ListImages", "ecr:DescribeImages", "ecr:PutImage", "ecr:InitiateLayerUpload"]


def only_through_endpoint(actions: list[str] | str) -> str:
    """The documented pattern: a repository policy that denies everything not coming through the endpoint."""
    return json.dumps({"Version": "2012-10-17", "Statement": [{
        "Sid": "OnlyThroughTheEndpoint", "Effect": "Deny", "Principal": "*", "Action": actions,
        "Condition": {"StringNotEquals": {"aws:SourceVpce": VPCE}}}]})


def wait_healthy(url: str, timeout: float = 30.0) -> None:
    def probe() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False
    wait_for(probe, timeout)


class Endpoint:
    def __init__(self, server: ServerProcess, port: int) -> None:
        self.server = server
        self.address = f"{ENDPOINT_HOST}:{port}"
        self.url = f"http://{self.address}"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[Endpoint]:
    port = free_port(ENDPOINT_HOST)
    srv = temp_server(extra_args=["--endpoint", f"{ENDPOINT_HOST}:{port}={VPCE}"])
    try:
        srv.start()
        ep = Endpoint(srv, port)
        wait_healthy(ep.url)  # the endpoint listener runs in a process of its own
        yield ep
    finally:
        cleanup(srv)


def basic(key_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{key_id}:{secret}".encode()).decode()}


# -- aws:SourceVpce -------------------------------------------------------------------------

def test_repository_policy_on_the_endpoint_with_boto3(endpoint: Endpoint) -> None:
    srv = endpoint.server
    main, private = aws_client("ecr", srv), aws_client("ecr", endpoint.url, srv.key_id, srv.secret)
    repo = f"vpce/{unique('repo')}"
    main.create_repository(repositoryName=repo)
    digest = put_small_image(main, repo, "v1")
    main.set_repository_policy(repositoryName=repo, policyText=only_through_endpoint(DATA_PLANE))

    got = private.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}])
    assert [i["imageId"]["imageDigest"] for i in got["images"]] == [digest]
    assert private.list_images(repositoryName=repo)["imageIds"] == [{"imageDigest": digest, "imageTag": "v1"}]
    refused = (f"User: arn:aws:iam::{HOME}:root is not authorized to perform: ecr:BatchGetImage on resource: "
               f"arn:aws:ecr:{REGION}:{HOME}:repository/{repo} with an explicit deny in a resource-based policy")
    with raises("AccessDeniedException", refused):
        main.batch_get_image(repositoryName=repo, imageIds=[{"imageTag": "v1"}])
    with raises("AccessDeniedException"):
        main.list_images(repositoryName=repo)
    with raises("AccessDeniedException"):
        main.initiate_layer_upload(repositoryName=repo)
    put_small_image(private, repo, "v2")  # pushing through the endpoint is fine
    # Actions the policy does not name are unaffected on the main address.
    assert main.describe_repositories(repositoryNames=[repo])["repositories"][0]["repositoryName"] == repo

    # A policy denying every ECR action off the endpoint would lock out a caller on the main address
    # (force needed there), but not one setting it through the endpoint.
    everything = only_through_endpoint("ecr:*")
    with raises("InvalidParameterException", "force"):
        main.set_repository_policy(repositoryName=repo, policyText=everything)
    private.set_repository_policy(repositoryName=repo, policyText=everything)
    with raises("AccessDeniedException", "explicit deny"):
        main.get_repository_policy(repositoryName=repo)
    private.delete_repository_policy(repositoryName=repo)
    assert main.list_images(repositoryName=repo)["imageIds"]


def test_identity_policy_allowing_only_through_the_endpoint(endpoint: Endpoint) -> None:
    srv = endpoint.server
    iam = aws_client("iam", srv)
    user = new_user(iam, "vpce", policy({"Effect": "Allow", "Action": "ecr:*", "Resource": "*",
                                         "Condition": {"StringEquals": {"aws:SourceVpce": VPCE}}}))
    private, main = user.client("ecr", endpoint.url), user.client("ecr", srv)
    assert "repositories" in private.describe_repositories()
    assert private.get_authorization_token()["authorizationData"]
    with raises("AccessDeniedException", f"User: {user.arn} is not authorized to perform: ecr:DescribeRepositories"):
        main.describe_repositories()
    with raises("AccessDeniedException", "because no identity-based policy allows"):
        main.get_authorization_token()

    # The audit trail names the endpoint a decision came through.
    def lines() -> list[str]:
        out = cargohold("audit", "--data-dir", str(srv.data_dir), "--principal", user.arn).stdout
        return [line for line in out.splitlines() if "ecr:DescribeRepositories" in line]
    found = wait_for_count(lines, 2)
    assert any(" ALLOW " in line and f"via {VPCE}" in line for line in found), found
    assert any(" DENY " in line and "via" not in line for line in found), found


@pytest.mark.clients
def test_docker_through_the_endpoint(endpoint: Endpoint, dockerd: DockerDaemon, docker: DockerCli,
                                     tmp_path: Path) -> None:
    srv = endpoint.server
    repo = f"vpce/{unique('docker')}"
    pushed = push_as_root(dockerd.cli(tmp_path / "root"), srv, repo, "v1", tmp_path / "ctx")
    aws_client("ecr", srv).set_repository_policy(repositoryName=repo, policyText=only_through_endpoint(DATA_PLANE))
    private_ref = f"{endpoint.address}/{repo}:v1"
    try:
        for address in (srv.address, endpoint.address):
            docker_login(docker, address, srv.key_id, srv.secret)
        out = docker("pull", private_ref)
        assert "Downloaded newer image" in out.stdout, out.stdout
        pull = docker("pull", pushed, check=False)
        assert pull.returncode != 0
        assert (f"denied: User: arn:aws:iam::{HOME}:root is not authorized to perform: ecr:BatchGetImage"
                in pull.stderr), pull.stderr
        assert "explicit deny in a resource-based policy" in pull.stderr

        # A user whose identity policy allows pulls only through the endpoint.
        user = new_user(aws_client("iam", srv), "vpce-docker", policy({
            "Effect": "Allow", "Action": "ecr:*", "Resource": "*",
            "Condition": {"StringEquals": {"aws:SourceVpce": VPCE}}}))
        user_docker = dockerd.cli(tmp_path / "user-config")
        for address in (srv.address, endpoint.address):
            docker_login(user_docker, address, user.key_id, user.secret)
        docker("rmi", private_ref)
        user_docker("pull", private_ref)
        pull = user_docker("pull", pushed, check=False)
        assert pull.returncode != 0
        assert f"denied: User: {user.arn} is not authorized to perform: ecr:BatchGetImage" in pull.stderr, \
            pull.stderr
    finally:
        docker("rmi", "-f", private_ref, pushed, check=False)


# -- aws:SourceIp and trusted proxies -------------------------------------------------------

def test_source_ip_condition(server: ServerProcess, iam: Any) -> None:
    user = new_user(iam, "srcip", policy({"Effect": "Allow", "Action": "ecr:DescribeRepositories", "Resource": "*",
                                          "Condition": {"IpAddress": {"aws:SourceIp": "127.0.0.2/32"}}}))
    headers = basic(user.key_id, user.secret)

    def catalog(source: str) -> httpx.Response:
        transport = httpx.HTTPTransport(local_address=source)
        with httpx.Client(transport=transport, timeout=30) as c:
            return c.get(f"{server.url}/v2/_catalog", headers=headers)

    assert catalog("127.0.0.2").status_code == 200
    refused = catalog("127.0.0.1")
    assert refused.status_code == 403, refused.text
    assert refused.json()["errors"][0]["code"] == "DENIED"
    assert "ecr:DescribeRepositories" in refused.json()["errors"][0]["message"]


@pytest.fixture(scope="module")
def proxied() -> Iterator[ServerProcess]:
    """A server behind a trusted proxy on 127.0.0.1: its X-Forwarded-For is believed."""
    srv = temp_server(extra_args=["--trusted-proxy", "127.0.0.1/32"])
    try:
        yield srv.start()
    finally:
        cleanup(srv)


def test_forwarded_for_only_from_a_trusted_proxy(proxied: ServerProcess, server: ServerProcess, iam: Any) -> None:
    document = policy({"Effect": "Allow", "Action": "ecr:DescribeRepositories", "Resource": "*",
                       "Condition": {"IpAddress": {"aws:SourceIp": "127.0.0.9/32"}}})
    behind = new_user(aws_client("iam", proxied), "proxied", document)
    direct = new_user(iam, "direct", document)

    def catalog(srv: ServerProcess, key_id: str, secret: str, forwarded: str | None) -> int:
        headers = basic(key_id, secret)
        if forwarded is not None:
            headers["X-Forwarded-For"] = forwarded
        return httpx.get(f"{srv.url}/v2/_catalog", headers=headers, timeout=30).status_code

    # Trusted: the client address is the right-most untrusted hop.
    assert catalog(proxied, behind.key_id, behind.secret, "127.0.0.9") == 200
    assert catalog(proxied, behind.key_id, behind.secret, "127.0.0.9, 127.0.0.1") == 200
    assert catalog(proxied, behind.key_id, behind.secret, None) == 403
    # A client cannot prepend an address of its liking: the proxy appends what it saw.
    assert catalog(proxied, behind.key_id, behind.secret, "127.0.0.9, 127.0.0.5") == 403
    # Without --trusted-proxy the header is ignored: the peer address decides.
    assert catalog(server, direct.key_id, direct.secret, "127.0.0.9") == 403
    assert catalog(server, direct.key_id, direct.secret, None) == 403
