"""The server's background job applies lifecycle policies on its own (CARGOHOLD_LIFECYCLE_INTERVAL=1)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.ecr.helpers import build_image, ecr_client, push_ecr, unique_name
from tests.support.server import ServerProcess, cleanup, temp_server

pytestmark = pytest.mark.timeout(90)


@pytest.fixture(scope="module")
def srv() -> Iterator[ServerProcess]:
    server = temp_server(env={"CARGOHOLD_LIFECYCLE_INTERVAL": "1", "CARGOHOLD_GC_INTERVAL": "0"}).start()
    try:
        yield server
    finally:
        cleanup(server)


def test_background_job_expires_images(srv: ServerProcess) -> None:
    ecr = ecr_client(srv)
    repo, bystander = unique_name("background"), unique_name("bystander")
    digests: list[str] = []
    for name in (repo, bystander):
        ecr.create_repository(repositoryName=name)
    for i in range(4):
        for name in (repo, bystander):
            image = build_image([os.urandom(64)])
            push_ecr(ecr, name, image, f"v{i}")
            if name == repo:
                digests.append(image.digest)
    untagged = build_image([os.urandom(64)])
    push_ecr(ecr, repo, untagged)
    policy = ('{"rules": [{"rulePriority": 1, "selection": {"tagStatus": "tagged", "tagPrefixList": ["v"], '
              '"countType": "imageCountMoreThan", "countNumber": 1}, "action": {"type": "expire"}}]}')
    ecr.put_lifecycle_policy(repositoryName=repo, lifecyclePolicyText=policy)

    def left(name: str) -> set[str]:
        pages = ecr.get_paginator("describe_images").paginate(repositoryName=name)
        return {d["imageDigest"] for page in pages for d in page["imageDetails"]}

    deadline = time.monotonic() + 30
    while left(repo) != {digests[-1], untagged.digest}:
        assert time.monotonic() < deadline, (left(repo), srv.log())
        time.sleep(0.2)
    evaluated: Any = ecr.get_lifecycle_policy(repositoryName=repo)["lastEvaluatedAt"]
    assert abs(evaluated.timestamp() - time.time()) < 60
    assert len(left(bystander)) == 4  # no policy: untouched

    # It keeps running: newer pushes are expired on later rounds too.
    newer = build_image([os.urandom(64)])
    push_ecr(ecr, repo, newer, "v9")
    deadline = time.monotonic() + 30
    while left(repo) != {newer.digest, untagged.digest}:
        assert time.monotonic() < deadline, (left(repo), srv.log())
        time.sleep(0.2)
