"""Changing things through the console: repositories, lifecycle previews, policies, settings,
and what a user whose policies forbid it sees."""

from __future__ import annotations

import json
import uuid
from typing import Any

from playwright.sync_api import expect

from tests.console.conftest import Gallery, User, aws, screenshot, sign_in
from tests.support.server import ServerProcess


def test_lifecycle_preview_shows_what_would_expire(page: Any, server: ServerProcess, gallery: Gallery) -> None:
    sign_in(page, server.key_id, server.secret, f"/console/repositories/{gallery.repo}/-/lifecycle")
    policy = {"rules": [{"rulePriority": 1, "description": "Keep only the newest v* image",
                         "selection": {"tagStatus": "tagged", "tagPrefixList": ["v"], "countType": "imageCountMoreThan",
                                       "countNumber": 1},
                         "action": {"type": "expire"}}]}
    page.get_by_label("Lifecycle policy JSON").fill(json.dumps(policy, indent=2))
    page.get_by_role("button", name="Run preview").click()
    expect(page.get_by_role("status")).to_contain_text("preview has run")
    results = page.get_by_role("table", name="Preview results")
    expect(results.get_by_role("row")).to_have_count(1 + 1)
    expect(results).to_contain_text("v1")  # the older of v1 and v2
    expect(results).not_to_contain_text("v2")
    screenshot(page, "lifecycle-preview")
    # A preview deletes nothing and saves nothing.
    page.goto(f"/console/repositories/{gallery.repo}")
    expect(page.get_by_role("table", name="Images")).to_contain_text("v1")


def test_save_lifecycle_policy_and_rules_table(page: Any, server: ServerProcess) -> None:
    repo = f"console/lc-{uuid.uuid4().hex[:8]}"
    aws("ecr", server).create_repository(repositoryName=repo)
    sign_in(page, server.key_id, server.secret, f"/console/repositories/{repo}/-/lifecycle")
    page.get_by_label("Lifecycle policy JSON").fill("{not json")
    page.get_by_role("button", name="Save policy").click()
    expect(page.get_by_role("alert")).to_be_visible()
    expect(page.get_by_label("Lifecycle policy JSON")).to_have_value("{not json")  # kept for fixing
    policy = {"rules": [{"rulePriority": 3, "description": "Expire untagged after 14 days",
                         "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days",
                                       "countNumber": 14}, "action": {"type": "expire"}}]}
    page.get_by_label("Lifecycle policy JSON").fill(json.dumps(policy))
    page.get_by_role("button", name="Save policy").click()
    expect(page.get_by_role("status")).to_contain_text("lifecycle policy was saved")
    expect(page.get_by_role("table", name="Lifecycle rules")).to_contain_text("Expire untagged after 14 days")
    saved = aws("ecr", server).get_lifecycle_policy(repositoryName=repo)["lifecyclePolicyText"]
    assert json.loads(saved) == policy


def test_create_and_delete_a_repository(page: Any, server: ServerProcess) -> None:
    name = f"console/new-{uuid.uuid4().hex[:8]}"
    sign_in(page, server.key_id, server.secret)
    page.get_by_role("link", name="Create repository").click()
    page.get_by_label("Repository name").fill("Not A Valid Name")
    page.get_by_role("button", name="Create repository").click()
    expect(page.get_by_role("alert")).to_be_visible()
    page.get_by_label("Repository name").fill(name)
    page.get_by_label("Immutable: a tag, once pushed, always names the same image").check()
    page.get_by_role("button", name="Create repository").click()
    expect(page.get_by_role("status")).to_contain_text("repository was created")
    expect(page.get_by_role("heading", level=1)).to_have_text(name)
    repo = aws("ecr", server).describe_repositories(repositoryNames=[name])["repositories"][0]
    assert repo["imageTagMutability"] == "IMMUTABLE"

    page.get_by_role("link", name="Delete repository").click()
    page.get_by_label("To confirm, type delete").fill("delete")
    page.get_by_role("button", name="Delete repository").click()
    expect(page.get_by_role("status")).to_contain_text("repository was deleted")
    names = [r["repositoryName"] for r in aws("ecr", server).describe_repositories()["repositories"]]
    assert name not in names


def test_repository_policy_and_tag_immutability(page: Any, server: ServerProcess) -> None:
    name = f"console/perm-{uuid.uuid4().hex[:8]}"
    ecr = aws("ecr", server)
    ecr.create_repository(repositoryName=name)
    sign_in(page, server.key_id, server.secret, f"/console/repositories/{name}/-/permissions")
    expect(page.get_by_role("main")).to_contain_text("This repository has no policy")
    policy = {"Version": "2012-10-17", "Statement": [{"Sid": "Pull", "Effect": "Allow",
                                                       "Principal": {"AWS": "arn:aws:iam::000000000000:root"},
                                                       "Action": ["ecr:BatchGetImage"]}]}
    page.get_by_label("Policy JSON").fill(json.dumps(policy))
    page.get_by_role("button", name="Save policy").click()
    expect(page.get_by_role("status")).to_contain_text("repository policy was saved")
    assert json.loads(ecr.get_repository_policy(repositoryName=name)["policyText"]) == policy

    page.get_by_role("link", name="Settings").click()
    page.get_by_label("Immutable, except tags matching the exclusion filters").check()
    page.get_by_label("Exclusion filters", exact=True).fill("latest\ndev-*")
    page.get_by_role("button", name="Save tag immutability").click()
    expect(page.get_by_role("status")).to_contain_text("Tag immutability was saved")
    repo = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
    assert repo["imageTagMutability"] == "IMMUTABLE_WITH_EXCLUSION"
    assert [f["filter"] for f in repo["imageTagMutabilityExclusionFilters"]] == ["latest", "dev-*"]


def test_pull_only_user_sees_the_denial(page: Any, server: ServerProcess, gallery: Gallery,
                                        pull_only_user: User) -> None:
    sign_in(page, pull_only_user.key_id, pull_only_user.secret, f"/console/repositories/{gallery.repo}")
    expect(page.get_by_role("banner")).to_contain_text(pull_only_user.name)
    expect(page.get_by_role("table", name="Images")).to_contain_text("v2")  # reading is allowed
    page.get_by_role("link", name="Delete repository").click()
    page.get_by_label("To confirm, type delete").fill("delete")
    page.get_by_role("button", name="Delete repository").click()
    alert = page.get_by_role("alert")
    expect(page.get_by_role("heading", level=1)).to_have_text("Access denied")
    expect(alert).to_contain_text(f"user/{pull_only_user.name} is not authorized to perform: ecr:DeleteRepository")
    screenshot(page, "delete-denied")
    assert aws("ecr", server).describe_repositories(repositoryNames=[gallery.repo])["repositories"]

    # Reading what the policies do not allow shows the policy engine's message in place.
    page.goto(f"/console/repositories/{gallery.repo}/-/permissions")
    expect(page.get_by_role("alert")).to_contain_text("not authorized to perform: ecr:GetRepositoryPolicy")
