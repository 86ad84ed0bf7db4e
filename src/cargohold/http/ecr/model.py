"""The ECR wire format, taken from botocore's service model rather than re-typed by hand.

validate_input() checks a decoded JSON 1.1 request against the operation's input shape
(required members, types, enums, lengths, ranges, patterns) and returns it with blobs
decoded and timestamps parsed. Errors read like AWS's ("1 validation error detected: ...").
"""

from __future__ import annotations

import base64
import binascii
import datetime
import functools
import re
from typing import Any

import botocore.session
from botocore.model import OperationModel, ServiceModel, Shape

from cargohold.errors import Kind, RegistryError

TARGET_PREFIX = "AmazonEC2ContainerRegistry_V20150921"


@functools.cache
def service_model(name: str = "ecr") -> ServiceModel:
    return botocore.session.get_session().get_service_model(name)


def operation(name: str) -> OperationModel | None:
    model = service_model()
    if name not in model.operation_names:
        return None
    return model.operation_model(name)


@functools.cache
def _pattern(expr: str) -> re.Pattern[str] | None:
    try:
        return re.compile(expr)
    except re.error:
        return None  # a Java-only construct: leave the check to the operation


def _type_error(path: str, expected: str) -> RegistryError:
    return RegistryError(Kind.SERIALIZATION, f"Unexpected value at '{path}': expected {expected}")


class _Validator:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def constraint(self, value: Any, path: str, text: str) -> None:
        shown = value if isinstance(value, str | int | float) else "[...]"
        self.errors.append(f"Value '{shown}' at '{path}' failed to satisfy constraint: {text}")

    def check(self, shape: Shape, value: Any, path: str) -> Any:
        kind = shape.type_name
        meta = shape.metadata
        if kind == "structure":
            if not isinstance(value, dict):
                raise _type_error(path, "an object")
            out: dict[str, Any] = {}
            for required in meta.get("required", []):
                if value.get(required) is None:
                    self.constraint("null", f"{path}.{required}".lstrip("."), "Member must not be null")
            for key, item in value.items():
                member = shape.members.get(key)
                if member is None or item is None:
                    continue  # unknown members are ignored, as AWS does
                out[key] = self.check(member, item, f"{path}.{key}".lstrip("."))
            return out
        if kind == "list":
            if not isinstance(value, list):
                raise _type_error(path, "a list")
            self._length(value, meta, path)
            member = shape.member
            return [self.check(member, item, f"{path}.{i + 1}.member") for i, item in enumerate(value)]
        if kind == "map":
            if not isinstance(value, dict):
                raise _type_error(path, "a map")
            self._length(value, meta, path)
            return {self.check(shape.key, k, f"{path}.key"): self.check(shape.value, v, f"{path}.{k}")
                    for k, v in value.items()}
        if kind == "string":
            if not isinstance(value, str):
                raise _type_error(path, "a string")
            self._length(value, meta, path)
            enum = shape.enum
            if enum and value not in enum:
                self.constraint(value, path, f"Member must satisfy enum value set: [{', '.join(enum)}]")
            pattern = meta.get("pattern")
            if pattern and value and (compiled := _pattern(pattern)) and not compiled.fullmatch(value):
                self.constraint(value, path, f"Member must satisfy regular expression pattern: {pattern}")
            return value
        if kind in ("integer", "long"):
            if isinstance(value, bool) or not isinstance(value, int):
                raise _type_error(path, "an integer")
            if "min" in meta and value < meta["min"]:
                self.constraint(value, path, f"Member must have value greater than or equal to {meta['min']}")
            if "max" in meta and value > meta["max"]:
                self.constraint(value, path, f"Member must have value less than or equal to {meta['max']}")
            return value
        if kind in ("float", "double"):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise _type_error(path, "a number")
            return value
        if kind == "boolean":
            if not isinstance(value, bool):
                raise _type_error(path, "a boolean")
            return value
        if kind == "blob":
            if not isinstance(value, str):
                raise _type_error(path, "base64 text")
            try:
                data = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise _type_error(path, "base64 text") from None
            self._length(data, meta, path)
            return data
        if kind == "timestamp":
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                raise _type_error(path, "a timestamp")
            try:
                if isinstance(value, str):
                    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
                return float(value)
            except ValueError:
                raise _type_error(path, "a timestamp") from None
        return value

    def _length(self, value: Any, meta: dict[str, Any], path: str) -> None:
        size = len(value)
        if "min" in meta and size < meta["min"]:
            self.constraint(value, path, f"Member must have length greater than or equal to {meta['min']}")
        if "max" in meta and size > meta["max"]:
            self.constraint(value, path, f"Member must have length less than or equal to {meta['max']}")


def validate_input(op: OperationModel, body: Any) -> dict[str, Any]:
    shape = op.input_shape
    if shape is None:
        return {}
    validator = _Validator()
    checked = validator.check(shape, body, "")
    if validator.errors:
        count = len(validator.errors)
        noun = "error" if count == 1 else "errors"
        raise RegistryError(Kind.VALIDATION, f"{count} validation {noun} detected: " + "; ".join(validator.errors))
    return dict(checked)
