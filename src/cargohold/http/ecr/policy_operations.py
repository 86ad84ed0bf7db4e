"""ECR operations for repository and registry policies and lifecycle policies (with previews)."""

from __future__ import annotations

from typing import Any

from cargohold.http.ecr.api import EcrApi
from cargohold.http.ecr.operations import _cursor, _run, _token
from cargohold.services.lifecycle import Lifecycle
from cargohold.services.policies import Policies
from cargohold.services.repositories import Caller


class EcrPolicyOperations:
    def __init__(self, api: EcrApi, policies: Policies, lifecycle: Lifecycle) -> None:
        self.policies = policies
        self.lifecycle = lifecycle
        for name in dir(self):
            if name[:1].isupper():
                api.register(name, getattr(self, name))

    def _repo_policy(self, caller: Caller, name: str, text: str | None) -> dict[str, Any]:
        return {"registryId": self.registry(caller), "repositoryName": name, "policyText": text}

    def registry(self, caller: Caller) -> str:
        return self.policies.repos.registry_of(caller)

    async def SetRepositoryPolicy(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        repo = await _run(self.policies.set_repository_policy, caller, p["repositoryName"], p["policyText"],
                          bool(p.get("force")))
        return self._repo_policy(caller, repo.name, repo.policy)

    async def GetRepositoryPolicy(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        repo = await _run(self.policies.get_repository_policy, caller, p["repositoryName"])
        return self._repo_policy(caller, repo.name, repo.policy)

    async def DeleteRepositoryPolicy(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        repo = await _run(self.policies.delete_repository_policy, caller, p["repositoryName"])
        return self._repo_policy(caller, repo.name, repo.policy)

    async def PutRegistryPolicy(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        text = await _run(self.policies.put_registry_policy, caller, p["policyText"])
        return {"registryId": self.registry(caller), "policyText": text}

    async def GetRegistryPolicy(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        text = await _run(self.policies.get_registry_policy, caller)
        return {"registryId": self.registry(caller), "policyText": text}

    async def DeleteRegistryPolicy(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        text = await _run(self.policies.delete_registry_policy, caller)
        return {"registryId": self.registry(caller), "policyText": text}

    # -- lifecycle --------------------------------------------------------------------------

    def _lifecycle(self, caller: Caller, name: str, text: str | None,
                   evaluated: int | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {"registryId": self.registry(caller), "repositoryName": name, "lifecyclePolicyText": text}
        if evaluated is not None:
            out["lastEvaluatedAt"] = evaluated / 1000.0
        return out

    async def PutLifecyclePolicy(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        repo = await _run(self.lifecycle.put, caller, p["repositoryName"], p["lifecyclePolicyText"])
        return self._lifecycle(caller, repo.name, repo.lifecycle_policy)

    async def GetLifecyclePolicy(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        repo = await _run(self.lifecycle.get, caller, p["repositoryName"])
        return self._lifecycle(caller, repo.name, repo.lifecycle_policy, repo.lifecycle_evaluated_at)

    async def DeleteLifecyclePolicy(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        repo = await _run(self.lifecycle.delete, caller, p["repositoryName"])
        return self._lifecycle(caller, repo.name, repo.lifecycle_policy, repo.lifecycle_evaluated_at)

    async def StartLifecyclePolicyPreview(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        repo, text = await _run(self.lifecycle.start_preview, caller, p["repositoryName"],
                                p.get("lifecyclePolicyText"))
        return {**self._lifecycle(caller, repo.name, text), "status": "IN_PROGRESS"}

    async def GetLifecyclePolicyPreview(self, caller: Caller, p: dict[str, Any]) -> dict[str, Any]:
        repo, text, status, results = await _run(self.lifecycle.get_preview, caller, p["repositoryName"])
        wanted_status = (p.get("filter") or {}).get("tagStatus", "ANY")
        ids = p.get("imageIds")
        rows = []
        for r in results:
            tagged = bool(r["imageTags"])
            if (wanted_status == "TAGGED" and not tagged) or (wanted_status == "UNTAGGED" and tagged):
                continue
            if ids and not any(i.get("imageDigest") == r["imageDigest"] or i.get("imageTag") in r["imageTags"]
                               for i in ids):
                continue
            rows.append(r)
        after = _cursor(p)
        if after is not None:
            rows = [r for r in rows if r["imageDigest"] > after]
        rows.sort(key=lambda r: r["imageDigest"])
        limit = min(int(p.get("maxResults") or 100), 100)
        page = rows[:limit]
        out: dict[str, Any] = {
            **self._lifecycle(caller, repo.name, text), "status": status,
            "previewResults": [{"imageDigest": r["imageDigest"], "imageTags": r["imageTags"],
                                "imagePushedAt": r["imagePushedAt"], "action": {"type": "EXPIRE"},
                                "appliedRulePriority": r["appliedRulePriority"]} for r in page],
            "summary": {"expiringImageTotalCount": len(results)},
        }
        if len(rows) > limit:
            out["nextToken"] = _token(page[-1]["imageDigest"])
        return out
