"""The examples parse and round-trip; the bad-input catalogue is rejected with the right words.

``examples/`` holds the manifests users (and the cluster tests) ``kubectl apply``;
``tests/samples/invalid/`` holds one bad manifest per file with the substrings its rejection
must contain. The same catalogue is later applied to a real API server, so its expect lines
are phrased in words both produce.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import pytest

import kubeloop.api
from kubeloop.api.meta import CelRule, KubeloopModel
from kubeloop.api.validation import ManifestError, validate_manifest

if TYPE_CHECKING:
    from tests.samples.catalogue import Example, Sample

SAMPLES_DIR = Path(__file__).resolve().parents[1] / "samples"


def _load_catalogue() -> ModuleType:
    """Import ``tests/samples/catalogue.py`` by path (``tests`` need not be a package)."""
    name = "kubeloop_test_samples_catalogue"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, SAMPLES_DIR / "catalogue.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


catalogue = _load_catalogue()
EXAMPLES = catalogue.load_examples()
SAMPLES = catalogue.load_invalid_samples()

KIND_BY_PREFIX = {
    "dataset": "Dataset",
    "trainingrun": "TrainingRun",
    "modelversion": "ModelVersion",
    "deployment": "Deployment",
}
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


# --- examples -------------------------------------------------------------------------------


def test_there_are_examples_of_every_kind() -> None:
    kinds = {example.manifest.get("kind") for example in EXAMPLES}
    assert kinds == set(KIND_BY_PREFIX.values())


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda example: example.name)
def test_example_parses_as_its_kind(example: Example) -> None:
    try:
        model = validate_manifest(example.manifest)
    except ManifestError as error:
        pytest.fail(f"{example.name} is rejected:\n" + "\n".join(error.errors))
    prefix = example.path.name.split("-", 1)[0]
    assert type(model).__name__ == KIND_BY_PREFIX[prefix] == example.manifest["kind"]
    assert example.manifest["apiVersion"] == "kubeloop.io/v1alpha1"


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda example: example.name)
def test_example_round_trips_through_the_wire_form(example: Example) -> None:
    wire = validate_manifest(example.manifest).to_wire()
    again = validate_manifest(wire)
    assert again.to_wire() == wire


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda example: example.name)
def test_example_metadata_is_applicable_into_any_namespace(example: Example) -> None:
    metadata = example.manifest["metadata"]
    assert "namespace" not in metadata, "examples are applied with -n <namespace>"
    name = metadata["name"]
    assert len(name) <= 63 and DNS1123_SUBDOMAIN.match(name), name


def test_example_names_are_unique_per_kind() -> None:
    keys = [
        (example.manifest["kind"], example.manifest["metadata"]["name"]) for example in EXAMPLES
    ]
    assert len(keys) == len(set(keys))


# --- the bad-input catalogue -------------------------------------------------------------------


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda sample: sample.name)
def test_invalid_sample_is_rejected_with_the_expected_words(sample: Sample) -> None:
    try:
        validate_manifest(sample.manifest)
    except ManifestError as error:
        joined = "\n".join(error.errors)
    else:
        pytest.fail(f"{sample.name} was accepted, but: {sample.why}")
    missing = [expect for expect in sample.expects if expect not in joined]
    assert not missing, f"{sample.name}: missing {missing} in the errors:\n{joined}"


def test_catalogue_is_large_and_every_sample_says_why_and_what() -> None:
    assert len(SAMPLES) >= 30
    numbers = []
    for sample in SAMPLES:
        match = catalogue.SAMPLE_NAME.match(sample.name)
        assert match, f"{sample.name}: name it NN-short-description.yaml"
        numbers.append(int(match["number"]))
        assert sample.why, f"{sample.name}: no '# why:' line"
        assert sample.expects, f"{sample.name}: no '# expect:' line"
        assert sample.manifest.get("kind") in KIND_BY_PREFIX.values(), sample.name
        assert "namespace" not in sample.manifest.get("metadata", {}), sample.name
    assert len(numbers) == len(set(numbers)), "sample numbers must be unique"


def _models() -> list[type[KubeloopModel]]:
    for module in pkgutil.iter_modules(kubeloop.api.__path__):
        importlib.import_module(f"kubeloop.api.{module.name}")
    found: list[type[KubeloopModel]] = []
    pending = [KubeloopModel]
    while pending:
        for subclass in pending.pop().__subclasses__():
            if subclass not in found and subclass.__module__.startswith("kubeloop.api."):
                found.append(subclass)
            pending.append(subclass)
    return found


def _offline_rules() -> dict[str, CelRule]:
    """Every CEL rule that also holds in Python, by message (ids name the model)."""
    rules: dict[str, CelRule] = {}
    for model in _models():
        for rule in model.__dict__.get("cel_rules", ()):
            if rule.holds is not None:
                rules[f"{model.__name__}: {rule.message}"] = rule
    return rules


OFFLINE_RULES = _offline_rules()


def test_models_declare_offline_rules() -> None:
    assert len(OFFLINE_RULES) >= 20


@pytest.mark.parametrize("rule", OFFLINE_RULES.values(), ids=list(OFFLINE_RULES))
def test_catalogue_covers_the_rule(rule: CelRule) -> None:
    covering = [sample.name for sample in SAMPLES if any(rule.message in e for e in sample.expects)]
    assert covering, f"no sample expects the message {rule.message!r}; add one"
