"""Check a CRD schema against the rules the API server enforces, without an API server.

The API server refuses a CRD whose schema is not *structural* (every node typed, no
``$ref``, no types inside ``anyOf``, ...) and quietly mis-handles some others (an object
default that misses required fields). :func:`violations` lists every such problem with its
path so a test can fail with a useful message; the cluster tests then apply the CRDs for real.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

# Keywords the apiextensions v1 JSONSchemaProps accepts (and that we may use).
ALLOWED_KEYWORDS = frozenset(
    {
        "type",
        "description",
        "format",
        "enum",
        "default",
        "pattern",
        "minLength",
        "maxLength",
        "minimum",
        "exclusiveMinimum",
        "maximum",
        "exclusiveMaximum",
        "multipleOf",
        "minItems",
        "maxItems",
        "minProperties",
        "maxProperties",
        "required",
        "nullable",
        "properties",
        "additionalProperties",
        "items",
        "anyOf",
        "allOf",
        "oneOf",
        "not",
        "example",
        "x-kubernetes-int-or-string",
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-embedded-resource",
        "x-kubernetes-map-type",
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-validations",
    }
)
_TYPES = frozenset({"object", "array", "string", "integer", "number", "boolean"})
# Inside anyOf/allOf/oneOf/not only value validations are allowed (structural rule 3).
_FORBIDDEN_IN_JUNCTORS = frozenset(
    {
        "type",
        "description",
        "default",
        "additionalProperties",
        "nullable",
        "x-kubernetes-validations",
    }
)


def violations(schema: Schema, path: str = "") -> list[str]:
    """Every reason the API server would refuse or mis-handle ``schema``; empty when fine."""
    problems: list[str] = []
    _walk(schema, path or "<root>", problems, in_status=False, require_description=bool(path))
    return problems


def _walk(
    node: Schema, path: str, problems: list[str], *, in_status: bool, require_description: bool
) -> None:
    for key in node:
        if key not in ALLOWED_KEYWORDS:
            problems.append(f"{path}: keyword {key!r} is not allowed in a CRD schema")
    free_form = node.get("x-kubernetes-preserve-unknown-fields") is True
    int_or_string = node.get("x-kubernetes-int-or-string") is True
    node_type = node.get("type")
    if node_type is None and not (free_form or int_or_string):
        problems.append(f"{path}: no type (every node of a structural schema needs one)")
    elif node_type is not None and node_type not in _TYPES:
        problems.append(f"{path}: type {node_type!r} is not one of {sorted(_TYPES)}")
    is_root_metadata = path == "metadata"  # the API server validates metadata itself
    if is_root_metadata and set(node) - {"type", "properties"}:
        problems.append(
            f"{path}: the root metadata may only be {{type: object}} (plus name/generateName)"
        )
    if require_description and not node.get("description") and not is_root_metadata:
        problems.append(f"{path}: no description (kubectl explain would show nothing)")
    for bound in ("exclusiveMinimum", "exclusiveMaximum"):
        if bound in node and not isinstance(node[bound], bool):
            problems.append(f"{path}: {bound} must be a boolean in OpenAPI v3.0")
    if node.get("additionalProperties") is False:
        problems.append(
            f"{path}: additionalProperties: false is not allowed (unknown fields are pruned)"
        )
    if "properties" in node and "additionalProperties" in node:
        problems.append(f"{path}: properties and additionalProperties are mutually exclusive")
    if node_type == "array" and "items" not in node:
        problems.append(f"{path}: an array needs items")
    if (
        node_type == "object"
        and not is_root_metadata
        and not ({"properties", "additionalProperties"} & node.keys() or free_form)
    ):
        problems.append(
            f"{path}: an object needs properties, additionalProperties or preserve-unknown-fields"
        )
    if in_status and "default" in node:
        problems.append(f"{path}: status fields must not have defaults")
    if "enum" in node and "default" in node and node["default"] not in node["enum"]:
        problems.append(f"{path}: default {node['default']!r} is not one of the enum values")
    _check_object_default(node, path, problems)
    _check_list_map(node, path, problems)
    for junctor in ("anyOf", "allOf", "oneOf"):
        for index, branch in enumerate(node.get(junctor, [])):
            for key in branch.keys() & _FORBIDDEN_IN_JUNCTORS:
                problems.append(
                    f"{path}.{junctor}[{index}]: {key!r} is not allowed inside {junctor}"
                )
    for name, child in node.get("properties", {}).items():
        _walk(
            child,
            f"{path}.{name}" if path != "<root>" else name,
            problems,
            in_status=in_status or (path == "<root>" and name == "status"),
            require_description=True,
        )
    additional = node.get("additionalProperties")
    if isinstance(additional, dict):
        _walk(additional, f"{path}[*]", problems, in_status=in_status, require_description=False)
    items = node.get("items")
    if isinstance(items, dict):
        _walk(items, f"{path}[*]", problems, in_status=in_status, require_description=False)


def _check_object_default(node: Schema, path: str, problems: list[str]) -> None:
    default = node.get("default")
    if not isinstance(default, dict):
        return
    properties: dict[str, Schema] = node.get("properties", {})
    missing = [
        name
        for name in node.get("required", [])
        if name not in default and "default" not in properties.get(name, {})
    ]
    if missing:
        problems.append(f"{path}: default {default!r} lacks required fields {missing}")


def _check_list_map(node: Schema, path: str, problems: list[str]) -> None:
    if node.get("x-kubernetes-list-type") != "map":
        return
    items: Schema = node.get("items", {})
    required = set(items.get("required", []))
    item_properties: dict[str, Schema] = items.get("properties", {})
    for key in node.get("x-kubernetes-list-map-keys", []):
        if key not in item_properties:
            problems.append(f"{path}: list-map key {key!r} is not a property of the items")
        elif key not in required and "default" not in item_properties[key]:
            problems.append(f"{path}: list-map key {key!r} must be required or defaulted")
