"""docs/examples/github-actions-ecr-deploy.yml, run for real: its `run:` steps against a live server,
with the real AWS CLI v2 and a real (isolated) docker engine.

A small stand-in for the Actions runner: it evaluates the `${{ ... }}` expressions the workflow
uses (vars, secrets, env, github, steps outputs, `||`), performs the two `uses:` steps itself
(the checkout is the prepared workspace; configure-aws-credentials exports the credentials as
the action does), runs each `run:` script with `bash --noprofile --norc -eo pipefail` as GitHub
does, and carries $GITHUB_OUTPUT and $GITHUB_ENV between steps.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ecr.helpers import ecr_client, unique_name
from tests.support.server import ServerProcess

WORKFLOW = Path(__file__).resolve().parents[2] / "docs" / "examples" / "github-actions-ecr-deploy.yml"
AWS = "/usr/bin/aws"
_EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def load_workflow() -> dict[str, Any]:
    doc = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(doc, dict)
    return doc


def the_job(doc: dict[str, Any]) -> dict[str, Any]:
    jobs = doc["jobs"]
    assert len(jobs) == 1, "the example has one job"
    job: dict[str, Any] = next(iter(jobs.values()))
    return job


class Runner:
    """Just enough of the GitHub Actions runner for this workflow."""

    def __init__(self, workspace: Path, base_env: dict[str, str], contexts: dict[str, dict[str, Any]]) -> None:
        self.workspace = workspace
        self.base_env = base_env
        self.contexts = contexts
        self.env: dict[str, str] = {}
        self.steps: dict[str, dict[str, Any]] = {}
        self.log: list[str] = []

    # -- expressions ------------------------------------------------------------------------

    def _operand(self, text: str) -> str:
        text = text.strip()
        if text.startswith("'") and text.endswith("'"):
            return text[1:-1].replace("''", "'")
        parts = text.split(".")
        value: Any = {**self.contexts, "env": self.env, "steps": self.steps}
        for part in parts:
            value = value.get(part, "") if isinstance(value, dict) else ""  # missing: empty, as on GitHub
        assert isinstance(value, str), f"{text!r} is not a string: {value!r}"
        return value

    def evaluate(self, template: str) -> str:
        def one(m: re.Match[str]) -> str:
            for operand in m[1].split("||"):
                value = self._operand(operand)
                if value:
                    return value
            return ""
        return _EXPR.sub(one, template)

    # -- steps ------------------------------------------------------------------------------

    def run_step(self, step: dict[str, Any], job_env: dict[str, str]) -> None:
        name = step.get("name", step.get("uses", "step"))
        step_env = {k: self.evaluate(str(v)) for k, v in (step.get("env") or {}).items()}
        outputs: dict[str, str] = {}
        if "uses" in step:
            action = step["uses"].split("@")[0]
            inputs = {k: self.evaluate(str(v)) for k, v in (step.get("with") or {}).items()}
            if action == "actions/checkout":
                assert (self.workspace / "Dockerfile").exists()
            elif action == "aws-actions/configure-aws-credentials":
                self.env.update({"AWS_ACCESS_KEY_ID": inputs["aws-access-key-id"],
                                 "AWS_SECRET_ACCESS_KEY": inputs["aws-secret-access-key"],
                                 "AWS_REGION": inputs["aws-region"], "AWS_DEFAULT_REGION": inputs["aws-region"]})
            else:
                raise AssertionError(f"the test runner does not know the action {action!r}")
        else:
            script = self.evaluate(step["run"])
            runner_dir = self.workspace.parent / "runner"
            runner_dir.mkdir(exist_ok=True)
            output_file, env_file = runner_dir / "output", runner_dir / "env"
            output_file.write_text("")
            env_file.write_text("")
            script_file = runner_dir / "step.sh"
            script_file.write_text(script)
            env = {**self.base_env, **job_env, **self.env, **step_env,
                   "GITHUB_OUTPUT": str(output_file), "GITHUB_ENV": str(env_file),
                   "GITHUB_WORKSPACE": str(self.workspace), "GITHUB_SHA": self.contexts["github"]["sha"],
                   "CI": "true", "GITHUB_ACTIONS": "true"}
            proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script_file)],
                                  env=env, cwd=self.workspace, capture_output=True, text=True, timeout=600,
                                  stdin=subprocess.DEVNULL)
            self.log.append(f"== {name} (exit {proc.returncode})\n{proc.stdout}\n{proc.stderr}")
            if proc.returncode != 0:
                raise AssertionError(f"step {name!r} failed with exit {proc.returncode}:\n{script}\n"
                                     f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}")
            outputs = _parse_key_values(output_file.read_text())
            self.env.update(_parse_key_values(env_file.read_text()))
        if "id" in step:
            self.steps[step["id"]] = {"outputs": outputs, "outcome": "success"}

    def run(self, doc: dict[str, Any]) -> None:
        self.env.update({k: self.evaluate(str(v)) for k, v in (doc.get("env") or {}).items()})
        job = the_job(doc)
        job_env = {k: self.evaluate(str(v)) for k, v in (job.get("env") or {}).items()}
        for step in job["steps"]:
            self.run_step(step, job_env)


def _parse_key_values(text: str) -> dict[str, str]:
    """$GITHUB_OUTPUT / $GITHUB_ENV: name=value lines and name<<DELIMITER heredocs."""
    out: dict[str, str] = {}
    lines = iter(text.splitlines())
    for line in lines:
        if "<<" in line and ("=" not in line or line.index("<<") < line.index("=")):
            key, _, delimiter = line.partition("<<")
            body = []
            for item in lines:
                if item == delimiter:
                    break
                body.append(item)
            out[key] = "\n".join(body)
        elif "=" in line:
            key, _, value = line.partition("=")
            out[key] = value
    return out


# -- static checks (no engine needed) -------------------------------------------------------

def test_workflow_is_the_classic_shape() -> None:
    doc = load_workflow()
    steps = the_job(doc)["steps"]
    uses = [s["uses"].split("@")[0] for s in steps if "uses" in s]
    assert uses == ["actions/checkout", "aws-actions/configure-aws-credentials"]
    scripts = "\n".join(s["run"] for s in steps if "run" in s)
    assert "aws ecr get-login-password" in scripts
    assert "docker login --username AWS --password-stdin" in scripts
    for command in ("docker build", "docker tag", "docker push"):
        assert command in scripts, command
    assert doc["env"]["ECR_ENDPOINT"] == "${{ vars.ECR_ENDPOINT }}"


def test_every_aws_call_names_the_endpoint() -> None:
    for step in the_job(load_workflow())["steps"]:
        if "run" not in step:
            continue
        # Join continuation lines, then look at each `aws` command of each pipeline or list.
        script = step["run"].replace("\\\n", " ")
        for line in script.splitlines():
            for command in re.split(r"\|\||&&|\|", line):
                words = shlex.split(command, comments=True)
                if words and words[0] == "aws":
                    assert "--endpoint-url" in words, command


def test_runner_expressions() -> None:
    runner = Runner(Path("/nonexistent"), {}, {"vars": {"A": "a"}, "secrets": {}, "github": {"sha": "s"}})
    runner.env["E"] = "e"
    runner.steps["x"] = {"outputs": {"o": "out"}}
    assert runner.evaluate("${{ vars.A }}-${{ env.E }}-${{ github.sha }}") == "a-e-s"
    assert runner.evaluate("${{ vars.MISSING || 'dflt' }}") == "dflt"
    assert runner.evaluate("${{ steps.x.outputs.o }}${{steps.y.outputs.o}}") == "out"
    assert _parse_key_values("a=1\nb<<EOF\nx\ny\nEOF\nc=2=3\n") == {"a": "1", "b": "x\ny", "c": "2=3"}


# -- the real run ---------------------------------------------------------------------------

def _skip_reason() -> str | None:
    if not os.access(AWS, os.X_OK):
        return f"{AWS} (AWS CLI v2) is not installed"
    try:
        from tests.support.dockerd import docker_available
    except ImportError:
        return "tests/support/dockerd.py (the isolated docker engine helper) is missing"
    return docker_available()


@pytest.mark.clients
@pytest.mark.timeout(900)
def test_workflow_builds_and_pushes_with_docker(server: ServerProcess, tmp_path: Path) -> None:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    from tests.support.dockerd import DockerDaemon

    repository = unique_name("gha")
    sha = secrets.token_hex(20)
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    marker = secrets.token_hex(8)
    (workspace / "hello.txt").write_text(f"hello from the workflow test {marker}\n")
    (workspace / "Dockerfile").write_text(f'FROM scratch\nCOPY hello.txt /hello.txt\nLABEL marker="{marker}"\n')
    home = tmp_path / "home"
    bin_dir = tmp_path / "bin"
    for d in (home, bin_dir):
        d.mkdir()
    (bin_dir / "aws").symlink_to(AWS)  # GitHub's runners have AWS CLI v2 as `aws`

    with DockerDaemon() as daemon:
        docker = daemon.cli(tmp_path / "docker-config")  # the job's own logins
        base_env = {k: v for k, v in docker.env.items() if not k.startswith("AWS_")}
        base_env.update({
            "PATH": f"{bin_dir}:{base_env.get('PATH', '/usr/bin:/bin')}", "HOME": str(home),
            "AWS_CONFIG_FILE": str(home / "aws-config"), "AWS_SHARED_CREDENTIALS_FILE": str(home / "aws-creds"),
            "AWS_PAGER": "", "AWS_EC2_METADATA_DISABLED": "true",
        })
        contexts: dict[str, dict[str, Any]] = {
            "vars": {"ECR_ENDPOINT": server.url, "ECR_REPOSITORY": repository},
            "secrets": {"AWS_ACCESS_KEY_ID": server.key_id, "AWS_SECRET_ACCESS_KEY": server.secret},
            "github": {"sha": sha, "workspace": str(workspace)},
        }
        runner = Runner(workspace, base_env, contexts)
        try:
            runner.run(load_workflow())
        finally:
            print("\n".join(runner.log))

        # The workflow's own output names the pushed image.
        image = f"{server.address}/{repository}:{sha}"
        assert runner.steps["build-image"]["outputs"]["image"] == image
        assert runner.steps["login-ecr"]["outputs"]["registry"] == server.address

        # The ECR API sees the repository and the image under both tags.
        ecr = ecr_client(server)
        repo = ecr.describe_repositories(repositoryNames=[repository])["repositories"][0]
        assert repo["imageScanningConfiguration"] == {"scanOnPush": True}
        details = ecr.describe_images(repositoryName=repository)["imageDetails"]
        assert len(details) == 1
        assert sorted(details[0]["imageTags"]) == sorted([sha, "latest"])
        assert details[0]["imageSizeInBytes"] > 0
        local_id = docker("image", "inspect", "--format", "{{.Id}}", image).stdout.strip()

        # Pull it back into a clean engine state and read the label the Dockerfile set.
        docker("image", "rm", image, f"{server.address}/{repository}:latest")
        docker("pull", f"{server.address}/{repository}:latest")
        pulled = docker("image", "inspect", "--format", "{{.Id}} {{index .Config.Labels \"marker\"}}",
                               f"{server.address}/{repository}:latest").stdout.split()
        assert pulled == [local_id, marker]

        # A second run (the next commit) finds the repository and pushes a new tag.
        second = secrets.token_hex(20)
        contexts["github"]["sha"] = second
        Runner(workspace, base_env, contexts).run(load_workflow())
        tags = {i.get("imageTag") for i in ecr.list_images(repositoryName=repository)["imageIds"]}
        assert {sha, second, "latest"} <= tags
