"""The IAM and STS faces through boto3 (and once through the AWS CLI): every implemented operation.

Each test works on users, groups and policies of its own (unique names), so the tests share the
package's server and never assume an empty account.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.policy.helpers import (
    HOME,
    REGION,
    AwsCli,
    allow,
    aws_client,
    cargohold,
    need_aws_cli,
    new_user,
    policy,
    raises,
    unique,
)
from tests.support.server import ServerProcess

LIST_REPOS = policy(allow("ecr:DescribeRepositories"))


def can_list_repositories(user_ecr: Any) -> bool:
    try:
        user_ecr.describe_repositories()
    except Exception as exc:  # AccessDeniedException from the policy engine
        assert "AccessDeniedException" in str(exc), exc
        return False
    return True


# -- users ----------------------------------------------------------------------------------

def test_create_get_list_users_with_pagination(iam: Any) -> None:
    path = f"/{unique('pg')}/"
    names = sorted(unique(f"u{i}") for i in range(5))
    for name in names:
        created = iam.create_user(UserName=name, Path=path)["User"]
        assert created["UserName"] == name and created["Path"] == path
        assert created["Arn"] == f"arn:aws:iam::{HOME}:user{path}{name}"
        assert created["UserId"].startswith("AIDA")
    got = iam.get_user(UserName=names[0])["User"]
    assert got["Arn"] == f"arn:aws:iam::{HOME}:user{path}{names[0]}"

    first = iam.list_users(PathPrefix=path, MaxItems=2)
    assert [u["UserName"] for u in first["Users"]] == names[:2]
    assert first["IsTruncated"] is True and first["Marker"]
    second = iam.list_users(PathPrefix=path, MaxItems=2, Marker=first["Marker"])
    assert [u["UserName"] for u in second["Users"]] == names[2:4]
    third = iam.list_users(PathPrefix=path, MaxItems=2, Marker=second["Marker"])
    assert [u["UserName"] for u in third["Users"]] == names[4:]
    assert third["IsTruncated"] is False and "Marker" not in third
    # boto3's paginator follows Marker/IsTruncated by itself.
    pages = iam.get_paginator("list_users").paginate(PathPrefix=path, PaginationConfig={"PageSize": 2})
    assert [u["UserName"] for page in pages for u in page["Users"]] == names
    everyone = [u["UserName"] for u in iam.list_users(MaxItems=1000)["Users"]]
    assert set(names) <= set(everyone)

    with raises("EntityAlreadyExists", names[0]):
        iam.create_user(UserName=names[0])
    with raises("NoSuchEntity", "cannot be found"):
        iam.get_user(UserName=unique("nobody"))
    with raises("ValidationError"):
        iam.create_user(UserName="no spaces allowed")


def test_delete_user_conflicts_until_everything_is_removed(iam: Any) -> None:
    user = new_user(iam, "del", LIST_REPOS, policy_name="inline")
    group = unique("grp")
    iam.create_group(GroupName=group)
    iam.add_user_to_group(GroupName=group, UserName=user.name)
    managed = iam.create_policy(PolicyName=unique("pol"), PolicyDocument=LIST_REPOS)["Policy"]["Arn"]
    iam.attach_user_policy(UserName=user.name, PolicyArn=managed)

    with raises("DeleteConflict", "access keys"):
        iam.delete_user(UserName=user.name)
    iam.delete_access_key(UserName=user.name, AccessKeyId=user.key_id)
    with raises("DeleteConflict", "inline policies"):
        iam.delete_user(UserName=user.name)
    iam.delete_user_policy(UserName=user.name, PolicyName="inline")
    with raises("DeleteConflict", "attached policies"):
        iam.delete_user(UserName=user.name)
    iam.detach_user_policy(UserName=user.name, PolicyArn=managed)
    with raises("DeleteConflict", "groups"):
        iam.delete_user(UserName=user.name)
    iam.remove_user_from_group(GroupName=group, UserName=user.name)
    iam.delete_user(UserName=user.name)
    with raises("NoSuchEntity"):
        iam.get_user(UserName=user.name)
    with raises("NoSuchEntity"):
        iam.delete_user(UserName=user.name)
    iam.delete_policy(PolicyArn=managed)


# -- access keys ----------------------------------------------------------------------------

def test_access_keys_limit_update_delete(iam: Any, server: ServerProcess) -> None:
    user = new_user(iam, "keys")
    second = iam.create_access_key(UserName=user.name)["AccessKey"]
    assert second["Status"] == "Active" and second["UserName"] == user.name
    assert second["AccessKeyId"].startswith("AKIA") and len(second["SecretAccessKey"]) >= 40
    with raises("LimitExceeded", "AccessKeysPerUser"):
        iam.create_access_key(UserName=user.name)

    listed = iam.list_access_keys(UserName=user.name)
    assert sorted(k["AccessKeyId"] for k in listed["AccessKeyMetadata"]) == sorted(
        [user.key_id, second["AccessKeyId"]])
    assert {k["Status"] for k in listed["AccessKeyMetadata"]} == {"Active"}
    assert all("SecretAccessKey" not in k for k in listed["AccessKeyMetadata"])

    sts = user.client("sts", server)
    assert sts.get_caller_identity()["Arn"] == user.arn
    iam.update_access_key(UserName=user.name, AccessKeyId=user.key_id, Status="Inactive")
    statuses = {k["AccessKeyId"]: k["Status"] for k in iam.list_access_keys(UserName=user.name)["AccessKeyMetadata"]}
    assert statuses == {user.key_id: "Inactive", second["AccessKeyId"]: "Active"}
    with raises("InvalidClientTokenId"):
        sts.get_caller_identity()
    iam.update_access_key(UserName=user.name, AccessKeyId=user.key_id, Status="Active")
    assert sts.get_caller_identity()["Arn"] == user.arn
    with raises("ValidationError", "enum"):
        iam.update_access_key(UserName=user.name, AccessKeyId=user.key_id, Status="Paused")

    iam.delete_access_key(UserName=user.name, AccessKeyId=second["AccessKeyId"])
    assert [k["AccessKeyId"] for k in iam.list_access_keys(UserName=user.name)["AccessKeyMetadata"]] == [user.key_id]
    with raises("InvalidClientTokenId"):
        aws_client("sts", server, second["AccessKeyId"], second["SecretAccessKey"]).get_caller_identity()
    with raises("NoSuchEntity"):
        iam.delete_access_key(UserName=user.name, AccessKeyId=second["AccessKeyId"])
    with raises("NoSuchEntity"):
        iam.update_access_key(UserName=user.name, AccessKeyId="AKIANOSUCHKEY0000000", Status="Inactive")
    # A wrong secret for a real key: the signature does not match.
    with raises("SignatureDoesNotMatch"):
        aws_client("sts", server, user.key_id, "x" * 40).get_caller_identity()


# -- inline user policies -------------------------------------------------------------------

MALFORMED = {
    "not JSON": "{not json",
    "no Statement": json.dumps({"Version": "2012-10-17"}),
    "Principal in an identity policy": policy({"Effect": "Allow", "Principal": "*", "Action": "ecr:*",
                                               "Resource": "*"}),
    "action without a vendor": policy(allow("BatchGetImage")),
    "no Resource": policy({"Effect": "Allow", "Action": "ecr:*"}),
    "bad Effect": policy({"Effect": "Permit", "Action": "ecr:*", "Resource": "*"}),
}


def test_user_inline_policies_round_trip(iam: Any, server: ServerProcess) -> None:
    user = new_user(iam, "inline")
    ecr = user.client("ecr", server)
    assert not can_list_repositories(ecr)
    iam.put_user_policy(UserName=user.name, PolicyName="list", PolicyDocument=LIST_REPOS)
    assert can_list_repositories(ecr)  # effective on the very next request
    got = iam.get_user_policy(UserName=user.name, PolicyName="list")
    assert got["UserName"] == user.name and got["PolicyName"] == "list"
    assert got["PolicyDocument"] == json.loads(LIST_REPOS)  # URL-decoded and parsed by botocore
    other = policy(allow("ecr:ListImages"))
    iam.put_user_policy(UserName=user.name, PolicyName="images", PolicyDocument=other)
    assert sorted(iam.list_user_policies(UserName=user.name)["PolicyNames"]) == ["images", "list"]
    iam.put_user_policy(UserName=user.name, PolicyName="images", PolicyDocument=LIST_REPOS)  # replaces
    assert iam.get_user_policy(UserName=user.name, PolicyName="images")["PolicyDocument"] == json.loads(LIST_REPOS)

    iam.delete_user_policy(UserName=user.name, PolicyName="list")
    iam.delete_user_policy(UserName=user.name, PolicyName="images")
    assert iam.list_user_policies(UserName=user.name)["PolicyNames"] == []
    assert not can_list_repositories(ecr)
    with raises("NoSuchEntity", "list"):
        iam.get_user_policy(UserName=user.name, PolicyName="list")
    with raises("NoSuchEntity"):
        iam.delete_user_policy(UserName=user.name, PolicyName="list")
    with raises("NoSuchEntity"):
        iam.put_user_policy(UserName=unique("nobody"), PolicyName="p", PolicyDocument=LIST_REPOS)


@pytest.mark.parametrize("what", sorted(MALFORMED))
def test_malformed_policy_documents(iam: Any, what: str) -> None:
    user = new_user(iam, "bad")
    with raises("MalformedPolicyDocument"):
        iam.put_user_policy(UserName=user.name, PolicyName="p", PolicyDocument=MALFORMED[what])
    assert iam.list_user_policies(UserName=user.name)["PolicyNames"] == []
    with raises("MalformedPolicyDocument"):
        iam.create_policy(PolicyName=unique("bad"), PolicyDocument=MALFORMED[what])


# -- managed policies -----------------------------------------------------------------------

def test_managed_policies_attach_detach_delete(iam: Any, server: ServerProcess) -> None:
    user = new_user(iam, "managed")
    ecr = user.client("ecr", server)
    name = unique("readers")
    created = iam.create_policy(PolicyName=name, PolicyDocument=LIST_REPOS, Description="list repositories")["Policy"]
    arn = created["Arn"]
    assert arn == f"arn:aws:iam::{HOME}:policy/{name}"
    assert created["AttachmentCount"] == 0 and created["DefaultVersionId"] == "v1"
    got = iam.get_policy(PolicyArn=arn)["Policy"]
    assert got["PolicyName"] == name and got["Description"] == "list repositories"
    with raises("EntityAlreadyExists", name):
        iam.create_policy(PolicyName=name, PolicyDocument=LIST_REPOS)

    spare = iam.create_policy(PolicyName=unique("spare"), PolicyDocument=LIST_REPOS)["Policy"]["Arn"]
    listed = [p["Arn"] for p in iam.list_policies(Scope="Local", MaxItems=1000)["Policies"]]
    assert {arn, spare} <= set(listed)
    assert iam.list_policies(Scope="AWS")["Policies"] == []  # no AWS managed policies here
    page = iam.list_policies(Scope="Local", MaxItems=1)
    assert len(page["Policies"]) == 1 and page["IsTruncated"] is True and page["Marker"]
    pages = iam.get_paginator("list_policies").paginate(Scope="Local", PaginationConfig={"PageSize": 1})
    assert [p["Arn"] for page in pages for p in page["Policies"]] == listed
    iam.delete_policy(PolicyArn=spare)

    assert not can_list_repositories(ecr)
    iam.attach_user_policy(UserName=user.name, PolicyArn=arn)
    assert can_list_repositories(ecr)
    attached = iam.list_attached_user_policies(UserName=user.name)["AttachedPolicies"]
    assert attached == [{"PolicyName": name, "PolicyArn": arn}]
    assert iam.get_policy(PolicyArn=arn)["Policy"]["AttachmentCount"] == 1
    with raises("DeleteConflict", "attached"):
        iam.delete_policy(PolicyArn=arn)
    with raises("NoSuchEntity"):
        iam.attach_user_policy(UserName=user.name, PolicyArn=f"arn:aws:iam::{HOME}:policy/{unique('nope')}")

    iam.detach_user_policy(UserName=user.name, PolicyArn=arn)
    assert iam.list_attached_user_policies(UserName=user.name)["AttachedPolicies"] == []
    assert not can_list_repositories(ecr)
    with raises("NoSuchEntity"):
        iam.detach_user_policy(UserName=user.name, PolicyArn=arn)
    iam.delete_policy(PolicyArn=arn)
    with raises("NoSuchEntity"):
        iam.get_policy(PolicyArn=arn)


# -- groups ---------------------------------------------------------------------------------

def test_group_policies_grant_their_members(iam: Any, server: ServerProcess) -> None:
    member, outsider = new_user(iam, "member"), new_user(iam, "outsider")
    member_ecr, outsider_ecr = member.client("ecr", server), outsider.client("ecr", server)
    group = unique("team")
    created = iam.create_group(GroupName=group)["Group"]
    assert created["Arn"] == f"arn:aws:iam::{HOME}:group/{group}" and created["GroupId"].startswith("AGPA")
    with raises("EntityAlreadyExists"):
        iam.create_group(GroupName=group)
    iam.add_user_to_group(GroupName=group, UserName=member.name)

    # An inline group policy.
    iam.put_group_policy(GroupName=group, PolicyName="list", PolicyDocument=LIST_REPOS)
    assert iam.list_group_policies(GroupName=group)["PolicyNames"] == ["list"]
    assert iam.get_group_policy(GroupName=group, PolicyName="list")["PolicyDocument"] == json.loads(LIST_REPOS)
    assert can_list_repositories(member_ecr)
    assert not can_list_repositories(outsider_ecr)
    iam.delete_group_policy(GroupName=group, PolicyName="list")
    assert not can_list_repositories(member_ecr)
    with raises("MalformedPolicyDocument"):
        iam.put_group_policy(GroupName=group, PolicyName="bad", PolicyDocument="[]")

    # A managed policy attached to the group.
    arn = iam.create_policy(PolicyName=unique("grp-pol"), PolicyDocument=LIST_REPOS)["Policy"]["Arn"]
    iam.attach_group_policy(GroupName=group, PolicyArn=arn)
    assert [p["PolicyArn"] for p in iam.list_attached_group_policies(GroupName=group)["AttachedPolicies"]] == [arn]
    assert can_list_repositories(member_ecr)
    assert not can_list_repositories(outsider_ecr)

    # Leaving the group takes the access away.
    iam.remove_user_from_group(GroupName=group, UserName=member.name)
    assert not can_list_repositories(member_ecr)
    with raises("NoSuchEntity"):
        iam.remove_user_from_group(GroupName=group, UserName=member.name)
    with raises("NoSuchEntity"):
        iam.add_user_to_group(GroupName=unique("nogroup"), UserName=member.name)
    iam.detach_group_policy(GroupName=group, PolicyArn=arn)
    iam.delete_policy(PolicyArn=arn)


# -- STS, unsupported operations, refusals --------------------------------------------------

def test_get_caller_identity(sts: Any, iam: Any, server: ServerProcess) -> None:
    root = sts.get_caller_identity()
    assert root["Account"] == HOME and root["Arn"] == f"arn:aws:iam::{HOME}:root" and root["UserId"] == HOME
    user = new_user(iam, "whoami")
    me = user.client("sts", server).get_caller_identity()
    assert me["Account"] == HOME and me["Arn"] == user.arn
    assert me["UserId"] == iam.get_user(UserName=user.name)["User"]["UserId"]
    # STS asks for no permission; IAM's GetUser (on oneself too) does.
    with raises("AccessDenied"):
        user.client("iam", server).get_user()


def test_unimplemented_iam_operations(iam: Any) -> None:
    with raises("NotImplemented", "ListRoles"):
        iam.list_roles()
    with raises("NotImplemented", "CreateRole"):
        iam.create_role(RoleName=unique("role"), AssumeRolePolicyDocument=policy(allow("sts:AssumeRole")))


def _signed_iam(server: ServerProcess, body: str, *, sign: bool = True) -> httpx.Response:
    request = AWSRequest(method="POST", url=server.url + "/", data=body.encode(),
                         headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    if sign:
        SigV4Auth(Credentials(server.key_id, server.secret), "iam", REGION).add_auth(request)
    prepared = request.prepare()
    return httpx.post(prepared.url, content=body.encode(), headers=dict(prepared.headers.items()), timeout=30)


def test_unknown_action_and_unsigned_request(server: ServerProcess) -> None:
    unknown = _signed_iam(server, "Action=FlyToTheMoon&Version=2010-05-08")
    assert unknown.status_code == 400, unknown.text
    assert "<Code>InvalidAction</Code>" in unknown.text and "FlyToTheMoon" in unknown.text
    assert 'xmlns="https://iam.amazonaws.com/doc/2010-05-08/"' in unknown.text
    unsigned = _signed_iam(server, "Action=ListUsers&Version=2010-05-08", sign=False)
    assert unsigned.status_code == 403, unsigned.text
    assert "<Code>MissingAuthenticationToken</Code>" in unsigned.text


def test_user_without_iam_rights_is_refused(iam: Any, server: ServerProcess) -> None:
    user = new_user(iam, "noiam", LIST_REPOS)
    own = user.client("iam", server)
    calls: dict[str, Callable[[], Any]] = {
        "iam:ListUsers": lambda: own.list_users(),
        "iam:CreateUser": lambda: own.create_user(UserName=unique("sneaky")),
        "iam:PutUserPolicy": lambda: own.put_user_policy(UserName=user.name, PolicyName="all",
                                                         PolicyDocument=policy(allow("*"))),
        "iam:CreateAccessKey": lambda: own.create_access_key(),
        "iam:CreatePolicy": lambda: own.create_policy(PolicyName=unique("p"), PolicyDocument=LIST_REPOS),
    }
    for action, call in calls.items():
        with raises("AccessDenied", f"User: {user.arn} is not authorized to perform: {action}"):
            call()
    assert iam.list_user_policies(UserName=user.name)["PolicyNames"] == ["access"]
    assert len(iam.list_access_keys(UserName=user.name)["AccessKeyMetadata"]) == 1


def test_self_service_keys_with_a_policy_variable(iam: Any, server: ServerProcess) -> None:
    """The IAM documentation's "manage your own access keys" pattern: ${aws:username} in Resource."""
    document = policy(allow(["iam:ListAccessKeys", "iam:CreateAccessKey", "iam:GetUser"],
                            f"arn:aws:iam::{HOME}:user/${{aws:username}}"))
    user, other = new_user(iam, "self", document), new_user(iam, "someone")
    own = user.client("iam", server)
    assert own.get_user()["User"]["Arn"] == user.arn  # no UserName: the caller itself
    assert [k["AccessKeyId"] for k in own.list_access_keys()["AccessKeyMetadata"]] == [user.key_id]
    new = own.create_access_key()["AccessKey"]
    assert new["UserName"] == user.name
    with raises("AccessDenied"):
        own.list_access_keys(UserName=other.name)
    with raises("AccessDenied"):
        own.create_access_key(UserName=other.name)


# -- the AWS CLI ----------------------------------------------------------------------------

@pytest.mark.clients
def test_aws_cli_iam_and_sts(server: ServerProcess, iam: Any, tmp_path: Path) -> None:
    need_aws_cli()
    aws = AwsCli(tmp_path / "aws", server.key_id, server.secret)
    name = unique("cli")
    created = json.loads(aws(server.url, "iam", "create-user", "--user-name", name, "--output", "json").stdout)
    assert created["User"]["Arn"] == f"arn:aws:iam::{HOME}:user/{name}"
    assert iam.get_user(UserName=name)["User"]["UserName"] == name
    key = json.loads(aws(server.url, "iam", "create-access-key", "--user-name", name, "--output", "json").stdout)
    listed = json.loads(aws(server.url, "iam", "list-users", "--output", "json").stdout)
    assert name in [u["UserName"] for u in listed["Users"]]

    whoami = json.loads(aws(server.url, "sts", "get-caller-identity", "--output", "json").stdout)
    assert whoami == {"UserId": HOME, "Account": HOME, "Arn": f"arn:aws:iam::{HOME}:root"}
    as_user = AwsCli(tmp_path / "aws-user", key["AccessKey"]["AccessKeyId"], key["AccessKey"]["SecretAccessKey"])
    whoami = json.loads(as_user(server.url, "sts", "get-caller-identity", "--output", "json").stdout)
    assert whoami["Arn"] == f"arn:aws:iam::{HOME}:user/{name}"

    refused = as_user(server.url, "iam", "list-users", check=False)
    assert refused.returncode == 254, refused
    assert "An error occurred (AccessDenied) when calling the ListUsers operation" in refused.stderr, refused.stderr


# -- the bootstrap CLI (`cargohold iam ...`) beside the running server -------------------------

def test_cargohold_iam_cli(server: ServerProcess, iam: Any, tmp_path: Path) -> None:
    data = ["--data-dir", str(server.data_dir)]
    name = unique("boot")
    assert cargohold("iam", "create-user", name, *data).stdout.strip() == f"arn:aws:iam::{HOME}:user/{name}"
    out = cargohold("iam", "create-access-key", name, *data).stdout
    fields = {k.strip(): v.strip() for k, _, v in (line.partition("=") for line in out.splitlines())}
    key_id, secret = fields["aws_access_key_id"], fields["aws_secret_access_key"]
    document = tmp_path / "list.json"
    document.write_text(LIST_REPOS)
    cargohold("iam", "put-user-policy", name, "list", str(document), *data)

    # The running server sees all of it on the next request.
    user_ecr = aws_client("ecr", server, key_id, secret)
    assert can_list_repositories(user_ecr)
    assert iam.list_user_policies(UserName=name)["PolicyNames"] == ["list"]
    cargohold("iam", "delete-user-policy", name, "list", *data)
    assert not can_list_repositories(user_ecr)
    cargohold("iam", "update-access-key", name, key_id, "--status", "Inactive", *data)
    with raises("InvalidClientTokenId"):
        aws_client("sts", server, key_id, secret).get_caller_identity()

    document.write_text("{not json")
    bad = cargohold("iam", "put-user-policy", name, "bad", str(document), *data, check=False)
    assert bad.returncode == 1 and "MalformedPolicyDocument" in bad.stderr, bad
    assert iam.list_user_policies(UserName=name)["PolicyNames"] == []
    assert f"{name}\tarn:aws:iam::{HOME}:user/{name}" in cargohold("iam", "list-users", *data).stdout


def test_refusals_do_not_reveal_whether_a_user_or_group_exists(iam: Any, server: ServerProcess) -> None:
    """Authorization comes before the lookup: existing and missing entities get the same AccessDenied."""
    user, existing = new_user(iam, "probe", LIST_REPOS), new_user(iam, "target")
    group = unique("grp")
    iam.create_group(GroupName=group)
    own = user.client("iam", server)
    for name in (existing.name, unique("ghost")):
        for call in (lambda n=name: own.get_user(UserName=n), lambda n=name: own.delete_user(UserName=n),
                     lambda n=name: own.list_user_policies(UserName=n),
                     lambda n=name: own.list_access_keys(UserName=n)):
            with raises("AccessDenied"):
                call()
    for name in (group, unique("ghostgroup")):
        with raises("AccessDenied"):
            own.put_group_policy(GroupName=name, PolicyName="p", PolicyDocument=LIST_REPOS)
        with raises("AccessDenied"):
            own.add_user_to_group(GroupName=name, UserName=user.name)
    with raises("NoSuchEntity"):  # whoever may look is told the truth
        iam.get_user(UserName=unique("ghost"))
