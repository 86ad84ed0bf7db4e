"""IAM-style policies: parse and validate a JSON document, then decide a request against a set of them.

Pure and typed: no I/O, no clock. The request (action, resource, principal, condition keys) arrives as
RequestFacts; time-based conditions read aws:CurrentTime / aws:EpochTime from its context. Semantics
follow the AWS IAM User Guide (policy grammar, "Policy evaluation logic", "Cross-account policy
evaluation logic", "AWS JSON policy elements: Principal"); condition operators, wildcards and policy
variables live in policy_conditions.py.

Evaluation in one paragraph: an explicit Deny in any applicable statement wins. Otherwise, in the same
account, an Allow from an identity policy, or from a resource policy that names the principal itself,
suffices; a resource policy that names only the principal's *account* delegates to that account, whose
identity policies must then allow (AWS: "This delegates authority to the account"). Across accounts both
sides must allow: an identity-policy Allow in the caller's account and a resource-policy Allow naming the
caller or its account. The account root needs no identity policy in its own account. A resource policy
naming a service principal (e.g. "codebuild.amazonaws.com") grants that service by itself. NotPrincipal is
Deny-only, as AWS now requires, and spares a principal only when its account is listed too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from cargohold.domain.policy_conditions import (
    Condition,
    PolicyError,
    RequestContext,
    UnresolvedVariable,
    conditions_hold,
    expand,
    parse_conditions,
    pattern_match,
    wildcard_match,
)

VERSION_2012 = "2012-10-17"
VERSION_2008 = "2008-10-17"
MAX_POLICY_LENGTH = 10240  # ECR's limit on policyText

Effect = Literal["Allow", "Deny"]
Reason = Literal["explicit_deny", "allowed", "implicit_deny"]
Principals = Mapping[str, tuple[str, ...]]  # {"AWS": (...), "Service": (...), ...} or {"*": ("*",)}

_TOP_LEVEL = ("Version", "Id", "Statement")
_STATEMENT_KEYS = ("Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction", "Resource", "NotResource",
                   "Condition")
_PRINCIPAL_TYPES = ("AWS", "Service", "Federated", "CanonicalUser")
_ACCOUNT_RE = re.compile(r"\d{12}")
_PRINCIPAL_ARN_RE = re.compile(r"arn:aws[a-z-]*:(?:iam|sts)::(\d{12}):(.+)")
_SERVICE_RE = re.compile(r"[a-z0-9][a-z0-9.-]*[a-z0-9]")
_VENDOR_RE = re.compile(r"[A-Za-z0-9*?-]+")
_SID_RE = re.compile(r"[0-9A-Za-z]*")


@dataclass(frozen=True)
class Statement:
    sid: str | None
    effect: Effect
    actions: tuple[str, ...] | None = None
    not_actions: tuple[str, ...] | None = None
    resources: tuple[str, ...] | None = None       # None with not_resources None: the attached resource
    not_resources: tuple[str, ...] | None = None
    principals: Principals | None = None
    not_principals: Principals | None = None
    conditions: tuple[Condition, ...] = ()
    index: int = 0                                  # position in the Statement list, for "#<index>" labels

    @property
    def label(self) -> str:
        """How a Decision names this statement: its Sid, or "#<index>" (0-based) when it has none."""
        return self.sid if self.sid else f"#{self.index}"


@dataclass(frozen=True)
class Policy:
    version: str
    statements: tuple[Statement, ...]
    id: str | None = None

    @property
    def variables(self) -> bool:
        """Policy variables are recognised only in 2012-10-17 documents; in 2008-10-17 "${...}" is literal."""
        return self.version == VERSION_2012


@dataclass(frozen=True)
class RequestFacts:
    action: str                       # e.g. "ecr:BatchGetImage"; matched case-insensitively
    resource: str                     # e.g. "arn:aws:ecr:us-east-1:111122223333:repository/team/app"
    principal_arn: str                # e.g. "arn:aws:iam::111122223333:user/alice" or "...:root"
    principal_account: str
    context: Mapping[str, object] = field(default_factory=dict)  # condition keys, case-insensitive names


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: Reason
    policy: str | None = None         # the name of the policy whose statement decided
    statement: str | None = None      # that statement's Sid, or "#<index>"


# --------------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------------

def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in pairs:
        if key in out:
            raise PolicyError(f'duplicate key "{key}" in policy JSON')
        out[key] = value
    return out


def _reject_constant(name: str) -> object:
    raise PolicyError(f"policy is not valid JSON: {name} is not a JSON number")


def _strings(value: object, element: str, where: str) -> tuple[str, ...]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise PolicyError(f"{where}: {element} must not be an empty list")
    out: list[str] = []
    for item in items:
        if not isinstance(item, str) or not item:
            raise PolicyError(f"{where}: {element} must be a non-empty string or a list of them")
        out.append(item)
    return tuple(out)


def _check_action(action: str, where: str) -> None:
    if action == "*":
        return
    vendor, sep, name = action.partition(":")
    if not sep or not vendor or not name or _VENDOR_RE.fullmatch(vendor) is None:
        raise PolicyError(f'{where}: Action "{action}" must be "*" or prefaced by a vendor, e.g. "ecr:BatchGetImage" '
                          f'or "ecr:*" (Actions/Conditions must be prefaced by a vendor)')


def _check_resource(resource: str, where: str, element: str) -> None:
    if resource == "*":
        return
    if not resource.startswith("arn:") or (resource.count(":") < 5 and "*" not in resource):
        raise PolicyError(f'{where}: {element} "{resource}" must be in ARN format '
                          f'(arn:partition:service:region:account:resource) or "*"')


def _check_principal(kind: str, value: str, where: str) -> None:
    if value == "*":
        if kind != "AWS":
            raise PolicyError(f'{where}: "*" is allowed only as Principal "*" or {{"AWS": "*"}}, not for {kind}')
        return
    if "*" in value or "?" in value:
        raise PolicyError(f'{where}: invalid principal "{value}": wildcards are not allowed in principals '
                          f'except a lone "*"')
    if kind == "AWS" and _ACCOUNT_RE.fullmatch(value) is None and _PRINCIPAL_ARN_RE.fullmatch(value) is None:
        raise PolicyError(f'{where}: invalid principal "{value}": expected "*", a 12-digit account id or an IAM '
                          f'ARN such as "arn:aws:iam::111122223333:root" or "arn:aws:iam::111122223333:user/name"')
    if kind == "Service" and _SERVICE_RE.fullmatch(value) is None:
        raise PolicyError(f'{where}: invalid service principal "{value}", expected e.g. "codebuild.amazonaws.com"')


def _principals(value: object, element: str, where: str) -> Principals:
    if value == "*":
        return MappingProxyType({"*": ("*",)})
    if not isinstance(value, dict) or not value:
        raise PolicyError(f'{where}: {element} must be "*" or an object such as {{"AWS": [...]}} '
                          f'or {{"Service": [...]}}')
    out: dict[str, tuple[str, ...]] = {}
    for kind, entries in value.items():
        if kind not in _PRINCIPAL_TYPES:
            raise PolicyError(f'{where}: unsupported {element} type "{kind}"; expected one of '
                              f'{", ".join(_PRINCIPAL_TYPES)}')
        values = _strings(entries, f'{element} "{kind}"', where)
        for v in values:
            _check_principal(kind, v, where)
        out[kind] = values
    return MappingProxyType(out)


def _exclusive(raw: Mapping[str, object], a: str, b: str, where: str) -> str | None:
    if a in raw and b in raw:
        raise PolicyError(f"{where}: {a} and {b} cannot both be present in one statement")
    return a if a in raw else b if b in raw else None


def _statement(raw: object, index: int, *, resource_policy: bool, variables: bool) -> Statement:
    where = f"statement #{index}"
    if not isinstance(raw, dict):
        raise PolicyError(f"{where}: each statement must be a JSON object")
    sid = raw.get("Sid")
    if sid is not None:
        if not isinstance(sid, str):
            raise PolicyError(f"{where}: Sid must be a string")
        if not resource_policy and _SID_RE.fullmatch(sid) is None:
            raise PolicyError(f'{where}: Statement IDs (SID) must be alpha-numeric, got "{sid}"')
        where = f'statement #{index} ("{sid}")'
    unknown = [k for k in raw if k not in _STATEMENT_KEYS]
    if unknown:
        raise PolicyError(f'{where}: unknown element "{unknown[0]}"; a statement may contain '
                          f'{", ".join(_STATEMENT_KEYS)}')

    effect = raw.get("Effect")
    if effect is None:
        raise PolicyError(f"{where}: Effect is required")
    if effect not in ("Allow", "Deny"):
        raise PolicyError(f'{where}: Effect must be "Allow" or "Deny", got {json.dumps(effect)}')

    principal_key = _exclusive(raw, "Principal", "NotPrincipal", where)
    if not resource_policy and principal_key is not None:
        raise PolicyError(f"{where}: {principal_key} is not allowed in an identity-based policy "
                          f"(the principal is the identity the policy is attached to)")
    if resource_policy and principal_key is None:
        raise PolicyError(f"{where}: a resource policy statement must contain Principal or NotPrincipal")
    if principal_key == "NotPrincipal" and effect != "Deny":
        # AWS: "NotPrincipal must be used with "Effect":"Deny". Using it with "Effect":"Allow" is not supported."
        raise PolicyError(f'{where}: NotPrincipal must be used with "Effect": "Deny"; with "Allow" it is not '
                          f'supported (use Principal with a condition on aws:PrincipalArn instead)')
    principals = _principals(raw["Principal"], "Principal", where) if principal_key == "Principal" else None
    not_principals = (_principals(raw["NotPrincipal"], "NotPrincipal", where)
                      if principal_key == "NotPrincipal" else None)

    action_key = _exclusive(raw, "Action", "NotAction", where)
    if action_key is None:
        raise PolicyError(f"{where}: a statement must contain Action or NotAction")
    action_values = _strings(raw[action_key], action_key, where)
    for action in action_values:
        _check_action(action, where)

    resource_key = _exclusive(raw, "Resource", "NotResource", where)
    if resource_key is None and not resource_policy:
        raise PolicyError(f"{where}: a statement must contain Resource or NotResource")
    resource_values = _strings(raw[resource_key], resource_key, where) if resource_key else None
    for resource in resource_values or ():
        _check_resource(resource, where, resource_key or "Resource")

    conditions = (parse_conditions(raw["Condition"], where, variables=variables)
                  if "Condition" in raw else ())
    return Statement(
        sid=sid or None,
        effect=effect,
        actions=action_values if action_key == "Action" else None,
        not_actions=action_values if action_key == "NotAction" else None,
        resources=resource_values if resource_key == "Resource" else None,
        not_resources=resource_values if resource_key == "NotResource" else None,
        principals=principals,
        not_principals=not_principals,
        conditions=conditions,
        index=index,
    )


def parse_policy(text: str, *, resource_policy: bool, max_length: int = MAX_POLICY_LENGTH) -> Policy:
    """Parse and validate a policy document; raise PolicyError with a clear message when it is malformed.

    resource_policy=True (e.g. an ECR repository policy): every statement needs Principal or NotPrincipal;
    Resource is optional and defaults to the resource the policy is attached to. resource_policy=False
    (identity-based): Principal/NotPrincipal are rejected and Resource or NotResource is required.
    """
    if not isinstance(text, str):
        raise PolicyError("policy text must be a string")
    if len(text) > max_length:
        raise PolicyError(f"policy text is {len(text)} characters long; the maximum is {max_length}")
    if not text.strip():
        raise PolicyError("policy text is empty")
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise PolicyError(f"policy is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(doc, dict):
        raise PolicyError("policy must be a JSON object")
    unknown = [k for k in doc if k not in _TOP_LEVEL]
    if unknown:
        raise PolicyError(f'unknown top-level element "{unknown[0]}"; a policy may contain '
                          f'{", ".join(_TOP_LEVEL)}')

    # "If you do not include a Version element, the value defaults to 2008-10-17" - and then policy
    # variables are not recognised ("treated as literal strings in the policy").
    version = doc.get("Version", VERSION_2008)
    if version not in (VERSION_2012, VERSION_2008):
        raise PolicyError(f'Version must be "{VERSION_2012}" or "{VERSION_2008}", got {json.dumps(version)}')
    policy_id = doc.get("Id")
    if policy_id is not None and not isinstance(policy_id, str):
        raise PolicyError("Id must be a string")

    if "Statement" not in doc:
        raise PolicyError("policy must contain a Statement element")
    raw_statements = doc["Statement"]
    if isinstance(raw_statements, dict):
        raw_statements = [raw_statements]
    if not isinstance(raw_statements, list):
        raise PolicyError("Statement must be an object or a list of objects")
    if not raw_statements:
        raise PolicyError("Statement must not be an empty list")
    variables = version == VERSION_2012
    statements = tuple(_statement(s, i, resource_policy=resource_policy, variables=variables)
                       for i, s in enumerate(raw_statements))
    seen: set[str] = set()
    for st in statements:
        if st.sid is not None:
            if st.sid in seen:
                raise PolicyError(f'Statement IDs (SID) in a single policy must be unique: "{st.sid}" is repeated')
            seen.add(st.sid)
    return Policy(version, statements, policy_id)


# --------------------------------------------------------------------------------------------------
# Matching
# --------------------------------------------------------------------------------------------------

PrincipalMatch = Literal["principal", "account", "service"]


def _entry_match(kind: str, entry: str, facts: RequestFacts, is_account_root: bool) -> PrincipalMatch | None:
    if kind == "*" or (kind == "AWS" and entry == "*"):
        return "principal"
    if kind == "AWS":
        if _ACCOUNT_RE.fullmatch(entry):
            account, whole_account = entry, True
        else:
            m = _PRINCIPAL_ARN_RE.fullmatch(entry)
            if m is None:  # pragma: no cover - rejected by parse_policy
                return None
            account, whole_account = m.group(1), m.group(2) == "root"
        if whole_account:
            # The account id and "arn:aws:iam::ACCOUNT:root" behave the same: both name the account, "not
            # only the root user". For the root user itself that is a direct grant.
            if account != facts.principal_account:
                return None
            return "principal" if is_account_root else "account"
        return "principal" if entry == facts.principal_arn else None
    if kind == "Service":
        return "service" if entry.lower() == facts.principal_arn.lower() else None
    return "principal" if entry == facts.principal_arn else None


def principal_match(principals: Principals, facts: RequestFacts, *, is_account_root: bool) -> PrincipalMatch | None:
    """How a Principal element names the caller: "principal" (the caller itself, or everyone), "account"
    (the caller's account, which delegates to that account's identity policies), "service" (an AWS service
    principal such as "codebuild.amazonaws.com", which has no account or identity policies), or None."""
    best: PrincipalMatch | None = None
    for kind, entries in principals.items():
        for entry in entries:
            found = _entry_match(kind, entry, facts, is_account_root)
            if found in ("principal", "service"):
                return found
            best = best or found
    return best


def _exempt(not_principals: Principals, facts: RequestFacts, is_account_root: bool) -> bool:
    """Is the caller spared by a NotPrincipal list? AWS: "When you use NotPrincipal, you must also specify
    the account ARN of the not-denied principal. Otherwise, the policy might deny access to the entire
    account containing the principal ... AWS might validate the account first, and then the user." So every
    identity AWS may check must be listed: the account (id or root ARN) and, unless the caller is the root,
    the caller's own ARN. "*" spares everyone; a service principal is spared by its own name."""
    levels: set[PrincipalMatch | None] = set()
    for kind, entries in not_principals.items():
        for entry in entries:
            if kind == "*" or entry == "*":
                return True
            levels.add(_entry_match(kind, entry, facts, is_account_root))
    if "service" in levels:
        return True
    # For the root an account entry matches as "principal"; for anyone else "principal" is their own ARN.
    return "principal" in levels and (is_account_root or "account" in levels)


def _statement_principal(st: Statement, facts: RequestFacts, is_account_root: bool) -> PrincipalMatch | None:
    if st.principals is not None:
        return principal_match(st.principals, facts, is_account_root=is_account_root)
    if st.not_principals is not None:  # always a Deny: parse_policy rejects NotPrincipal with Allow
        return None if _exempt(st.not_principals, facts, is_account_root) else "principal"
    return "principal"  # identity-based statement: the caller


def _applies(st: Statement, facts: RequestFacts, context: RequestContext, variables: bool) -> bool:
    """Action, Resource and Condition of one statement against the request (Principal is handled apart)."""
    if st.actions is not None:
        if not any(wildcard_match(a, facts.action, ignore_case=True) for a in st.actions):
            return False
    elif st.not_actions is not None and any(wildcard_match(a, facts.action, ignore_case=True)
                                            for a in st.not_actions):
        return False
    try:
        resources = st.resources if st.resources is not None else st.not_resources
        if resources is not None:
            hit = any(pattern_match(expand(r, wild=True, variables=variables, context=context), facts.resource)
                      for r in resources)
            if hit != (st.resources is not None):
                return False
        return conditions_hold(st.conditions, context, variables=variables)
    except UnresolvedVariable:
        return False


def _context(facts: RequestFacts) -> RequestContext:
    base: dict[str, object] = {"aws:PrincipalArn": facts.principal_arn, "aws:PrincipalAccount": facts.principal_account}
    lowered = {k.lower() for k in facts.context}
    base = {k: v for k, v in base.items() if k.lower() not in lowered}
    return RequestContext({**base, **facts.context})


def evaluate(facts: RequestFacts, identity_policies: Sequence[tuple[str, Policy]],
             resource_policies: Sequence[tuple[str, Policy]], *, resource_account: str,
             is_account_root: bool = False) -> Decision:
    """Decide one request. identity_policies are the caller's (name, policy) pairs; resource_policies are
    those attached to the resource (e.g. the repository policy). aws:PrincipalArn and aws:PrincipalAccount
    are filled in from the facts unless the context gives them."""
    context = _context(facts)
    identity_allow: tuple[str, str] | None = None
    direct_allow: tuple[str, str] | None = None     # a resource policy naming the caller (or everyone)
    service_allow: tuple[str, str] | None = None    # a resource policy naming the calling service
    account_allow: tuple[str, str] | None = None    # a resource policy naming only the caller's account

    for name, policy in identity_policies:
        for st in policy.statements:
            if not _applies(st, facts, context, policy.variables):
                continue
            if st.effect == "Deny":
                return Decision(False, "explicit_deny", name, st.label)
            identity_allow = identity_allow or (name, st.label)

    for name, policy in resource_policies:
        for st in policy.statements:
            level = _statement_principal(st, facts, is_account_root)
            if level is None or not _applies(st, facts, context, policy.variables):
                continue
            if st.effect == "Deny":  # a Deny naming an account denies every principal in it
                return Decision(False, "explicit_deny", name, st.label)
            if level == "principal":
                direct_allow = direct_allow or (name, st.label)
            elif level == "service":
                service_allow = service_allow or (name, st.label)
            else:
                account_allow = account_allow or (name, st.label)

    if service_allow is not None:  # a service principal is granted by the resource policy alone
        return Decision(True, "allowed", *service_allow)
    if facts.principal_account == resource_account:
        # "If either the identity-based policy or the resource-based policy within the same account allows
        # the request and the other doesn't, the request is still allowed."
        granted = identity_allow or direct_allow
        if granted is not None:
            return Decision(True, "allowed", *granted)
        if is_account_root:
            return Decision(True, "allowed")
        return Decision(False, "implicit_deny")
    # Cross-account: "the identity-based policy in the trusted account and the resource-based policy in the
    # trusting account must both allow". The root user has every permission of its own account.
    resource_grant = direct_allow or account_allow
    if resource_grant is not None and (identity_allow is not None or is_account_root):
        return Decision(True, "allowed", *resource_grant)
    return Decision(False, "implicit_deny")


__all__ = ["MAX_POLICY_LENGTH", "VERSION_2008", "VERSION_2012", "Condition", "Decision", "Policy", "PolicyError",
           "RequestFacts", "Statement", "evaluate", "parse_policy", "principal_match", "wildcard_match"]
