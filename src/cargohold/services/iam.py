"""IAM use cases: users, access keys, groups, inline and managed policies, within the caller's account."""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass

from cargohold.domain.policy import PolicyError, parse_policy
from cargohold.errors import Kind, RegistryError
from cargohold.services.identity import Authorizer, Identity, Principal, RequestContext
from cargohold.services.secrets import new_access_key_id, new_secret_access_key
from cargohold.storage.meta.iam import Conflict, GroupRow, IamStore, KeyRow, PolicyRow, UserRow

_NAME_RE = re.compile(r"[\w+=,.@-]{1,64}")
_POLICY_NAME_RE = re.compile(r"[\w+=,.@-]{1,128}")
_PATH_RE = re.compile(r"/|/[\x21-\x7e]{0,510}/")
MAX_KEYS_PER_USER = 2


def _id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(17))


@dataclass(frozen=True)
class NewKey:
    key: KeyRow
    secret: str
    user_name: str


PolicyValidator = Callable[[str], None]


def check_identity_policy(document: str) -> None:
    try:
        parse_policy(document, resource_policy=False)
    except PolicyError as err:
        raise RegistryError(Kind.MALFORMED_POLICY, str(err)) from None


class Iam:
    def __init__(self, store: IamStore, identity: Identity, authorizer: Authorizer,
                 validate_policy: PolicyValidator = check_identity_policy) -> None:
        self.store = store
        self.identity = identity
        self.authorizer = authorizer
        self.validate_policy = validate_policy

    def _now(self) -> int:
        return int(self.identity.clock() * 1000)

    def _authorize(self, principal: Principal, context: RequestContext, action: str, resource: str) -> None:
        self.authorizer.authorize(principal, action, resource, context)

    @staticmethod
    def user_arn(account: str, name: str, path: str = "/") -> str:
        return f"arn:aws:iam::{account}:user{path}{name}"

    def _check_name(self, name: str, what: str = "userName") -> None:
        if not _NAME_RE.fullmatch(name):
            raise RegistryError(Kind.VALIDATION, f"1 validation error detected: Value '{name[:80]}' at '{what}' failed "
                                "to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]+")

    def _user(self, account: str, name: str) -> UserRow:
        user = self.store.get_user(account, name)
        if user is None:
            raise RegistryError(Kind.NO_SUCH_ENTITY, f"The user with name {name} cannot be found.")
        return user

    def _authorized_user(self, caller: Principal, ctx: RequestContext, action: str, name: str | None) -> UserRow:
        """Authorize before saying whether the user exists: a refused caller learns nothing either way."""
        user = self.store.get_user(caller.account_id, name) if name else self.store.get_principal(caller.arn)
        self._authorize(caller, ctx, action, user.arn if user else self.user_arn(caller.account_id, name or ""))
        if user is None:
            raise RegistryError(Kind.NO_SUCH_ENTITY, f"The user with name {name} cannot be found.")
        return user

    def _authorized_owner(self, caller: Principal, ctx: RequestContext, action: str, kind: str, name: str) -> str:
        if kind == "user":
            return self._authorized_user(caller, ctx, action, name).arn
        group = self.store.get_group(caller.account_id, name)
        self._authorize(caller, ctx, action, group.arn if group else f"arn:aws:iam::{caller.account_id}:group/{name}")
        if group is None:
            raise RegistryError(Kind.NO_SUCH_ENTITY, f"The group with name {name} cannot be found.")
        return group.arn

    def _policy(self, arn: str) -> PolicyRow:
        policy = self.store.get_policy(arn)
        if policy is None:
            raise RegistryError(Kind.NO_SUCH_ENTITY, f"Policy {arn} does not exist or is not attachable.")
        return policy

    # -- users ------------------------------------------------------------------------------

    def create_user(self, caller: Principal, ctx: RequestContext, name: str, path: str = "/",
                    tags: list[dict[str, str]] | None = None) -> UserRow:
        self._check_name(name)
        if not _PATH_RE.fullmatch(path):
            raise RegistryError(Kind.VALIDATION, f"Path {path[:80]!r} must begin and end with '/'")
        arn = self.user_arn(caller.account_id, name, path)
        self._authorize(caller, ctx, "iam:CreateUser", arn)
        try:
            return self.store.create_user(arn, caller.account_id, name, _id("AIDA"), path, self._now(), tags)
        except Conflict:
            raise RegistryError(Kind.ENTITY_EXISTS, f"User with name {name} already exists.") from None

    def get_user(self, caller: Principal, ctx: RequestContext, name: str | None) -> UserRow:
        user = self._authorized_user(caller, ctx, "iam:GetUser", name)
        return user

    def list_users(self, caller: Principal, ctx: RequestContext, path_prefix: str, after: str | None,
                   limit: int) -> list[UserRow]:
        self._authorize(caller, ctx, "iam:ListUsers", f"arn:aws:iam::{caller.account_id}:user/*")
        return self.store.list_users(caller.account_id, path_prefix, after, limit)

    def delete_user(self, caller: Principal, ctx: RequestContext, name: str) -> None:
        user = self._authorized_user(caller, ctx, "iam:DeleteUser", name)
        deps = self.store.user_dependencies(user.arn)
        for what, count in deps.items():
            if count:
                raise RegistryError(Kind.DELETE_CONFLICT, f"Cannot delete entity, must remove {what} first.")
        self.store.delete_principal(user.arn)

    # -- access keys ------------------------------------------------------------------------

    def create_access_key(self, caller: Principal, ctx: RequestContext, name: str | None) -> NewKey:
        user = self._authorized_user(caller, ctx, "iam:CreateAccessKey", name)
        if len(self.store.list_keys(user.arn)) >= MAX_KEYS_PER_USER:
            raise RegistryError(Kind.LIMIT_EXCEEDED,
                                f"Cannot exceed quota for AccessKeysPerUser: {MAX_KEYS_PER_USER}")
        key_id, secret = new_access_key_id(), new_secret_access_key()
        now = self._now()
        self.identity.meta.add_access_key(key_id, user.arn, self.identity.box.encrypt(secret), now)
        return NewKey(KeyRow(key_id, user.arn, "Active", now), secret, user.name)

    def list_access_keys(self, caller: Principal, ctx: RequestContext, name: str | None) -> tuple[str, list[KeyRow]]:
        user = self._authorized_user(caller, ctx, "iam:ListAccessKeys", name)
        return user.name, self.store.list_keys(user.arn)

    def update_access_key(self, caller: Principal, ctx: RequestContext, name: str | None, key_id: str,
                          status: str) -> None:
        user = self._authorized_user(caller, ctx, "iam:UpdateAccessKey", name)
        if not self.store.set_key_status(user.arn, key_id, status):
            raise RegistryError(Kind.NO_SUCH_ENTITY, f"The Access Key with id {key_id} cannot be found.")

    def delete_access_key(self, caller: Principal, ctx: RequestContext, name: str | None, key_id: str) -> None:
        user = self._authorized_user(caller, ctx, "iam:DeleteAccessKey", name)
        if not self.store.delete_key(user.arn, key_id):
            raise RegistryError(Kind.NO_SUCH_ENTITY, f"The Access Key with id {key_id} cannot be found.")

    # -- inline policies (users and groups) --------------------------------------------------------

    def put_inline(self, caller: Principal, ctx: RequestContext, kind: str, owner: str, policy_name: str,
                   document: str) -> None:
        arn = self._authorized_owner(caller, ctx, f"iam:Put{kind.capitalize()}Policy", kind, owner)
        if not _POLICY_NAME_RE.fullmatch(policy_name):
            raise RegistryError(Kind.VALIDATION, f"Invalid policy name {policy_name[:80]!r}")
        self.validate_policy(document)
        self.store.put_inline(arn, policy_name, document)

    def get_inline(self, caller: Principal, ctx: RequestContext, kind: str, owner: str, policy_name: str) -> str:
        arn = self._authorized_owner(caller, ctx, f"iam:Get{kind.capitalize()}Policy", kind, owner)
        document = self.store.get_inline(arn, policy_name)
        if document is None:
            raise RegistryError(Kind.NO_SUCH_ENTITY,
                                f"The {kind} policy with name {policy_name} cannot be found.")
        return document

    def list_inline(self, caller: Principal, ctx: RequestContext, kind: str, owner: str) -> list[str]:
        arn = self._authorized_owner(caller, ctx, f"iam:List{kind.capitalize()}Policies", kind, owner)
        return self.store.list_inline(arn)

    def delete_inline(self, caller: Principal, ctx: RequestContext, kind: str, owner: str, policy_name: str) -> None:
        arn = self._authorized_owner(caller, ctx, f"iam:Delete{kind.capitalize()}Policy", kind, owner)
        if not self.store.delete_inline(arn, policy_name):
            raise RegistryError(Kind.NO_SUCH_ENTITY,
                                f"The {kind} policy with name {policy_name} cannot be found.")

    # -- managed policies -------------------------------------------------------------------

    def create_policy(self, caller: Principal, ctx: RequestContext, name: str, document: str, path: str = "/",
                      description: str | None = None) -> PolicyRow:
        if not _POLICY_NAME_RE.fullmatch(name):
            raise RegistryError(Kind.VALIDATION, f"Invalid policy name {name[:80]!r}")
        arn = f"arn:aws:iam::{caller.account_id}:policy{path}{name}"
        self._authorize(caller, ctx, "iam:CreatePolicy", arn)
        self.validate_policy(document)
        try:
            return self.store.create_policy(arn, caller.account_id, name, _id("ANPA"), path, description, document,
                                            self._now())
        except Conflict:
            raise RegistryError(Kind.ENTITY_EXISTS,
                                f"A policy called {name} already exists. Duplicate names are not allowed.") from None

    def get_policy(self, caller: Principal, ctx: RequestContext, arn: str) -> PolicyRow:
        self._authorize(caller, ctx, "iam:GetPolicy", arn)
        return self._policy(arn)

    def list_policies(self, caller: Principal, ctx: RequestContext, after: str | None, limit: int) -> list[PolicyRow]:
        self._authorize(caller, ctx, "iam:ListPolicies", f"arn:aws:iam::{caller.account_id}:policy/*")
        return self.store.list_policies(caller.account_id, after, limit)

    def delete_policy(self, caller: Principal, ctx: RequestContext, arn: str) -> None:
        policy = self._policy(arn)
        self._authorize(caller, ctx, "iam:DeletePolicy", arn)
        if policy.attachment_count:
            raise RegistryError(Kind.DELETE_CONFLICT, "Cannot delete a policy attached to entities.")
        self.store.delete_policy(arn)

    def attach(self, caller: Principal, ctx: RequestContext, kind: str, owner: str, policy_arn: str) -> None:
        arn = self._authorized_owner(caller, ctx, f"iam:Attach{kind.capitalize()}Policy", kind, owner)
        self._policy(policy_arn)
        self.store.attach(arn, policy_arn)

    def detach(self, caller: Principal, ctx: RequestContext, kind: str, owner: str, policy_arn: str) -> None:
        arn = self._authorized_owner(caller, ctx, f"iam:Detach{kind.capitalize()}Policy", kind, owner)
        if not self.store.detach(arn, policy_arn):
            raise RegistryError(Kind.NO_SUCH_ENTITY, f"Policy {policy_arn} was not found.")

    def attached(self, caller: Principal, ctx: RequestContext, kind: str, owner: str) -> list[tuple[str, str]]:
        arn = self._authorized_owner(caller, ctx, f"iam:ListAttached{kind.capitalize()}Policies", kind, owner)
        return self.store.attached(arn)

    # -- groups -----------------------------------------------------------------------------

    def create_group(self, caller: Principal, ctx: RequestContext, name: str, path: str = "/") -> GroupRow:
        self._check_name(name, "groupName")
        arn = f"arn:aws:iam::{caller.account_id}:group{path}{name}"
        self._authorize(caller, ctx, "iam:CreateGroup", arn)
        try:
            return self.store.create_group(arn, caller.account_id, name, _id("AGPA"), path, self._now())
        except Conflict:
            raise RegistryError(Kind.ENTITY_EXISTS, f"Group with name {name} already exists.") from None

    def add_to_group(self, caller: Principal, ctx: RequestContext, group: str, user: str) -> None:
        arn = self._authorized_owner(caller, ctx, "iam:AddUserToGroup", "group", group)
        self.store.add_member(arn, self._user(caller.account_id, user).arn)

    def remove_from_group(self, caller: Principal, ctx: RequestContext, group: str, user: str) -> None:
        arn = self._authorized_owner(caller, ctx, "iam:RemoveUserFromGroup", "group", group)
        if not self.store.remove_member(arn, self._user(caller.account_id, user).arn):
            raise RegistryError(Kind.NO_SUCH_ENTITY, f"The user {user} is not in group {group}.")
