"""Assemble a CustomResourceDefinition for one kind from its model and :class:`KindInfo`."""

from __future__ import annotations

from typing import Any

from kubeloop import API_GROUP, API_VERSION
from kubeloop.api.kinds import CATEGORY, KindInfo
from kubeloop.crdgen.schema import Schema, model_schema, to_structural

LABELS = {
    "app.kubernetes.io/name": "kubeloop",
    "app.kubernetes.io/part-of": "kubeloop",
    "app.kubernetes.io/managed-by": "kubeloop-crdgen",
}


def openapi_schema(info: KindInfo) -> Schema:
    """The ``openAPIV3Schema`` of a kind: spec with defaults, status without."""
    pydantic_schema = model_schema(info.model)
    structural = to_structural(pydantic_schema)
    properties = structural["properties"]
    spec = properties["spec"]
    status = to_structural(pydantic_schema, keep_defaults=False)["properties"]["status"]
    return {
        "type": "object",
        "description": structural.get("description", info.kind),
        "required": ["spec"],
        "properties": {
            "apiVersion": {
                "type": "string",
                "description": "APIVersion defines the versioned schema of this representation of an object.",
            },
            "kind": {
                "type": "string",
                "description": "Kind is a string value representing the REST resource this object represents.",
            },
            # The API server owns metadata's schema and refuses anything but name/generateName.
            "metadata": {"type": "object"},
            "spec": spec,
            "status": status,
        },
    }


def build_crd(info: KindInfo) -> dict[str, Any]:
    """The complete CRD object for ``info``."""
    columns = [
        {
            "name": column.name,
            "type": column.type,
            "jsonPath": column.json_path,
            "description": column.description,
            **({"priority": column.priority} if column.priority else {}),
        }
        for column in info.columns
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": info.crd_name, "labels": dict(LABELS)},
        "spec": {
            "group": API_GROUP,
            "names": {
                "kind": info.kind,
                "listKind": f"{info.kind}List",
                "plural": info.plural,
                "singular": info.singular,
                "shortNames": list(info.short_names),
                "categories": [CATEGORY],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": openapi_schema(info)},
                }
            ],
        },
    }
