"""Rewrite pydantic's JSON Schema into a structural OpenAPI v3 schema for a CRD.

pydantic emits JSON Schema 2020-12: ``$ref`` into ``$defs``, ``title`` everywhere, optional
fields as ``anyOf: [X, {type: null}]``, numeric ``exclusiveMinimum``, and ``const`` for
single-value literals. The API server wants none of that: it needs every node typed and
self-contained, boolean ``exclusiveMinimum`` and no type inside ``anyOf``. Each rewrite
below is one of those differences.
"""

from __future__ import annotations

import copy
from typing import Any

from kubeloop.api.meta import KubeloopModel

Schema = dict[str, Any]

# Keywords the API server accepts in a CRD schema and that we pass through unchanged.
_PASS_THROUGH = {
    "type",
    "description",
    "format",
    "default",
    "enum",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "required",
    "x-kubernetes-validations",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-map-type",
}
_SCALARS = {"integer", "number", "string", "boolean"}
# Output key order: what a reader looks for first, children last.
_KEY_ORDER = (
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
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "required",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-map-type",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-validations",
    "properties",
    "additionalProperties",
    "items",
)


class SchemaError(ValueError):
    """The model produced a schema shape crdgen cannot express structurally."""


def model_schema(model: type[KubeloopModel]) -> Schema:
    """pydantic's validation schema of ``model`` with wire (camelCase) names."""
    return model.model_json_schema(by_alias=True, mode="validation")


def to_structural(schema: Schema, *, keep_defaults: bool = True) -> Schema:
    """Return the structural equivalent of a pydantic JSON Schema (``$defs`` resolved)."""
    definitions: dict[str, Schema] = schema.get("$defs", {})
    root = {key: value for key, value in schema.items() if key != "$defs"}
    return _rewrite(root, definitions, keep_defaults=keep_defaults, seen=())


def _resolve(
    node: Schema, definitions: dict[str, Schema], seen: tuple[str, ...]
) -> tuple[Schema, tuple[str, ...]]:
    ref = node.get("$ref")
    if ref is None:
        return node, seen
    name = ref.rsplit("/", 1)[-1]
    if name in seen:
        raise SchemaError(f"recursive model {name!r} cannot be a structural schema")
    target = copy.deepcopy(definitions[name])
    # Field-level keywords (description, default) win over the model's own.
    merged = {**target, **{key: value for key, value in node.items() if key != "$ref"}}
    return merged, (*seen, name)


def _unwrap_optional(node: Schema) -> Schema:
    variants = node.get("anyOf")
    if variants is None:
        return node
    non_null = [variant for variant in variants if variant.get("type") != "null"]
    rest = {key: value for key, value in node.items() if key != "anyOf"}
    if len(non_null) == 1:
        merged = {**non_null[0], **rest}
        if merged.get("default", 0) is None:
            del merged["default"]
        return _unwrap_optional(merged)
    types = {variant.get("type") for variant in non_null}
    if None in types:
        raise SchemaError(f"union of objects is not structural: {non_null}")
    if types == {"integer", "string"}:
        # Quantity-like: the string form keeps its pattern; integers have none to check.
        string = next(variant for variant in non_null if variant["type"] == "string")
        merged = {"x-kubernetes-int-or-string": True, **rest}
        for key in ("pattern", "maxLength"):
            if key in string:
                merged[key] = string[key]
        if merged.get("default", 0) is None:
            del merged["default"]
        return merged
    if types <= _SCALARS:
        # A mixed scalar (estimator parameter values): any JSON value, checked by the trainer.
        merged = {"x-kubernetes-preserve-unknown-fields": True, **rest}
        if merged.get("default", 0) is None:
            del merged["default"]
        return merged
    raise SchemaError(f"union of {sorted(str(t) for t in types)} is not structural")


def _rewrite(
    node: Schema,
    definitions: dict[str, Schema],
    *,
    keep_defaults: bool,
    seen: tuple[str, ...],
) -> Schema:
    node, seen = _resolve(node, definitions, seen)
    node = _unwrap_optional(node)
    node, seen = _resolve(node, definitions, seen)
    if "allOf" in node and len(node["allOf"]) == 1:
        inner, seen = _resolve(node["allOf"][0], definitions, seen)
        node = {**inner, **{key: value for key, value in node.items() if key != "allOf"}}

    out: Schema = {}
    if "const" in node:
        out["type"] = node.get("type", "string")
        out["enum"] = [node["const"]]
    for key, value in node.items():
        if key in _PASS_THROUGH:
            out[key] = copy.deepcopy(value)
    if "exclusiveMinimum" in node:
        out["minimum"] = node["exclusiveMinimum"]
        out["exclusiveMinimum"] = True
    if "exclusiveMaximum" in node:
        out["maximum"] = node["exclusiveMaximum"]
        out["exclusiveMaximum"] = True
    if not keep_defaults:
        out.pop("default", None)
    if "description" in out:
        # Docstrings use reST literals; kubectl explain shows plain text.
        out["description"] = " ".join(out["description"].replace("``", "'").split())

    if "properties" in node:
        out["type"] = "object"
        out["properties"] = {
            name: _rewrite(child, definitions, keep_defaults=keep_defaults, seen=seen)
            for name, child in node["properties"].items()
        }
    additional = node.get("additionalProperties")
    if isinstance(additional, dict) and "properties" not in node:
        out["type"] = "object"
        out["additionalProperties"] = _rewrite(
            additional, definitions, keep_defaults=keep_defaults, seen=seen
        )
    if "items" in node:
        out["items"] = _rewrite(node["items"], definitions, keep_defaults=keep_defaults, seen=seen)
    if out.get("required") == []:
        del out["required"]
    return {key: out[key] for key in _KEY_ORDER if key in out}
