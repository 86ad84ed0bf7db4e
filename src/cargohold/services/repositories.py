"""Repository resolution shared by every use case: name check, authorization, lookup."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cargohold.domain.names import check_repository_name
from cargohold.errors import Kind, RegistryError
from cargohold.services.identity import Authorizer, Principal, RequestContext, ResourceFacts
from cargohold.services.secrets import SecretBox
from cargohold.storage.meta.store import MetadataStore, Repository


@dataclass(frozen=True)
class Caller:
    principal: Principal
    context: RequestContext
    registry_id: str = ""  # the account whose registry is addressed; empty: the server's home account


class Repositories:
    def __init__(self, meta: MetadataStore, authorizer: Authorizer, account_id: str, region: str,
                 create_on_push: bool, clock: Callable[[], float] = time.time,
                 box: SecretBox | None = None) -> None:
        self.meta = meta
        self.box = box  # signs and verifies download grants
        self.authorizer = authorizer
        self.account_id = account_id
        self.region = region
        self.create_on_push = create_on_push
        self.clock = clock

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def registry_of(self, caller: Caller) -> str:
        return caller.registry_id or self.account_id

    def arn(self, name: str, account_id: str | None = None) -> str:
        return f"arn:aws:ecr:{self.region}:{account_id or self.account_id}:repository/{name}"

    def authorize(self, caller: Caller, action: str, name: str, repo: Repository | None = None) -> None:
        registry = self.registry_of(caller)
        facts = ResourceFacts(account_id=registry)
        if repo is not None:
            facts = ResourceFacts(policy=repo.policy, account_id=repo.account_id,
                                  tags=tuple((t["Key"], t["Value"]) for t in repo.resource_tags))
        try:
            self.authorizer.authorize(caller.principal, action, self.arn(name, registry), caller.context, facts)
        except RegistryError as err:
            # Another account's repositories: a refusal looks exactly like a repository that does not exist.
            if err.kind is Kind.DENIED and registry != caller.principal.account_id:
                raise self.not_found(name, registry) from None
            raise

    def not_found(self, name: str, registry: str | None = None) -> RegistryError:
        return RegistryError(
            Kind.NAME_UNKNOWN,
            f"The repository with name '{name}' does not exist in the registry with id "
            f"'{registry or self.account_id}'")

    def resolve(self, caller: Caller, name: str, action: str, *, create: bool = False) -> Repository:
        """Validate the name, authorize the action on its ARN, then find (or create) it.

        The decision is taken before "not found" is: a caller without access learns nothing
        about existence. The repository's own policy takes part when it exists.
        """
        check_repository_name(name)
        registry = self.registry_of(caller)
        repo = self.meta.get_repository(registry, name)
        self.authorize(caller, action, name, repo)
        if repo is None:
            if not (create and self.create_on_push):
                raise self.not_found(name, registry)
            self.authorize(caller, "ecr:CreateRepository", name)
            repo = self.meta.create_repository(registry, name, self.now_ms(), exist_ok=True)
        return repo


MUTABILITY_MODES = ("MUTABLE", "IMMUTABLE", "IMMUTABLE_WITH_EXCLUSION", "MUTABLE_WITH_EXCLUSION")
MAX_RESOURCE_TAGS = 50


def check_mutability(mode: str, filters: list[dict[str, str]] | None) -> list[dict[str, str]]:
    filters = filters or []
    if mode.endswith("_WITH_EXCLUSION"):
        if not filters:
            raise RegistryError(Kind.INVALID_PARAMETER,
                                f"Invalid parameter at 'imageTagMutabilityExclusionFilters' failed to satisfy "
                                f"constraint: 'Exclusion filters are required when imageTagMutability is {mode}'")
    elif filters:
        raise RegistryError(Kind.INVALID_PARAMETER,
                            "Invalid parameter at 'imageTagMutabilityExclusionFilters' failed to satisfy "
                            f"constraint: 'Exclusion filters are only allowed with the *_WITH_EXCLUSION "
                            f"modes, not {mode}'")
    return [{"filterType": f.get("filterType", "WILDCARD"), "filter": f["filter"]} for f in filters]


def check_resource_tags(tags: list[dict[str, str]]) -> list[dict[str, str]]:
    keys = [t["Key"] for t in tags]
    if len(set(keys)) != len(keys):
        raise RegistryError(Kind.INVALID_TAG_PARAMETER, "Tag keys must be unique")
    for tag in tags:
        if not (1 <= len(tag["Key"]) <= 128) or len(tag["Value"]) > 256 or tag["Key"].startswith("aws:"):
            raise RegistryError(Kind.INVALID_TAG_PARAMETER,
                                f"Invalid tag: key must be 1-128 characters and not start with 'aws:', "
                                f"value at most 256 characters: {tag['Key'][:130]!r}")
    if len(tags) > MAX_RESOURCE_TAGS:
        raise RegistryError(Kind.TOO_MANY_TAGS, f"A resource can have at most {MAX_RESOURCE_TAGS} tags")
    return tags


class RepositoryAdmin:
    """ECR's repository-level use cases: create, describe, delete, settings, resource tags."""

    def __init__(self, repos: Repositories) -> None:
        self.repos = repos
        self.meta = repos.meta

    def _get(self, caller: Caller, name: str, action: str) -> Repository:
        return self.repos.resolve(caller, name, action)

    def create(self, caller: Caller, name: str, *, tags: list[dict[str, str]] | None = None,
               mutability: str = "MUTABLE", exclusions: list[dict[str, str]] | None = None,
               scan_on_push: bool = False, encryption: dict[str, Any] | None = None) -> Repository:
        check_repository_name(name)
        self.repos.authorize(caller, "ecr:CreateRepository", name)
        if tags:
            self.repos.authorize(caller, "ecr:TagResource", name)
        exclusions = check_mutability(mutability, exclusions)
        encryption = dict(encryption or {"encryptionType": "AES256"})
        if encryption.get("encryptionType") == "AES256" and encryption.get("kmsKey"):
            raise RegistryError(Kind.INVALID_PARAMETER,
                                "Invalid parameter at 'encryptionConfiguration' failed to satisfy constraint: "
                                "'kmsKey can be specified only when encryptionType is KMS or KMS_DSSE'")
        return self.meta.create_repository(
            self.repos.registry_of(caller), name, self.repos.now_ms(), tag_mutability=mutability,
            mutability_exclusions=exclusions or None, scan_on_push=scan_on_push, encryption=encryption,
            resource_tags=check_resource_tags(tags or []))

    def describe(self, caller: Caller, names: list[str] | None, after: str | None,
                 limit: int) -> list[Repository]:
        if names:
            out = []
            for name in dict.fromkeys(names):
                out.append(self._get(caller, name, "ecr:DescribeRepositories"))
            return sorted(out, key=lambda r: r.name)
        registry = self.repos.registry_of(caller)
        try:
            self.repos.authorize(caller, "ecr:DescribeRepositories", "*")
        except RegistryError as err:
            if err.kind is Kind.NAME_UNKNOWN:  # another account's registry, not granted: nothing to see
                return []
            raise
        return self.meta.list_repositories(registry, after, limit)

    def delete(self, caller: Caller, name: str, force: bool) -> Repository:
        repo = self._get(caller, name, "ecr:DeleteRepository")
        if not force and self.meta.repository_image_count(repo.id) > 0:
            raise RegistryError(
                Kind.REPOSITORY_NOT_EMPTY,
                f"The repository with name '{name}' in registry with id '{repo.account_id}' cannot "
                f"be deleted because it still contains images")
        self.meta.delete_repository(repo.id)
        return repo

    def set_mutability(self, caller: Caller, name: str, mode: str,
                       exclusions: list[dict[str, str]] | None) -> Repository:
        repo = self._get(caller, name, "ecr:PutImageTagMutability")
        checked = check_mutability(mode, exclusions)
        self.meta.update_repository(repo.id, tag_mutability=mode, mutability_exclusions=checked or None)
        return self._get(caller, name, "ecr:PutImageTagMutability")

    def set_scanning(self, caller: Caller, name: str, scan_on_push: bool) -> Repository:
        repo = self._get(caller, name, "ecr:PutImageScanningConfiguration")
        self.meta.update_repository(repo.id, scan_on_push=scan_on_push)
        return self._get(caller, name, "ecr:PutImageScanningConfiguration")

    # -- resource tags, addressed by ARN --------------------------------------------------------

    def from_arn(self, caller: Caller, arn: str) -> tuple[Caller, str]:
        """The caller addressed at the ARN's registry, and the repository name."""
        prefix = f"arn:aws:ecr:{self.repos.region}:"
        account, _, name = arn[len(prefix):].partition(":repository/")
        if not arn.startswith(prefix) or not name or not (len(account) == 12 and account.isdigit()):
            raise RegistryError(Kind.INVALID_PARAMETER,
                                "Invalid parameter at 'resourceArn' failed to satisfy constraint: "
                                "'Must be a valid repository ARN'")
        return Caller(caller.principal, caller.context, account), name

    def list_tags(self, caller: Caller, arn: str) -> list[dict[str, str]]:
        return self._get(*self.from_arn(caller, arn), "ecr:ListTagsForResource").resource_tags

    def tag(self, caller: Caller, arn: str, tags: list[dict[str, str]]) -> None:
        repo = self._get(*self.from_arn(caller, arn), "ecr:TagResource")
        merged = {t["Key"]: t["Value"] for t in repo.resource_tags}
        merged.update({t["Key"]: t["Value"] for t in check_resource_tags(tags)})
        self.meta.update_repository(repo.id, resource_tags=check_resource_tags(
            [{"Key": k, "Value": v} for k, v in merged.items()]))

    def untag(self, caller: Caller, arn: str, keys: list[str]) -> None:
        repo = self._get(*self.from_arn(caller, arn), "ecr:UntagResource")
        self.meta.update_repository(repo.id, resource_tags=[
            t for t in repo.resource_tags if t["Key"] not in set(keys)])
