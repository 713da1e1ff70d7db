"""Offline validation of manifests with the API server's wording.

``kubeloop`` validates manifests before they reach a cluster (and the tests check the
bad-input catalogue without one). Errors are phrased the way the API server phrases them
(``spec.replicas: Invalid value ...``, ``Required value``, ``Unsupported value``,
``unknown field``), so a message means the same thing wherever it came from.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from kubeloop.api.kinds import KINDS_BY_NAME
from kubeloop.api.meta import KubeloopModel


class ManifestError(ValueError):
    """A manifest failed validation; ``errors`` lists one message per problem."""

    def __init__(self, kind: str, name: str, errors: list[str]) -> None:
        self.kind = kind
        self.name = name
        self.errors = errors
        super().__init__(f'{kind} "{name}" is invalid: ' + "; ".join(errors))


_UNION_MEMBERS = frozenset({"int", "float", "str", "bool", "list", "dict"})
_UNION_PREFIXES = ("function-", "constrained-", "lax-or-strict", "json-or-python")


def field_path(loc: tuple[int | str, ...]) -> str:
    """Render a pydantic location as a Kubernetes field path: ``spec.steps[1].weight``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in _UNION_MEMBERS or "[" in part or part.startswith(_UNION_PREFIXES):
            # pydantic names the union member it tried; the user only cares about the field
            continue
        else:
            path += f".{part}" if path else part
    return path


def _value(detail: ErrorDetails) -> str:
    value = detail.get("input")
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        return '"object"'
    if isinstance(value, list):
        return '"array"'
    return str(value)


def format_error(detail: ErrorDetails) -> str:
    """One pydantic error in the API server's words."""
    path = field_path(detail["loc"])
    kind = detail["type"]
    ctx = detail.get("ctx", {})
    message = detail["msg"]
    if kind == "missing":
        return f"{path}: Required value"
    if kind == "extra_forbidden":
        return f'unknown field "{path}"'
    if kind == "literal_error":
        expected = ctx.get("expected", "")
        return f"{path}: Unsupported value: {_value(detail)}: supported values: {expected}"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        words = {
            "greater_than_equal": "greater than or equal to",
            "less_than_equal": "less than or equal to",
            "greater_than": "greater than",
            "less_than": "less than",
        }[kind]
        bound = next(iter(ctx.values()))
        return f"{path}: Invalid value: {_value(detail)}: should be {words} {bound}"
    if kind == "string_pattern_mismatch":
        return f"{path}: Invalid value: {_value(detail)}: should match '{ctx.get('pattern')}'"
    if kind == "string_too_long":
        return f"{path}: Too long: may not be more than {ctx.get('max_length')} bytes"
    if kind == "too_long":
        return f"{path}: Too many: must have at most {ctx.get('max_length')} items"
    if kind in ("too_short", "string_too_short"):
        return f"{path}: Invalid value: {_value(detail)}: should have at least {ctx.get('min_length')} items"
    if kind == "value_error":
        return f"{path}: Invalid value: {_value(detail)}: {message.removeprefix('Value error, ')}"
    type_words = {
        "int_type": "integer",
        "int_from_float": "integer",
        "float_type": "number",
        "string_type": "string",
        "bool_type": "boolean",
        "dict_type": "object",
        "model_type": "object",
        "list_type": "array",
    }
    if kind in type_words:
        return f"{path}: Invalid value: {_value(detail)}: must be of type {type_words[kind]}"
    return f"{path}: {message}"


def validate_manifest(manifest: Mapping[str, Any]) -> KubeloopModel:
    """Parse one kubeloop manifest into its model or raise :class:`ManifestError`."""
    kind = str(manifest.get("kind", ""))
    name = str((manifest.get("metadata") or {}).get("name", ""))
    info = KINDS_BY_NAME.get(kind)
    if info is None:
        raise ManifestError(kind, name, [f'kind: Unsupported value: "{kind}"'])
    try:
        return info.model.model_validate(dict(manifest))
    except ValidationError as error:
        messages = list(dict.fromkeys(format_error(detail) for detail in error.errors()))
        raise ManifestError(kind, name, messages) from error
