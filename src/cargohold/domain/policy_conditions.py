"""The pieces of IAM policy evaluation below the statement: wildcards, policy variables, condition operators.

Pure and typed: no I/O and no clock (aws:CurrentTime and aws:EpochTime come in the request context).
policy.py parses whole documents and decides requests; this module parses and evaluates one Condition
block against a RequestContext. Behaviour follows the AWS IAM User Guide ("IAM JSON policy elements:
Condition operators", "Single-valued vs. multivalued context keys", "IAM policy elements: Variables and
tags", "IAM JSON policy elements: Resource"); the points that are easy to get wrong cite it inline.
"""

from __future__ import annotations

import base64
import binascii
import enum
import ipaddress
import operator as _op
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any, Literal


class PolicyError(ValueError):
    """A policy document is malformed. The message is suitable for ECR's InvalidParameterException
    and for IAM's MalformedPolicyDocument."""


class UnresolvedVariable(Exception):  # a control-flow signal, never reported to users
    """A ${...} policy variable names a key the request context does not have (and gives no default).

    AWS: "If AWS cannot resolve a variable this might cause the entire statement to be invalid." We take
    the strict reading: a statement that needs an unresolvable variable does not apply to the request.
    """


# --------------------------------------------------------------------------------------------------
# Wildcards and policy variables
# --------------------------------------------------------------------------------------------------

class Wild(enum.Enum):
    STAR = "*"   # any run of characters, including none, including ':' and '/'
    QMARK = "?"  # exactly one character


Token = str | Wild  # str tokens are literal text: no wildcard meaning whatever characters they hold
Pattern = tuple[Token, ...]

_WILD_SPLIT_RE = re.compile(r"([*?])")
_VAR_RE = re.compile(r"\$\{([^}]*)\}")
_DEFAULT_RE = re.compile(r"\s*'([^']*)'\s*")
# ${*}, ${?} and ${$} stand for the literal characters (AWS: "Special characters").
_SPECIAL_VARS = {"*": "*", "?": "?", "$": "$"}


def _wild_tokens(text: str, wild: bool) -> list[Token]:
    if not wild:
        return [text] if text else []
    out: list[Token] = []
    for piece in _WILD_SPLIT_RE.split(text):
        if piece == "*":
            out.append(Wild.STAR)
        elif piece == "?":
            out.append(Wild.QMARK)
        elif piece:
            out.append(piece)
    return out


def _variable(body: str) -> tuple[str, str | None] | None:
    """Parse the inside of ${...}: a context key, optionally followed by ", 'default'"."""
    key, sep, rest = body.partition(",")
    key = key.strip()
    if not key or ":" not in key or any(c in key for c in "'${"):
        return None
    if not sep:
        return key, None
    m = _DEFAULT_RE.fullmatch(rest)
    return (key, m.group(1)) if m else None


def has_variables(raw: str) -> bool:
    return any(m.group(1) in _SPECIAL_VARS or _variable(m.group(1)) for m in _VAR_RE.finditer(raw))


@lru_cache(maxsize=4096)
def _static_pattern(raw: str, wild: bool) -> Pattern:
    return tuple(_wild_tokens(raw, wild))


def expand(raw: str, *, wild: bool, variables: bool, context: RequestContext | None) -> Pattern:
    """Turn a policy string into a pattern: wildcards (when `wild`) and, when `variables` (policy version
    2012-10-17), ${key} substitutions from `context`. Substituted text is literal: a '*' that comes from a
    variable is not a wildcard. Malformed ${...} text is kept as it is."""
    if not variables or "${" not in raw:
        return _static_pattern(raw, wild)
    out: list[Token] = []
    pos = 0
    for m in _VAR_RE.finditer(raw):
        body = m.group(1)
        if body in _SPECIAL_VARS:
            replacement = _SPECIAL_VARS[body]
        else:
            parsed = _variable(body)
            if parsed is None:
                continue  # not a variable: left in the surrounding text
            key, default = parsed
            value = context.single_text(key) if context is not None else None
            if value is None:
                if default is None:
                    raise UnresolvedVariable(key)
                value = default
            replacement = value
        out.extend(_wild_tokens(raw[pos:m.start()], wild))
        if replacement:
            out.append(replacement)
        pos = m.end()
    out.extend(_wild_tokens(raw[pos:], wild))
    return tuple(out)


def pattern_text(pattern: Pattern) -> str:
    return "".join(t if isinstance(t, str) else t.value for t in pattern)


@lru_cache(maxsize=4096)
def _compiled(pattern: Pattern, ignore_case: bool) -> re.Pattern[str]:
    parts = [re.escape(t) if isinstance(t, str) else (".*" if t is Wild.STAR else ".") for t in pattern]
    return re.compile("".join(parts), re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def pattern_match(pattern: Pattern, value: str, *, ignore_case: bool = False) -> bool:
    if all(isinstance(t, str) for t in pattern):
        text = pattern_text(pattern)
        return text.casefold() == value.casefold() if ignore_case else text == value
    if pattern == (Wild.STAR,):
        return True
    return _compiled(pattern, ignore_case).fullmatch(value) is not None


def wildcard_match(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """IAM wildcard matching: '*' matches any run of characters (including none), '?' exactly one; every
    other character, regex metacharacters included, stands for itself. Used for Action (case-insensitive),
    Resource (case-sensitive) and StringLike."""
    return pattern_match(_static_pattern(pattern, True), value, ignore_case=ignore_case)


def _split_arn(pattern: Pattern) -> list[Pattern] | None:
    """Split an ARN pattern into its six colon-separated components (the sixth keeps any further colons)."""
    parts: list[list[Token]] = [[]]
    for token in pattern:
        if isinstance(token, str) and len(parts) < 6 and ":" in token:
            pieces = token.split(":", 6 - len(parts))
            for i, piece in enumerate(pieces):
                if i:
                    parts.append([])
                if piece:
                    parts[-1].append(piece)
        else:
            parts[-1].append(token)
    return [tuple(p) for p in parts] if len(parts) == 6 else None


def arn_match(pattern: Pattern, value: str) -> bool:
    """ArnEquals/ArnLike: "Each of the six colon-delimited components of the ARN is checked separately and
    each can include multi-character match wildcards (*) or single-character match wildcards (?)."
    A pattern that is not six components long (e.g. a lone "*") is matched against the whole ARN."""
    components = _split_arn(pattern)
    if components is None:
        return pattern_match(pattern, value)
    values = value.split(":", 5)
    if len(values) != 6:
        return False
    return all(pattern_match(p, v) for p, v in zip(components, values, strict=True))


# --------------------------------------------------------------------------------------------------
# The request context
# --------------------------------------------------------------------------------------------------

class RequestContext:
    """Condition keys of one request. Key names are case-insensitive (AWS: "Condition key names are not
    case-sensitive"). A key whose value is None or an empty list is treated as absent."""

    def __init__(self, values: Mapping[str, object]) -> None:
        self._values: dict[str, object] = {}
        for key, value in values.items():
            self._values[key.lower()] = value

    def values(self, key: str) -> tuple[object, ...] | None:
        value = self._values.get(key.lower())
        if value is None:
            return None
        if isinstance(value, list | tuple | set | frozenset):
            items = tuple(v for v in value if v is not None)
            return items or None
        return (value,)

    def single_text(self, key: str) -> str | None:
        """The value of a single-valued key as text, for a policy variable. AWS: multivalued context keys
        cannot be used as policy variables, so a list counts as unresolvable."""
        value = self._values.get(key.lower())
        if value is None or isinstance(value, list | tuple | set | frozenset):
            return None
        return as_text(value)


def as_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return _aware(value).isoformat().replace("+00:00", "Z")
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return str(value)


# --------------------------------------------------------------------------------------------------
# Value parsing for the typed operator families
# --------------------------------------------------------------------------------------------------

_NUMBER_RE = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")


def parse_number(value: object) -> Decimal | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | Decimal):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value)) if value == value and abs(value) != float("inf") else None
    if isinstance(value, str) and _NUMBER_RE.fullmatch(value.strip()):
        try:
            return Decimal(value.strip())
        except InvalidOperation:  # pragma: no cover - the regex admits only valid decimals
            return None
    return None


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def parse_date(value: object) -> datetime | None:
    """ISO 8601 (date, or date and time with optional offset or Z; naive means UTC) or epoch seconds."""
    if isinstance(value, datetime):
        return _aware(value)
    number = parse_number(value)
    if number is not None:
        try:
            return datetime.fromtimestamp(float(number), UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        try:
            return _aware(datetime.fromisoformat(value.strip()))
        except ValueError:
            return None
    return None


def parse_bool(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=1024)
def parse_network(value: str) -> Network | None:
    """A CIDR block or a bare address (meaning /32 or /128). Host bits may be set, as AWS accepts."""
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        return None


def _parse_address(value: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value.strip() if isinstance(value, str) else str(value))
    except ValueError:
        return None


def _is_base64(value: str) -> bool:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


# --------------------------------------------------------------------------------------------------
# Operators
# --------------------------------------------------------------------------------------------------

Family = Literal["string", "numeric", "date", "bool", "binary", "ip", "arn", "null"]
Compare = Literal["eq", "eq_ci", "like", "lt", "le", "gt", "ge", "in", "null"]


@dataclass(frozen=True)
class OperatorSpec:
    family: Family
    compare: Compare
    negated: bool = False

    @property
    def variables(self) -> bool:
        # AWS lists policy-variable support per family: String, Boolean and ARN yes; Numeric, Date,
        # Binary, IP address and Null no.
        return self.family in ("string", "bool", "arn")


OPERATORS: dict[str, OperatorSpec] = {
    "StringEquals": OperatorSpec("string", "eq"),
    "StringNotEquals": OperatorSpec("string", "eq", True),
    "StringEqualsIgnoreCase": OperatorSpec("string", "eq_ci"),
    "StringNotEqualsIgnoreCase": OperatorSpec("string", "eq_ci", True),
    "StringLike": OperatorSpec("string", "like"),
    "StringNotLike": OperatorSpec("string", "like", True),
    "NumericEquals": OperatorSpec("numeric", "eq"),
    "NumericNotEquals": OperatorSpec("numeric", "eq", True),
    "NumericLessThan": OperatorSpec("numeric", "lt"),
    "NumericLessThanEquals": OperatorSpec("numeric", "le"),
    "NumericGreaterThan": OperatorSpec("numeric", "gt"),
    "NumericGreaterThanEquals": OperatorSpec("numeric", "ge"),
    "DateEquals": OperatorSpec("date", "eq"),
    "DateNotEquals": OperatorSpec("date", "eq", True),
    "DateLessThan": OperatorSpec("date", "lt"),
    "DateLessThanEquals": OperatorSpec("date", "le"),
    "DateGreaterThan": OperatorSpec("date", "gt"),
    "DateGreaterThanEquals": OperatorSpec("date", "ge"),
    "Bool": OperatorSpec("bool", "eq"),
    "BinaryEquals": OperatorSpec("binary", "eq"),
    "IpAddress": OperatorSpec("ip", "in"),
    "NotIpAddress": OperatorSpec("ip", "in", True),
    # ArnEquals and ArnLike behave the same: both honour wildcards in each ARN component.
    "ArnEquals": OperatorSpec("arn", "like"),
    "ArnLike": OperatorSpec("arn", "like"),
    "ArnNotEquals": OperatorSpec("arn", "like", True),
    "ArnNotLike": OperatorSpec("arn", "like", True),
    "Null": OperatorSpec("null", "null"),
}

Qualifier = Literal["ForAnyValue", "ForAllValues"]
_QUALIFIERS: tuple[Qualifier, ...] = ("ForAnyValue", "ForAllValues")
_IF_EXISTS = "IfExists"


def parse_operator(name: str) -> tuple[Qualifier | None, str, bool]:
    """Split "ForAnyValue:StringLikeIfExists" into (qualifier, base operator, if_exists). Operator names
    are case-sensitive: IAM rejects "stringEquals" with "Invalid Condition type"."""
    qualifier: Qualifier | None = None
    rest = name
    for q in _QUALIFIERS:
        if name.startswith(q + ":"):
            qualifier, rest = q, name[len(q) + 1:]
            break
    if_exists = rest.endswith(_IF_EXISTS) and rest != _IF_EXISTS
    base = rest[: -len(_IF_EXISTS)] if if_exists else rest
    if base not in OPERATORS:
        hint = ""
        lowered = {op.lower(): op for op in OPERATORS}
        guess = lowered.get(base.lower())
        if guess is None and ":" in rest:
            prefix = name.split(":", 1)[0]
            fix = next((q for q in _QUALIFIERS if q.lower() == prefix.lower()), None)
            hint = (f' (did you mean "{fix}:"?)' if fix
                    else ' (the only prefixes are "ForAnyValue:" and "ForAllValues:")')
        elif guess is not None:
            hint = f' (operator names are case-sensitive: did you mean "{guess}"?)'
        raise PolicyError(f'Invalid Condition type: unknown condition operator "{name}"{hint}')
    # AWS: "You can add IfExists to the end of any condition operator name except the Null condition."
    if base == "Null" and if_exists:
        raise PolicyError('Invalid Condition type: "NullIfExists" is not allowed; Null already tests existence')
    if base == "Null" and qualifier is not None:
        raise PolicyError(f'Invalid Condition type: "{name}": Null cannot take a ForAnyValue:/ForAllValues: prefix')
    return qualifier, base, if_exists


@dataclass(frozen=True)
class Condition:
    """One (operator, key) pair of a Condition block with its values (several values for one key are ORed)."""

    operator: str               # as written, e.g. "ForAnyValue:StringLikeIfExists"
    key: str                    # as written; matched case-insensitively
    values: tuple[str, ...]     # JSON numbers and booleans are kept as their JSON text
    base: str                   # e.g. "StringLike"
    qualifier: Qualifier | None
    if_exists: bool

    @property
    def spec(self) -> OperatorSpec:
        return OPERATORS[self.base]


def _value_text(value: object, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    raise PolicyError(f"{where}: condition values must be strings, numbers or booleans, not {_json_type(value)}")


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _check_value(base: str, spec: OperatorSpec, value: str, where: str, variables: bool) -> None:
    if variables and spec.variables and has_variables(value):
        return  # checked once substituted, at evaluation time
    if spec.family == "numeric" and parse_number(value) is None:
        raise PolicyError(f'{where}: {base} needs numbers, got "{value}"')
    if spec.family == "date" and parse_date(value) is None:
        raise PolicyError(f'{where}: {base} needs ISO 8601 dates or epoch seconds, got "{value}"')
    if spec.family in ("bool", "null") and parse_bool(value) is None:
        raise PolicyError(f'{where}: {base} needs "true" or "false", got "{value}"')
    if spec.family == "ip" and parse_network(value) is None:
        raise PolicyError(f'{where}: {base} needs IPv4 or IPv6 addresses or CIDR blocks, got "{value}"')
    if spec.family == "binary" and not _is_base64(value):
        raise PolicyError(f'{where}: BinaryEquals needs base64 values, got "{value}"')


def parse_conditions(raw: object, where: str, *, variables: bool) -> tuple[Condition, ...]:
    """Validate a statement's Condition element: {operator: {key: value-or-list}}."""
    if not isinstance(raw, dict):
        raise PolicyError(f"{where}: Condition must be an object mapping condition operators to keys, "
                          f"not {_json_type(raw)}")
    out: list[Condition] = []
    for operator, block in raw.items():
        qualifier, base, if_exists = parse_operator(operator)
        spec = OPERATORS[base]
        if not isinstance(block, dict):
            raise PolicyError(f'{where}: Condition "{operator}" must be an object mapping condition keys to '
                              f"values, not {_json_type(block)}")
        for key, value in block.items():
            here = f'{where}: Condition "{operator}" key "{key}"'
            if not key or ":" not in key or key.startswith(":") or key.endswith(":"):
                raise PolicyError(f'{where}: condition key "{key}" must be prefaced by a vendor, '
                                  f'e.g. "aws:SourceIp" or "ecr:ResourceTag/team"')
            items = value if isinstance(value, list) else [value]
            if not items:
                raise PolicyError(f"{here} has an empty list of values")
            texts = tuple(_value_text(v, here) for v in items)
            for text in texts:
                _check_value(base, spec, text, here, variables)
            out.append(Condition(operator, key, texts, base, qualifier, if_exists))
    return tuple(out)


# --------------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------------

_ORDER: dict[str, Callable[[Any, Any], Any]] = {"eq": _op.eq, "lt": _op.lt, "le": _op.le, "gt": _op.gt,
                                                "ge": _op.ge}


def _ordered(compare: Compare, left: Decimal | datetime, right: Decimal | datetime) -> bool:
    return bool(_ORDER[compare](left, right))


def _matches(spec: OperatorSpec, request_value: object, policy_value: str, context: RequestContext,
             variables: bool) -> bool:
    """The positive (un-negated) test of one request value against one policy value."""
    family, compare = spec.family, spec.compare
    if family == "string":
        pattern = expand(policy_value, wild=compare == "like", variables=variables, context=context)
        text = as_text(request_value)
        if compare == "eq_ci":
            return pattern_text(pattern).casefold() == text.casefold()
        return pattern_match(pattern, text)
    if family == "arn":
        return arn_match(expand(policy_value, wild=True, variables=variables, context=context),
                         as_text(request_value))
    if family == "bool":
        expected = parse_bool(pattern_text(expand(policy_value, wild=False, variables=variables, context=context)))
        actual = parse_bool(request_value)
        return expected is not None and actual is not None and expected == actual
    if family == "numeric":
        number, limit = parse_number(request_value), parse_number(policy_value)
        return number is not None and limit is not None and _ordered(compare, number, limit)
    if family == "date":
        when, limit_date = parse_date(request_value), parse_date(policy_value)
        return when is not None and limit_date is not None and _ordered(compare, when, limit_date)
    if family == "ip":
        address, network = _parse_address(request_value), parse_network(policy_value)
        return address is not None and network is not None and address.version == network.version \
            and address in network
    if family == "binary":
        return as_text(request_value) == policy_value.strip()
    raise AssertionError(family)  # pragma: no cover - Null is handled by the caller


def condition_holds(condition: Condition, context: RequestContext, *, variables: bool) -> bool:
    spec = condition.spec
    present = context.values(condition.key)
    if spec.family == "null":
        # "Null": {"key": "true"} holds when the key is absent; "false" when it is present.
        return any(parse_bool(v) is (present is None) for v in condition.values)
    if present is None:
        # AWS: "If the key that you specify in a policy condition is not present in the request context,
        # the values do not match and the condition is false. If the policy condition requires that the
        # key is not matched, such as StringNotLike or ArnNotLike, and the right key is not present, the
        # condition is true. This logic applies to all condition operators except ...IfExists and Null
        # check." ...IfExists: "If the policy key is present ... process the key as specified; if it is not
        # present, evaluate the condition element as true."
        # Set operators (Single-valued vs. multivalued context keys): ForAllValues "also returns true if
        # there are no context keys in the request"; ForAnyValue returns false then.
        if condition.if_exists or condition.qualifier == "ForAllValues":
            return True
        if condition.qualifier == "ForAnyValue":
            return False
        return spec.negated

    def positive(value: object) -> bool:
        return any(_matches(spec, value, p, context, variables) for p in condition.values)

    # A negated operator with several policy values is the negation of the positive match against any of
    # them (AWS: for negated operators "the effective permission works like a logical AND").
    def holds(value: object) -> bool:
        return not positive(value) if spec.negated else positive(value)

    if condition.qualifier == "ForAllValues":
        return all(holds(v) for v in present)
    if condition.qualifier == "ForAnyValue":
        return any(holds(v) for v in present)
    hit = any(positive(v) for v in present)
    return not hit if spec.negated else hit


def conditions_hold(conditions: tuple[Condition, ...], context: RequestContext, *, variables: bool) -> bool:
    """All conditions of a block are ANDed. May raise UnresolvedVariable."""
    return all(condition_holds(c, context, variables=variables) for c in conditions)


__all__ = ["OPERATORS", "Condition", "OperatorSpec", "Pattern", "PolicyError", "RequestContext",
           "UnresolvedVariable", "Wild", "arn_match", "as_text", "condition_holds", "conditions_hold", "expand",
           "has_variables", "parse_conditions", "parse_date", "parse_network", "parse_number", "parse_operator",
           "pattern_match", "pattern_text", "wildcard_match"]
