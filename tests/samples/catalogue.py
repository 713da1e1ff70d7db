"""The bad-input catalogue: invalid manifests with what must be said about them.

Every file in ``invalid/`` holds one manifest that must be rejected, named
``NN-short-description.yaml``, and starts with a comment header::

    # why: what is wrong, in one line
    # expect: a substring the rejection must contain
    # expect: another one (every expect line must match)

The expected substrings are chosen so that both kubeloop's offline validation
(``kubeloop.api.validation.validate_manifest``) and a real kube-apiserver produce them, so the
unit tests and the cluster tests share this one catalogue. The module needs only PyYAML and
can be imported by path (it does not rely on ``tests`` being a package).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SAMPLES_DIR = Path(__file__).resolve().parent
INVALID_DIR = SAMPLES_DIR / "invalid"
EXAMPLES_DIR = SAMPLES_DIR.parent.parent / "examples"

SAMPLE_NAME = re.compile(r"^(?P<number>[0-9]{2,3})-[a-z0-9]+(-[a-z0-9]+)*\.yaml$")
_HEADER_LINE = re.compile(r"^#\s*(?P<key>why|expect):\s?(?P<value>.*?)\s*$")


@dataclass(frozen=True)
class Sample:
    """One invalid manifest and what its rejection must say."""

    path: Path
    why: str
    expects: tuple[str, ...]
    manifest: dict[str, Any]

    @property
    def name(self) -> str:
        """File name, used as the test id."""
        return self.path.name


@dataclass(frozen=True)
class Example:
    """One document of a file in ``examples/``."""

    path: Path
    index: int
    manifest: dict[str, Any]

    @property
    def name(self) -> str:
        """File name, with ``#N`` for the second and later documents of a file."""
        return self.path.name if self.index == 0 else f"{self.path.name}#{self.index}"


def parse_header(text: str) -> tuple[str, tuple[str, ...]]:
    """The ``why`` line and the ``expect`` lines of the leading comment block."""
    why = ""
    expects: list[str] = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        match = _HEADER_LINE.match(line)
        if match is None:
            continue
        if match["key"] == "why":
            why = match["value"]
        elif match["value"]:
            expects.append(match["value"])
    return why, tuple(expects)


def load_sample(path: Path) -> Sample:
    """Read one catalogue file; it must hold exactly one YAML document, a mapping."""
    text = path.read_text(encoding="utf-8")
    documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    if len(documents) != 1 or not isinstance(documents[0], dict):
        raise ValueError(f"{path.name}: expected exactly one manifest, found {len(documents)}")
    why, expects = parse_header(text)
    return Sample(path=path, why=why, expects=expects, manifest=documents[0])


def load_invalid_samples(directory: Path = INVALID_DIR) -> list[Sample]:
    """Every invalid manifest of the catalogue, in file-name order."""
    return [load_sample(path) for path in sorted(directory.glob("*.yaml"))]


def load_examples(directory: Path = EXAMPLES_DIR) -> list[Example]:
    """Every document of every ``examples/*.yaml`` file, in file-name order."""
    examples: list[Example] = []
    for path in sorted(directory.glob("*.yaml")):
        documents = yaml.safe_load_all(path.read_text(encoding="utf-8"))
        for index, document in enumerate(doc for doc in documents if doc is not None):
            examples.append(Example(path=path, index=index, manifest=document))
    return examples
