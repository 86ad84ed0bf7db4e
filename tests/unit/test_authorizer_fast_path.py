"""PolicyAuthorizer.decide skips building condition keys when no policy applies; its answer must be
exactly what the evaluator gives for an empty policy set (root or user, own or another account)."""

from __future__ import annotations

import pytest

from cargohold.domain.policy import RequestFacts, evaluate
from cargohold.services.authorization import PolicyAuthorizer
from cargohold.services.identity import Principal, RequestContext, ResourceFacts

HOME, OTHER = "111122223333", "444455556666"


class _NoPolicies:
    """An IamStore/MetadataStore stand-in with no identity policies and no registry policy."""

    def __init__(self) -> None:
        self.meta = self

    def identity_policies(self, arn: str) -> list[tuple[str, str]]:
        return []

    def get_setting(self, key: str) -> str | None:
        return None


class _Audit:
    def add(self, event: object) -> None:
        pass


@pytest.mark.parametrize("kind", ["root", "user"])
@pytest.mark.parametrize("caller_account", [HOME, OTHER])
@pytest.mark.parametrize("resource_account", [HOME, OTHER, None])
def test_no_policies_decides_like_the_evaluator(kind: str, caller_account: str, resource_account: str | None) -> None:
    authorizer = PolicyAuthorizer(_NoPolicies(), HOME, _Audit(), clock=lambda: 1_900_000_000.0)  # type: ignore[arg-type]
    arn = f"arn:aws:iam::{caller_account}:" + ("root" if kind == "root" else "user/ci")
    principal = Principal(arn, caller_account, kind, "ci", "AIDA", "AKIA")
    resource = f"arn:aws:ecr:us-east-1:{resource_account or HOME}:repository/app"
    facts = ResourceFacts(account_id=resource_account) if resource_account else None
    decision = authorizer.decide(principal, "ecr:BatchGetImage", resource, RequestContext(source_ip="10.0.0.1"), facts)
    expected = evaluate(RequestFacts(action="ecr:BatchGetImage", resource=resource, principal_arn=arn,
                                     principal_account=caller_account, context={}),
                        [], [], resource_account=resource_account or HOME, is_account_root=kind == "root")
    assert decision == expected
    assert decision.allowed == (kind == "root" and caller_account == (resource_account or HOME))
