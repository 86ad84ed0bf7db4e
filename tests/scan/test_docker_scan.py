"""Issue 6 end to end with real clients: `docker push` to a scanOnPush repository, then
`aws ecr describe-image-scan-findings` shows the expected findings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.scan import builders as b
from tests.support.server import ServerProcess

AWS = "/usr/bin/aws"


@pytest.mark.clients
@pytest.mark.timeout(600)
def test_docker_push_then_aws_cli_findings(server: ServerProcess, tmp_path: Path) -> None:
    if not os.access(AWS, os.X_OK):
        pytest.skip(f"{AWS} is not installed")
    from tests.support.dockerd import DockerDaemon, docker_available
    reason = docker_available()
    if reason:
        pytest.skip(reason)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CARGOHOLD_", "AWS_"))}
    proc = subprocess.run([sys.executable, "-m", "cargohold", "vulndb", "import",
                           str(b.write_osv_dir(tmp_path / "osv")), "--data-dir", str(server.data_dir)],
                          capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr

    context = tmp_path / "image"
    (context / "etc").mkdir(parents=True)
    (context / "var/lib/dpkg").mkdir(parents=True)
    (context / "etc/os-release").write_text(b.os_release("debian", "12", "Debian GNU/Linux"))
    (context / "var/lib/dpkg/status").write_text(
        b.dpkg_entry("libssl3", "3.0.11-1~deb12u1", "openssl") + b.dpkg_entry("tar", "1:2.0-1"))
    (context / "Dockerfile").write_text("FROM scratch\nCOPY etc /etc\nCOPY var /var\n")
    repo = f"scan/docker-{uuid.uuid4().hex[:8]}"
    aws_env = {**env, "HOME": str(tmp_path), "AWS_ACCESS_KEY_ID": server.key_id,
               "AWS_SECRET_ACCESS_KEY": server.secret, "AWS_DEFAULT_REGION": "us-east-1", "AWS_PAGER": "",
               "AWS_EC2_METADATA_DISABLED": "true"}

    def aws(*args: str) -> dict[str, object]:
        done = subprocess.run([AWS, "ecr", *args, "--endpoint-url", server.url, "--output", "json"], env=aws_env,
                              capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, done.stderr
        result: dict[str, object] = json.loads(done.stdout)
        return result

    aws("create-repository", "--repository-name", repo, "--image-scanning-configuration", "scanOnPush=true")
    with DockerDaemon() as daemon:
        docker = daemon.cli(tmp_path / "docker-config")
        image = f"{server.address}/{repo}:v1"
        docker("login", server.address, "-u", server.key_id, "--password-stdin", input=server.secret)
        docker("build", "-t", image, str(context))
        docker("push", image)

    deadline = time.monotonic() + 60
    while True:
        out = aws("describe-image-scan-findings", "--repository-name", repo, "--image-id", "imageTag=v1")
        status = out["imageScanStatus"]
        assert isinstance(status, dict)
        if status["status"] != "IN_PROGRESS":
            break
        assert time.monotonic() < deadline, "the scan did not finish"
        time.sleep(0.5)
    assert status["status"] == "COMPLETE", status
    findings = out["imageScanFindings"]
    assert isinstance(findings, dict)
    names = {(f["name"], next(a["value"] for a in f["attributes"] if a["key"] == "package_name"))
             for f in findings["findings"]}
    assert names == {("CVE-2024-0001", "openssl")}  # tar 1:2.0-1 is newer than its fix: no finding
    assert findings["findingSeverityCounts"] == {"CRITICAL": 1}
