"""CRD generation: crds/ is what the models generate, and every schema is structural."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubeloop.api import KINDS
from kubeloop.api.kinds import KindInfo
from kubeloop.crdgen.crd import build_crd
from kubeloop.crdgen.render import HEADER, render_crds
from kubeloop.crdgen.schema import SchemaError, to_structural
from kubeloop.crdgen.structural import violations

REPO = Path(__file__).resolve().parents[2]

# Short names and resource names of the built-in kinds (kubectl api-resources on 1.37).
BUILTIN_SHORT_NAMES = {
    "cs", "cm", "ep", "ev", "limits", "ns", "no", "pvc", "pv", "po", "rc", "quota", "sa", "svc",
    "crd", "crds", "ds", "deploy", "rs", "sts", "hpa", "cj", "csr", "ing", "netpol", "pdb", "pc",
    "psp", "sc", "ipa", "vac", "eps", "leases", "dra",
}  # fmt: skip


def _openapi(info: KindInfo) -> dict[str, Any]:
    schema: dict[str, Any] = build_crd(info)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


@pytest.mark.parametrize("directory", ["crds", "charts/kubeloop/crds"])
def test_committed_crds_match_the_models(directory: str) -> None:
    generated = render_crds()
    committed = {path.name: path.read_text() for path in (REPO / directory).glob("*.yaml")}
    assert sorted(committed) == sorted(generated), (
        f"{directory}/ has missing or stale files: run make manifests"
    )
    for name, text in generated.items():
        assert committed[name] == text, (
            f"{directory}/{name} differs from the models: run make manifests"
        )


def test_rendering_is_deterministic_and_headed() -> None:
    first, second = render_crds(), render_crds()
    assert first == second
    for text in first.values():
        assert text.startswith(HEADER)
        assert "DO NOT EDIT" in text


@pytest.mark.parametrize("info", KINDS, ids=lambda info: info.kind)
def test_schema_is_structural(info: KindInfo) -> None:
    assert violations(_openapi(info)) == []


@pytest.mark.parametrize("info", KINDS, ids=lambda info: info.kind)
def test_no_json_schema_leftovers(info: KindInfo) -> None:
    text = yaml.safe_dump(_openapi(info))
    for leftover in ("$ref", "$defs", "title:", "anyOf", "const:", "additionalProperties: false"):
        assert leftover not in text


@pytest.mark.parametrize("info", KINDS, ids=lambda info: info.kind)
def test_names_status_and_columns(info: KindInfo) -> None:
    crd = build_crd(info)
    names = crd["spec"]["names"]
    assert crd["metadata"]["name"] == f"{info.plural}.kubeloop.io"
    assert names["categories"] == ["kubeloop"]
    assert not set(names["shortNames"]) & BUILTIN_SHORT_NAMES
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = {column["name"] for column in version["additionalPrinterColumns"]}
    assert {"Phase", "Age"} <= columns
    assert info.kind != "Deployment" or "deploy" not in names["shortNames"]


@pytest.mark.parametrize("info", KINDS, ids=lambda info: info.kind)
def test_every_column_names_a_field_of_the_schema(info: KindInfo) -> None:
    """A misspelt jsonPath prints an empty column forever; the API server does not object."""
    schema = _openapi(info)
    columns = build_crd(info)["spec"]["versions"][0]["additionalPrinterColumns"]
    # metadata's schema is the API server's own, not in the CRD
    for column in [c for c in columns if not c["jsonPath"].startswith(".metadata.")]:
        node = schema
        for part in column["jsonPath"].lstrip(".").split("."):
            assert part in node.get("properties", {}), f"{column['name']}: {column['jsonPath']}"
            node = node["properties"][part]
        expected = {"date": "string"}.get(column["type"], column["type"])
        assert node.get("type") == expected, (column, node.get("type"))


def test_short_names_are_unique_across_kinds() -> None:
    short_names = [name for info in KINDS for name in info.short_names]
    assert len(short_names) == len(set(short_names))


def test_spec_defaults_kept_and_status_defaults_dropped() -> None:
    deployment = _openapi(next(info for info in KINDS if info.kind == "Deployment"))
    spec = deployment["properties"]["spec"]["properties"]
    assert spec["replicas"]["default"] == 1
    assert spec["strategy"]["default"]["type"] == "Canary"
    assert "default" not in yaml.safe_dump(deployment["properties"]["status"])


def test_exclusive_bounds_become_booleans() -> None:
    run = _openapi(next(info for info in KINDS if info.kind == "TrainingRun"))
    split = run["properties"]["spec"]["properties"]["split"]["properties"]["validationFraction"]
    assert split["minimum"] == 0.0
    assert split["exclusiveMinimum"] is True


def test_cel_rules_reach_the_schema() -> None:
    deployment = _openapi(next(info for info in KINDS if info.kind == "Deployment"))
    canary = deployment["properties"]["spec"]["properties"]["strategy"]["properties"]["canary"]
    messages = [rule["message"] for rule in canary["x-kubernetes-validations"]]
    assert "canary step weights must be strictly increasing" in messages


def test_quantities_are_int_or_string() -> None:
    run = _openapi(next(info for info in KINDS if info.kind == "TrainingRun"))
    cpu = run["properties"]["spec"]["properties"]["resources"]["properties"]["limits"]
    assert cpu["properties"]["cpu"]["x-kubernetes-int-or-string"] is True


# --- the checker itself must catch what the API server rejects -------------------------


def _valid_schema() -> dict[str, Any]:
    return copy.deepcopy(_openapi(KINDS[0]))


@pytest.mark.parametrize(
    ("breakage", "expected"),
    [
        (lambda s: s["properties"]["spec"]["properties"]["target"].pop("type"), "no type"),
        (
            lambda s: s["properties"]["spec"]["properties"]["target"].pop("description"),
            "no description",
        ),
        (
            lambda s: s["properties"]["spec"]["properties"]["target"].update({"$ref": "#/x"}),
            "'$ref' is not allowed",
        ),
        (
            lambda s: s["properties"]["spec"]["properties"]["target"].update({"title": "T"}),
            "'title' is not allowed",
        ),
        (
            lambda s: s["properties"]["spec"].update({"additionalProperties": False}),
            "additionalProperties: false",
        ),
        (
            lambda s: s["properties"]["spec"]["properties"]["target"].update(
                {"anyOf": [{"type": "string"}, {"type": "null"}]}
            ),
            "'type' is not allowed inside anyOf",
        ),
        (
            lambda s: s["properties"]["spec"]["properties"]["refreshInterval"].update(
                {"exclusiveMinimum": 0}
            ),
            "exclusiveMinimum must be a boolean",
        ),
        (
            lambda s: s["properties"]["status"]["properties"]["phase"].update(
                {"default": "Pending"}
            ),
            "status fields must not have defaults",
        ),
        (
            lambda s: s["properties"]["spec"].update({"default": {}}),
            "lacks required fields",
        ),
        (
            lambda s: s["properties"]["spec"]["properties"]["columns"]["items"]["required"].remove(
                "name"
            ),
            "list-map key 'name' must be required",
        ),
    ],
    ids=[
        "untyped",
        "undescribed",
        "ref",
        "title",
        "closed-object",
        "typed-anyof",
        "numeric-exclusive",
        "status-default",
        "object-default",
        "list-map-key",
    ],
)
def test_checker_catches_non_structural(breakage: Any, expected: str) -> None:
    schema = _valid_schema()
    breakage(schema)
    found = violations(schema)
    assert any(expected in problem for problem in found), found


def test_union_of_objects_is_refused() -> None:
    pydantic_schema = {
        "anyOf": [
            {"type": "object", "properties": {"a": {"type": "string"}}},
            {"type": "object", "properties": {"b": {"type": "string"}}},
        ]
    }
    with pytest.raises(SchemaError):
        to_structural(pydantic_schema)


def test_recursive_models_are_refused() -> None:
    pydantic_schema = {
        "$defs": {"Node": {"type": "object", "properties": {"child": {"$ref": "#/$defs/Node"}}}},
        "$ref": "#/$defs/Node",
    }
    with pytest.raises(SchemaError, match="recursive"):
        to_structural(pydantic_schema)
