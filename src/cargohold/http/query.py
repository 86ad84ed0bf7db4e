"""AWS query protocol (IAM, STS): form-encoded input, XML output, both driven by botocore's model."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any
from xml.sax.saxutils import escape

from botocore.model import OperationModel, Shape

from cargohold.errors import Kind, RegistryError


def _scalar(shape: Shape, raw: str, name: str) -> Any:
    kind = shape.type_name
    if kind in ("integer", "long"):
        try:
            return int(raw)
        except ValueError:
            raise RegistryError(Kind.VALIDATION, f"{name}: expected an integer") from None
    if kind == "boolean":
        if raw.lower() not in ("true", "false"):
            raise RegistryError(Kind.VALIDATION, f"{name}: expected true or false")
        return raw.lower() == "true"
    return raw


def _parse(shape: Shape, params: Mapping[str, str], prefix: str) -> Any:
    kind = shape.type_name
    if kind == "structure":
        out: dict[str, Any] = {}
        for name, member in shape.members.items():
            value = _parse(member, params, f"{prefix}.{name}" if prefix else name)
            if value is not None:
                out[name] = value
        return out if out or not prefix else None
    if kind == "list":
        items = []
        member = shape.member
        for i in range(1, 1001):
            value = _parse(member, params, f"{prefix}.member.{i}")
            if value is None:
                break
            items.append(value)
        if not items and params.get(prefix) == "":
            return []
        return items or None
    if kind == "map":
        entries: dict[str, Any] = {}
        for i in range(1, 1001):
            key = params.get(f"{prefix}.entry.{i}.key")
            if key is None:
                break
            entries[key] = _parse(shape.value, params, f"{prefix}.entry.{i}.value")
        return entries or None
    raw = params.get(prefix)
    return None if raw is None else _scalar(shape, raw, prefix)


def parse_input(op: OperationModel, params: Mapping[str, str]) -> dict[str, Any]:
    shape = op.input_shape
    if shape is None:
        return {}
    parsed: dict[str, Any] = _parse(shape, params, "") or {}
    missing = [name for name in shape.metadata.get("required", []) if name not in parsed]
    if missing:
        raise RegistryError(Kind.VALIDATION, "1 validation error detected: Value null at '"
                            f"{missing[0][0].lower() + missing[0][1:]}' failed to satisfy constraint: "
                            "Member must not be null")
    for name, value in parsed.items():
        member = shape.members[name]
        meta = member.metadata
        if isinstance(value, str):
            if ("min" in meta and len(value) < meta["min"]) or ("max" in meta and len(value) > meta["max"]):
                raise RegistryError(Kind.VALIDATION,
                                    f"1 validation error detected: Value at '{name}' failed to satisfy constraint: "
                                    f"Member must have length between {meta.get('min', 0)} and "
                                    f"{meta.get('max', 'unbounded')}")
            if member.enum and value not in member.enum:
                raise RegistryError(Kind.VALIDATION,
                                    f"1 validation error detected: Value '{value}' at '{name}' failed to satisfy "
                                    f"constraint: Member must satisfy enum value set: [{', '.join(member.enum)}]")
    return parsed


def _xml(shape: Shape, value: Any) -> str:
    kind = shape.type_name
    if kind == "structure":
        parts = []
        for name, member in shape.members.items():
            if name in value and value[name] is not None:
                parts.append(f"<{name}>{_xml(member, value[name])}</{name}>")
        return "".join(parts)
    if kind == "list":
        member = shape.member
        return "".join(f"<member>{_xml(member, item)}</member>" for item in value)
    if kind == "map":
        return "".join(f"<entry><key>{escape(str(k))}</key><value>{_xml(shape.value, v)}</value></entry>"
                       for k, v in value.items())
    if kind == "boolean":
        return "true" if value else "false"
    if kind == "timestamp":
        if isinstance(value, int | float):
            value = datetime.datetime.fromtimestamp(value, datetime.UTC)
        return str(value.strftime("%Y-%m-%dT%H:%M:%SZ"))
    return escape(str(value))


def render_output(op: OperationModel, namespace: str, result: dict[str, Any], request_id: str) -> bytes:
    name = op.name
    body = ""
    if op.output_shape is not None:
        wrapper = op.output_shape.serialization.get("resultWrapper", f"{name}Result")
        body = f"<{wrapper}>{_xml(op.output_shape, result)}</{wrapper}>"
    return (f'<{name}Response xmlns="{namespace}">{body}<ResponseMetadata><RequestId>{request_id}</RequestId>'
            f"</ResponseMetadata></{name}Response>").encode()


def render_error(err: RegistryError, namespace: str, request_id: str) -> tuple[int, bytes]:
    row = err.row
    fault = "Sender" if row.iam_status < 500 else "Receiver"
    body = (f'<ErrorResponse xmlns="{namespace}"><Error><Type>{fault}</Type><Code>{row.iam_code}</Code>'
            f"<Message>{escape(err.message)}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>")
    return row.iam_status, body.encode()
