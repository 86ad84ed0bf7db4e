"""Repository policies and the registry policy: validated on write, enforced by the authorizer."""

from __future__ import annotations

from cargohold.domain.policy import PolicyError, RequestFacts, evaluate, parse_policy
from cargohold.errors import Kind, RegistryError
from cargohold.services.authorization import REGISTRY_POLICY_KEY
from cargohold.services.repositories import Caller, Repositories
from cargohold.storage.meta.store import Repository


def check_resource_policy(text: str, what: str) -> None:
    try:
        parse_policy(text, resource_policy=True)
    except PolicyError as err:
        raise RegistryError(Kind.INVALID_PARAMETER,
                            f"Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid {what} "
                            f"policy provided: {err}'") from None


class Policies:
    def __init__(self, repos: Repositories) -> None:
        self.repos = repos
        self.meta = repos.meta

    def _registry_key(self, caller: Caller) -> str:
        return f"{REGISTRY_POLICY_KEY}:{self.repos.registry_of(caller)}"

    # -- repository policies --------------------------------------------------------------------

    def set_repository_policy(self, caller: Caller, name: str, text: str, force: bool) -> Repository:
        repo = self.repos.resolve(caller, name, "ecr:SetRepositoryPolicy")
        check_resource_policy(text, "repository")
        if not force and self._locks_out(caller, name, text):
            raise RegistryError(Kind.INVALID_PARAMETER,
                                "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'The policy would "
                                "prevent you from setting another policy in the future; use force to set it anyway'")
        self.meta.update_repository(repo.id, policy=text)
        return self.repos.resolve(caller, name, "ecr:GetRepositoryPolicy")

    def _locks_out(self, caller: Caller, name: str, text: str) -> bool:
        """Would this policy explicitly deny the caller ecr:SetRepositoryPolicy from now on?"""
        policy = parse_policy(text, resource_policy=True)
        context: dict[str, object] = {"aws:SourceIp": caller.context.source_ip,
                                      "aws:PrincipalArn": caller.principal.arn}
        if caller.context.endpoint_id:
            context["aws:SourceVpce"] = caller.context.endpoint_id
        arn = self.repos.arn(name, self.repos.registry_of(caller))
        facts = RequestFacts(action="ecr:SetRepositoryPolicy", resource=arn, principal_arn=caller.principal.arn,
                             principal_account=caller.principal.account_id,
                             context=context)
        decision = evaluate(facts, [], [("new policy", policy)], resource_account=self.repos.registry_of(caller),
                            is_account_root=caller.principal.kind == "root")
        return decision.reason == "explicit_deny"

    def get_repository_policy(self, caller: Caller, name: str) -> Repository:
        repo = self.repos.resolve(caller, name, "ecr:GetRepositoryPolicy")
        if repo.policy is None:
            raise self._repo_policy_missing(repo)
        return repo

    def delete_repository_policy(self, caller: Caller, name: str) -> Repository:
        repo = self.repos.resolve(caller, name, "ecr:DeleteRepositoryPolicy")
        if repo.policy is None:
            raise self._repo_policy_missing(repo)
        self.meta.update_repository(repo.id, policy=None)
        return repo

    def _repo_policy_missing(self, repo: Repository) -> RegistryError:
        return RegistryError(Kind.POLICY_NOT_FOUND,
                             f"Repository policy does not exist for the repository with name '{repo.name}' in the "
                             f"registry with id '{repo.account_id}'")

    # -- the registry policy --------------------------------------------------------------------

    def _authorize_registry(self, caller: Caller, action: str) -> None:
        self.repos.authorizer.authorize(caller.principal, action,
                                        f"arn:aws:ecr:{self.repos.region}:{self.repos.registry_of(caller)}:registry/"
                                        f"{self.repos.registry_of(caller)}", caller.context)

    def put_registry_policy(self, caller: Caller, text: str) -> str:
        self._authorize_registry(caller, "ecr:PutRegistryPolicy")
        check_resource_policy(text, "registry")
        self.meta.put_setting(self._registry_key(caller), text)
        return text

    def get_registry_policy(self, caller: Caller) -> str:
        self._authorize_registry(caller, "ecr:GetRegistryPolicy")
        text = self.meta.get_setting(self._registry_key(caller))
        if text is None:
            raise self._registry_policy_missing(caller)
        return text

    def delete_registry_policy(self, caller: Caller) -> str:
        self._authorize_registry(caller, "ecr:DeleteRegistryPolicy")
        text = self.meta.get_setting(self._registry_key(caller))
        if text is None:
            raise self._registry_policy_missing(caller)
        self.meta.delete_setting(self._registry_key(caller))
        return text

    def _registry_policy_missing(self, caller: Caller) -> RegistryError:
        return RegistryError(Kind.REGISTRY_POLICY_NOT_FOUND, "Registry policy does not exist in the registry with "
                             f"id '{self.repos.registry_of(caller)}'")
