"""Repository resolution shared by every use case: name check, authorization, lookup."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from cargohold.domain.names import check_repository_name
from cargohold.errors import Kind, RegistryError
from cargohold.services.identity import Authorizer, Principal, RequestContext
from cargohold.storage.meta.store import MetadataStore, Repository


@dataclass(frozen=True)
class Caller:
    principal: Principal
    context: RequestContext


class Repositories:
    def __init__(self, meta: MetadataStore, authorizer: Authorizer, account_id: str, region: str,
                 create_on_push: bool, clock: Callable[[], float] = time.time) -> None:
        self.meta = meta
        self.authorizer = authorizer
        self.account_id = account_id
        self.region = region
        self.create_on_push = create_on_push
        self.clock = clock

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    def arn(self, name: str, account_id: str | None = None) -> str:
        return f"arn:aws:ecr:{self.region}:{account_id or self.account_id}:repository/{name}"

    def authorize(self, caller: Caller, action: str, name: str) -> None:
        self.authorizer.authorize(caller.principal, action, self.arn(name), caller.context)

    def not_found(self, name: str) -> RegistryError:
        return RegistryError(
            Kind.NAME_UNKNOWN,
            f"The repository with name '{name}' does not exist in the registry with id "
            f"'{self.account_id}'")

    def resolve(self, caller: Caller, name: str, action: str, *, create: bool = False) -> Repository:
        """Validate the name, authorize the action on its ARN, then find (or create) it.

        Authorization comes first so that a refused caller learns nothing about existence.
        """
        check_repository_name(name)
        self.authorize(caller, action, name)
        repo = self.meta.get_repository(self.account_id, name)
        if repo is None:
            if not (create and self.create_on_push):
                raise self.not_found(name)
            repo = self.meta.create_repository(self.account_id, name, self.now_ms(), exist_ok=True)
        return repo
