"""The JSON 1.1 protocol: dispatch, operation coverage, input validation and registry ids."""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import botocore
import botocore.session
import pytest

from cargohold.app import create_app
from cargohold.config import Config
from tests.ecr.helpers import (
    ACCOUNT,
    AMZ_JSON,
    OTHER_ACCOUNT,
    build_image,
    ecr_client,
    ecr_error,
    push_ecr,
    raises,
    sha256,
    signed_request,
    unique_name,
)
from tests.support.server import ServerProcess


def _botocore_operations() -> list[str]:
    return list(botocore.session.get_session().get_service_model("ecr").operation_names)


def _registered_operations() -> set[str]:
    """What the application registers, read from an in-process instance of it."""
    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(Config(data_dir=str(Path(tmp) / "data")))
        try:
            return set(app.ecr.handlers)
        finally:
            app.services.meta.engine.dispose()


# -- operation coverage ---------------------------------------------------------------------

def test_operation_coverage(server: ServerProcess, capsys: pytest.CaptureFixture[str],
                            record_property: Any) -> None:
    """Every operation in botocore's ECR model either works or answers 501 NotImplementedException."""
    implemented, missing = [], []
    for name in _botocore_operations():
        # An empty body: an implemented operation answers 200 or a validation/service error, never 501.
        r = signed_request(server, name, {})
        if r.status_code == 501:
            message = ecr_error(r, "NotImplementedException", 501)
            assert name in message, message
            missing.append(name)
        else:
            assert r.status_code in (200, 400), (name, r.status_code, r.text)
            if r.status_code == 400:
                assert r.json()["__type"] != "UnknownOperationException", name
            implemented.append(name)
    assert set(implemented) == _registered_operations()
    total = len(implemented) + len(missing)
    report = (f"ECR operations in botocore's model: {total}; implemented {len(implemented)}, "
              f"not implemented {len(missing)}\n  implemented: {', '.join(sorted(implemented))}\n"
              f"  not implemented: {', '.join(sorted(missing))}")
    record_property("ecr_operation_coverage", report)
    with capsys.disabled():
        print("\n" + report)
    core = {"CreateRepository", "DescribeRepositories", "DeleteRepository", "PutImageTagMutability",
            "PutImageScanningConfiguration", "ListImages", "DescribeImages", "BatchGetImage", "BatchDeleteImage",
            "PutImage", "BatchCheckLayerAvailability", "InitiateLayerUpload", "UploadLayerPart",
            "CompleteLayerUpload", "GetDownloadUrlForLayer", "ListImageReferrers", "DescribeRegistry",
            "TagResource", "UntagResource", "ListTagsForResource", "GetAuthorizationToken"}
    assert core <= set(implemented)


def test_not_implemented_via_boto3(ecr: Any) -> None:
    model = botocore.session.get_session().get_service_model("ecr")
    candidates = [name for name in sorted(set(model.operation_names) - _registered_operations())
                  if not (model.operation_model(name).input_shape is not None
                          and model.operation_model(name).input_shape.required_members)]
    if not candidates:
        pytest.skip("every operation without required input is implemented")
    name = candidates[0]
    with raises("NotImplementedException", name) as info:
        getattr(ecr, botocore.xform_name(name))()
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 501


# -- dispatch -------------------------------------------------------------------------------

@pytest.mark.parametrize("target", [
    "AmazonEC2ContainerRegistry_V20150921.NoSuchOperation", "AmazonEC2ContainerRegistry_V20150921.",
    "SomeOtherService.DescribeRepositories", "DescribeRepositories", "",
])
def test_unknown_target(server: ServerProcess, target: str) -> None:
    r = signed_request(server, "", {}, target=target)
    ecr_error(r, "UnknownOperationException")


def test_success_response_shape(server: ServerProcess) -> None:
    r = signed_request(server, "DescribeRepositories", {"maxResults": 1})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith(AMZ_JSON)
    assert re.fullmatch(r"[0-9a-f-]{36}", r.headers["x-amzn-requestid"])
    assert isinstance(r.json()["repositories"], list)


@pytest.mark.parametrize("body", [b"{", b"not json", b"[1, 2]", b'"text"', b"\xff\xfe", b"null"])
def test_malformed_json(server: ServerProcess, body: bytes) -> None:
    ecr_error(signed_request(server, "DescribeRepositories", body), "SerializationException")


def test_empty_body_is_an_empty_object(server: ServerProcess) -> None:
    assert signed_request(server, "DescribeRepositories", b"").status_code == 200


@pytest.mark.parametrize(("operation", "body"), [
    ("CreateRepository", {"repositoryName": 5}),
    ("CreateRepository", {"repositoryName": ["a-b"]}),
    ("CreateRepository", {"repositoryName": "ab", "tags": {"Key": "k"}}),
    ("CreateRepository", {"repositoryName": "ab", "tags": ["k=v"]}),
    ("CreateRepository", {"repositoryName": "ab", "imageScanningConfiguration": {"scanOnPush": "yes"}}),
    ("DescribeRepositories", {"maxResults": "10"}),
    ("DescribeRepositories", {"maxResults": 1.5}),
    ("DescribeRepositories", {"maxResults": True}),
    ("DescribeRepositories", {"repositoryNames": "ab"}),
    ("ListImages", {"repositoryName": "ab", "filter": "TAGGED"}),
    ("BatchGetImage", {"repositoryName": "ab", "imageIds": ["v1"]}),
    ("BatchGetImage", {"repositoryName": "ab", "imageIds": [{"imageTag": 1}]}),
    ("TagResource", {"resourceArn": "arn:aws:ecr:us-east-1:000000000000:repository/ab",
                     "tags": [{"Key": "k", "Value": None, "Extra": 1}, {"Key": ["k"], "Value": "v"}]}),
    ("UploadLayerPart", {"repositoryName": "ab", "uploadId": "01234567-89ab-cdef-0123-456789abcdef",
                         "partFirstByte": 0, "partLastByte": 0, "layerPartBlob": "!!not base64!!"}),
    ("UploadLayerPart", {"repositoryName": "ab", "uploadId": "01234567-89ab-cdef-0123-456789abcdef",
                         "partFirstByte": 0, "partLastByte": 0, "layerPartBlob": 42}),
])
def test_members_of_the_wrong_type(server: ServerProcess, operation: str, body: dict[str, Any]) -> None:
    ecr_error(signed_request(server, operation, body), "SerializationException")


@pytest.mark.parametrize(("operation", "body", "where"), [
    ("CreateRepository", {"repositoryName": "a"}, "repositoryName"),
    ("CreateRepository", {"repositoryName": "a" * 257}, "repositoryName"),
    ("CreateRepository", {}, "repositoryName"),
    ("CreateRepository", {"repositoryName": "UPPER"}, "repositoryName"),
    ("CreateRepository", {"repositoryName": "ab", "imageTagMutability": "SOMETIMES"}, "imageTagMutability"),
    ("DescribeRepositories", {"maxResults": 0}, "maxResults"),
    ("DescribeRepositories", {"maxResults": 1001}, "maxResults"),
    ("DescribeRepositories", {"repositoryNames": []}, "repositoryNames"),
    ("DescribeRepositories", {"registryId": "12345"}, "registryId"),
    ("ListImages", {"repositoryName": "ab", "filter": {"tagStatus": "MAYBE"}}, "filter.tagStatus"),
    ("BatchGetImage", {"repositoryName": "ab", "imageIds": [{"imageTag": "t" * 301}]}, "imageIds.1.member.imageTag"),
    ("BatchGetImage", {"repositoryName": "ab", "imageIds": []}, "imageIds"),
    ("PutImage", {"repositoryName": "ab", "imageManifest": ""}, "imageManifest"),
    ("GetAuthorizationToken", {"registryIds": [ACCOUNT] * 11}, "registryIds"),
    ("ListImageReferrers", {"repositoryName": "ab", "subjectId": {"imageDigest": sha256(b"")}, "maxResults": 51},
     "maxResults"),
])
def test_constraint_violations(server: ServerProcess, operation: str, body: dict[str, Any], where: str) -> None:
    message = ecr_error(signed_request(server, operation, body), "ValidationException")
    assert re.match(r"\d+ validation errors? detected: ", message), message
    assert f"at '{where}" in message, message


def test_several_violations_are_counted(server: ServerProcess) -> None:
    message = ecr_error(signed_request(server, "CreateRepository", {"repositoryName": "a",
                                                                     "imageTagMutability": "NO"}),
                        "ValidationException")
    assert message.startswith("2 validation errors detected: "), message


def test_unknown_members_are_ignored(server: ServerProcess) -> None:
    r = signed_request(server, "DescribeRegistry", {"somethingElse": [1, 2, 3]})
    assert r.status_code == 200, r.text


def test_boto3_without_client_side_validation(server: ServerProcess) -> None:
    lax = ecr_client(server, parameter_validation=False)
    with raises("ValidationException", "repositoryName"):
        lax.create_repository(repositoryName="x")
    with raises("ValidationException", "maxResults"):
        lax.describe_repositories(maxResults=0)


# -- another account's registry id ----------------------------------------------------------

def _not_found(server: ServerProcess, operation: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    r = signed_request(server, operation, body)
    return r.status_code, r.json()


@pytest.mark.parametrize(("operation", "extra"), [
    ("ListImages", {}),
    ("DescribeImages", {}),
    ("DeleteRepository", {"force": True}),
    ("BatchGetImage", {"imageIds": [{"imageTag": "v1"}]}),
    ("BatchDeleteImage", {"imageIds": [{"imageTag": "v1"}]}),
    ("PutImageTagMutability", {"imageTagMutability": "IMMUTABLE"}),
    ("BatchCheckLayerAvailability", {"layerDigests": [sha256(b"")]}),
    ("InitiateLayerUpload", {}),
    ("GetDownloadUrlForLayer", {"layerDigest": sha256(b"")}),
])
def test_other_accounts_registry_id_looks_like_not_found(ecr: Any, repo: str, server: ServerProcess,
                                                         operation: str, extra: dict[str, Any]) -> None:
    push_ecr(ecr, repo, build_image(), "v1")
    missing = unique_name("missing")
    status_foreign, foreign = _not_found(server, operation, {"repositoryName": repo, "registryId": OTHER_ACCOUNT,
                                                             **extra})
    status_absent, absent = _not_found(server, operation, {"repositoryName": missing, "registryId": OTHER_ACCOUNT,
                                                           **extra})
    status_own, own = _not_found(server, operation, {"repositoryName": missing, "registryId": ACCOUNT, **extra})
    assert status_foreign == status_absent == status_own == 400
    assert foreign["__type"] == absent["__type"] == own["__type"] == "RepositoryNotFoundException"
    # Whether or not a repository of that name exists here, the answer is the same.
    assert foreign["message"].replace(repo, "NAME") == absent["message"].replace(missing, "NAME")
    assert foreign["message"] == (f"The repository with name '{repo}' does not exist in the registry with id "
                                  f"'{OTHER_ACCOUNT}'")
    assert own["message"].replace(ACCOUNT, OTHER_ACCOUNT).replace(missing, repo) == foreign["message"]
    assert set(foreign) == set(own)
    # Nothing happened to the repository here.
    assert ecr.list_images(repositoryName=repo)["imageIds"]
    assert ecr.describe_repositories(repositoryNames=[repo])["repositories"][0]["imageTagMutability"] == "MUTABLE"


def test_other_accounts_registry_id_in_describe_repositories(ecr: Any, repo: str, server: ServerProcess) -> None:
    with raises("RepositoryNotFoundException", f"'{repo}' does not exist in the registry with id '{OTHER_ACCOUNT}'"):
        ecr.describe_repositories(registryId=OTHER_ACCOUNT, repositoryNames=[repo])
    # Listing another account's registry (without being granted it) shows nothing of this account's:
    # either an empty listing or a refusal that reads like "not found".
    try:
        listed = ecr.describe_repositories(registryId=OTHER_ACCOUNT)
    except ecr.exceptions.RepositoryNotFoundException as err:
        assert f"registry with id '{OTHER_ACCOUNT}'" in err.response["Error"]["Message"]
    else:
        assert listed["repositories"] == [] and "nextToken" not in listed
    # The own account id is fine.
    assert ecr.describe_repositories(registryId=ACCOUNT, repositoryNames=[repo])["repositories"]


def test_registry_id_of_the_own_account(ecr: Any, repo: str) -> None:
    assert ecr.list_images(registryId=ACCOUNT, repositoryName=repo)["imageIds"] == []


def test_json_numbers_for_timestamps(server: ServerProcess, repo: str) -> None:
    """Timestamps go out as epoch seconds (JSON numbers), as the JSON 1.1 protocol has them."""
    r = signed_request(server, "DescribeRepositories", {"repositoryNames": [repo]})
    created = json.loads(r.content)["repositories"][0]["createdAt"]
    assert isinstance(created, int | float) and created > 1_600_000_000
