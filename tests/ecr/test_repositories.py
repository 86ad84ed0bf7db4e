"""Repository-level ECR operations: create, describe, delete, settings, resource tags, registry."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from tests.ecr.helpers import ACCOUNT, REGION, build_image, push_ecr, raises, unique_name
from tests.support.server import ServerProcess


def arn(name: str, account: str = ACCOUNT) -> str:
    return f"arn:aws:ecr:{REGION}:{account}:repository/{name}"


# -- CreateRepository -----------------------------------------------------------------------

def test_create_repository_defaults(ecr: Any, server: ServerProcess) -> None:
    name = unique_name("defaults")
    before = datetime.datetime.now(datetime.UTC)
    repo = ecr.create_repository(repositoryName=name)["repository"]
    assert repo["repositoryName"] == name
    assert repo["registryId"] == ACCOUNT
    assert repo["repositoryArn"] == arn(name)
    assert repo["repositoryUri"] == f"{server.address}/{name}"
    assert repo["imageTagMutability"] == "MUTABLE"
    assert repo["imageScanningConfiguration"] == {"scanOnPush": False}
    assert repo["encryptionConfiguration"] == {"encryptionType": "AES256"}
    assert "imageTagMutabilityExclusionFilters" not in repo
    created = repo["createdAt"]
    assert before - datetime.timedelta(seconds=5) <= created <= datetime.datetime.now(datetime.UTC)
    assert ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"] == []


def test_create_repository_stores_and_returns_every_setting(ecr: Any) -> None:
    name = unique_name("settings")
    kms = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0f3e2d1c-aaaa-bbbb-cccc-123456789012"
    settings: dict[str, Any] = {
        "imageTagMutability": "IMMUTABLE_WITH_EXCLUSION",
        "imageTagMutabilityExclusionFilters": [{"filterType": "WILDCARD", "filter": "latest*"},
                                               {"filterType": "WILDCARD", "filter": "dev-*"}],
        "imageScanningConfiguration": {"scanOnPush": True},
        "encryptionConfiguration": {"encryptionType": "KMS", "kmsKey": kms},
    }
    tags = [{"Key": "team", "Value": "platform"}, {"Key": "env", "Value": "prod"}]
    created = ecr.create_repository(repositoryName=name, tags=tags, **settings)["repository"]
    described = ecr.describe_repositories(repositoryNames=[name])["repositories"][0]
    for repo in (created, described):
        for key, value in settings.items():
            assert repo[key] == value, key
    assert described["createdAt"] == created["createdAt"]
    listed = ecr.list_tags_for_resource(resourceArn=arn(name))["tags"]
    assert sorted(listed, key=lambda t: t["Key"]) == sorted(tags, key=lambda t: t["Key"])


@pytest.mark.parametrize("mode", ["MUTABLE", "IMMUTABLE", "MUTABLE_WITH_EXCLUSION", "IMMUTABLE_WITH_EXCLUSION"])
def test_create_repository_each_mutability_mode(ecr: Any, mode: str) -> None:
    name = unique_name("mode")
    extra: dict[str, Any] = {}
    if mode.endswith("_WITH_EXCLUSION"):
        extra["imageTagMutabilityExclusionFilters"] = [{"filterType": "WILDCARD", "filter": "x*"}]
    repo = ecr.create_repository(repositoryName=name, imageTagMutability=mode, **extra)["repository"]
    assert repo["imageTagMutability"] == mode
    assert repo.get("imageTagMutabilityExclusionFilters") == extra.get("imageTagMutabilityExclusionFilters")


def test_create_repository_exclusion_filters_must_match_the_mode(ecr: Any) -> None:
    with raises("InvalidParameterException", "imageTagMutabilityExclusionFilters"):
        ecr.create_repository(repositoryName=unique_name("nofilter"), imageTagMutability="IMMUTABLE_WITH_EXCLUSION")
    with raises("InvalidParameterException", "imageTagMutabilityExclusionFilters"):
        ecr.create_repository(repositoryName=unique_name("filter"), imageTagMutability="IMMUTABLE",
                              imageTagMutabilityExclusionFilters=[{"filterType": "WILDCARD", "filter": "x"}])


def test_create_repository_kms_key_needs_kms(ecr: Any) -> None:
    with raises("InvalidParameterException", "kmsKey"):
        ecr.create_repository(repositoryName=unique_name("aes"), encryptionConfiguration={
            "encryptionType": "AES256", "kmsKey": "arn:aws:kms:us-east-1:000000000000:key/x"})


def test_create_repository_duplicate(ecr: Any, repo: str) -> None:
    with raises("RepositoryAlreadyExistsException", repo) as info:
        ecr.create_repository(repositoryName=repo)
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_create_repository_invalid_name(ecr: Any) -> None:
    # The model's pattern rejects it before the operation runs.
    with raises("ValidationException", "Member must satisfy regular expression pattern"):
        ecr.create_repository(repositoryName="ecr-tests/double//slash")


def test_create_repository_bad_resource_tags(ecr: Any) -> None:
    with raises("InvalidTagParameterException"):
        ecr.create_repository(repositoryName=unique_name("tags"), tags=[{"Key": "aws:reserved", "Value": "x"}])
    with raises("InvalidTagParameterException"):
        ecr.create_repository(repositoryName=unique_name("tags"),
                              tags=[{"Key": "k", "Value": "1"}, {"Key": "k", "Value": "2"}])
    with raises("TooManyTagsException"):
        ecr.create_repository(repositoryName=unique_name("tags"),
                              tags=[{"Key": f"k{i}", "Value": "v"} for i in range(51)])
    with raises("InvalidTagParameterException"):
        ecr.create_repository(repositoryName=unique_name("tags"), tags=[{"Key": "k" * 129, "Value": "v"}])
    with raises("InvalidTagParameterException"):
        ecr.create_repository(repositoryName=unique_name("tags"), tags=[{"Key": "k", "Value": "v" * 257}])


# -- DescribeRepositories -------------------------------------------------------------------

def test_describe_repositories_by_name(ecr: Any) -> None:
    names = sorted(unique_name("byname") for _ in range(3))
    for name in names:
        ecr.create_repository(repositoryName=name)
    found = ecr.describe_repositories(repositoryNames=[names[2], names[0]])["repositories"]
    assert sorted(r["repositoryName"] for r in found) == [names[0], names[2]]
    assert all(r["repositoryArn"] == arn(r["repositoryName"]) for r in found)


def test_describe_repositories_not_found(ecr: Any, repo: str) -> None:
    missing = unique_name("missing")
    message = (f"The repository with name '{missing}' does not exist in the registry with id '{ACCOUNT}'")
    with raises("RepositoryNotFoundException", message):
        ecr.describe_repositories(repositoryNames=[missing])
    with raises("RepositoryNotFoundException", missing):
        ecr.describe_repositories(repositoryNames=[repo, missing])


def test_describe_repositories_pagination(ecr: Any) -> None:
    mine = {unique_name("page") for _ in range(5)}
    for name in mine:
        ecr.create_repository(repositoryName=name)
    seen: list[str] = []
    pages = 0
    kwargs: dict[str, Any] = {"maxResults": 2}
    while True:
        page = ecr.describe_repositories(**kwargs)
        pages += 1
        assert len(page["repositories"]) <= 2
        seen.extend(r["repositoryName"] for r in page["repositories"])
        if "nextToken" not in page:
            break
        kwargs["nextToken"] = page["nextToken"]
    assert len(seen) == len(set(seen)), "a repository was listed twice"
    assert mine <= set(seen)
    assert pages >= 3
    assert seen == sorted(seen)
    # botocore's paginator walks the same pages.
    paginated = [r["repositoryName"] for p in ecr.get_paginator("describe_repositories").paginate(
        PaginationConfig={"PageSize": 3}) for r in p["repositories"]]
    assert set(seen) <= set(paginated)


def test_describe_repositories_bad_token_and_max_results_with_names(ecr: Any, repo: str) -> None:
    with raises("InvalidParameterException", "nextToken"):
        ecr.describe_repositories(nextToken="not-a-token")
    with raises("InvalidParameterException", "maxResults"):
        ecr.describe_repositories(repositoryNames=[repo], maxResults=5)


# -- DeleteRepository -----------------------------------------------------------------------

def test_delete_empty_repository(ecr: Any, repo: str) -> None:
    deleted = ecr.delete_repository(repositoryName=repo)["repository"]
    assert deleted["repositoryName"] == repo
    assert deleted["repositoryArn"] == arn(repo)
    with raises("RepositoryNotFoundException"):
        ecr.describe_repositories(repositoryNames=[repo])
    with raises("RepositoryNotFoundException", repo):
        ecr.delete_repository(repositoryName=repo)


def test_delete_repository_not_empty_then_force(ecr: Any, repo: str) -> None:
    push_ecr(ecr, repo, build_image(), "v1")
    with raises("RepositoryNotEmptyException", repo):
        ecr.delete_repository(repositoryName=repo)
    assert ecr.describe_repositories(repositoryNames=[repo])["repositories"]
    ecr.delete_repository(repositoryName=repo, force=True)
    with raises("RepositoryNotFoundException"):
        ecr.list_images(repositoryName=repo)
    # The name is free again, and the new repository starts empty.
    ecr.create_repository(repositoryName=repo)
    assert ecr.list_images(repositoryName=repo)["imageIds"] == []


# -- PutImageTagMutability / PutImageScanningConfiguration ----------------------------------

def test_put_image_tag_mutability(ecr: Any, repo: str) -> None:
    out = ecr.put_image_tag_mutability(repositoryName=repo, imageTagMutability="IMMUTABLE")
    assert out["repositoryName"] == repo and out["registryId"] == ACCOUNT
    assert out["imageTagMutability"] == "IMMUTABLE"
    assert ecr.describe_repositories(repositoryNames=[repo])["repositories"][0]["imageTagMutability"] == "IMMUTABLE"
    filters = [{"filterType": "WILDCARD", "filter": "snapshot-*"}]
    out = ecr.put_image_tag_mutability(repositoryName=repo, imageTagMutability="MUTABLE_WITH_EXCLUSION",
                                       imageTagMutabilityExclusionFilters=filters)
    assert out["imageTagMutabilityExclusionFilters"] == filters
    described = ecr.describe_repositories(repositoryNames=[repo])["repositories"][0]
    assert described["imageTagMutability"] == "MUTABLE_WITH_EXCLUSION"
    assert described["imageTagMutabilityExclusionFilters"] == filters
    # Back to plain MUTABLE drops the filters.
    out = ecr.put_image_tag_mutability(repositoryName=repo, imageTagMutability="MUTABLE")
    assert "imageTagMutabilityExclusionFilters" not in out
    described = ecr.describe_repositories(repositoryNames=[repo])["repositories"][0]
    assert "imageTagMutabilityExclusionFilters" not in described
    with raises("InvalidParameterException"):
        ecr.put_image_tag_mutability(repositoryName=repo, imageTagMutability="IMMUTABLE_WITH_EXCLUSION")
    with raises("RepositoryNotFoundException"):
        ecr.put_image_tag_mutability(repositoryName=unique_name("gone"), imageTagMutability="IMMUTABLE")


def test_put_image_scanning_configuration(ecr: Any, repo: str) -> None:
    out = ecr.put_image_scanning_configuration(repositoryName=repo, imageScanningConfiguration={"scanOnPush": True})
    assert out == {**out, "registryId": ACCOUNT, "repositoryName": repo,
                   "imageScanningConfiguration": {"scanOnPush": True}}
    described = ecr.describe_repositories(repositoryNames=[repo])["repositories"][0]
    assert described["imageScanningConfiguration"] == {"scanOnPush": True}
    ecr.put_image_scanning_configuration(repositoryName=repo, imageScanningConfiguration={"scanOnPush": False})
    described = ecr.describe_repositories(repositoryNames=[repo])["repositories"][0]
    assert described["imageScanningConfiguration"] == {"scanOnPush": False}
    with raises("RepositoryNotFoundException"):
        ecr.put_image_scanning_configuration(repositoryName=unique_name("gone"),
                                             imageScanningConfiguration={"scanOnPush": True})


# -- resource tags --------------------------------------------------------------------------

def test_tag_untag_list_tags(ecr: Any, repo: str) -> None:
    resource = arn(repo)
    ecr.tag_resource(resourceArn=resource, tags=[{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}])
    ecr.tag_resource(resourceArn=resource, tags=[{"Key": "b", "Value": "3"}, {"Key": "c", "Value": ""}])
    tags = {t["Key"]: t["Value"] for t in ecr.list_tags_for_resource(resourceArn=resource)["tags"]}
    assert tags == {"a": "1", "b": "3", "c": ""}
    ecr.untag_resource(resourceArn=resource, tagKeys=["a", "c", "never-set"])
    assert ecr.list_tags_for_resource(resourceArn=resource)["tags"] == [{"Key": "b", "Value": "3"}]
    with raises("TooManyTagsException"):
        ecr.tag_resource(resourceArn=resource, tags=[{"Key": f"k{i}", "Value": "v"} for i in range(50)])
    with raises("InvalidTagParameterException"):
        ecr.tag_resource(resourceArn=resource, tags=[{"Key": "aws:x", "Value": "v"}])


def test_resource_tags_errors(ecr: Any) -> None:
    with raises("InvalidParameterException", "resourceArn"):
        ecr.list_tags_for_resource(resourceArn="arn:aws:s3:::bucket")
    with raises("RepositoryNotFoundException"):
        ecr.list_tags_for_resource(resourceArn=arn(unique_name("gone")))
    with raises("RepositoryNotFoundException"):
        ecr.tag_resource(resourceArn=arn(unique_name("gone")), tags=[{"Key": "a", "Value": "b"}])
    with raises("RepositoryNotFoundException"):
        ecr.untag_resource(resourceArn=arn(unique_name("gone")), tagKeys=["a"])


def test_resource_tags_of_another_account_look_like_not_found(ecr: Any, repo: str) -> None:
    with raises("RepositoryNotFoundException"):
        ecr.list_tags_for_resource(resourceArn=arn(repo, "111122223333"))


# -- DescribeRegistry -----------------------------------------------------------------------

def test_describe_registry(ecr: Any) -> None:
    out = ecr.describe_registry()
    assert out["registryId"] == ACCOUNT
    assert out["replicationConfiguration"] == {"rules": []}
