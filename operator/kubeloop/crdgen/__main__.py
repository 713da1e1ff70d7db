"""``python -m kubeloop.crdgen``: write ``crds/`` (and the Helm chart's copy) from the models.

First the estimator constraint table (``kubeloop/api/estimator_constraints.py``) is
regenerated from the installed scikit-learn. The CRDs and policies are rendered from the
models, which read that table when imported, so when the table changed the command runs
itself once more to render from the new one.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from kubeloop.crdgen.estimator_constraints import MODULE_PATH, read_constraints, render_module
from kubeloop.crdgen.render import render_crds


def write_constraints(root: Path) -> bool:
    """Rewrite the estimator constraint table; whether it changed."""
    path = root / MODULE_PATH
    text = render_module(read_constraints())
    if path.exists() and path.read_text() == text:
        return False
    path.write_text(text)
    return True


def write_crds(root: Path) -> list[Path]:
    """Write every CRD under ``root/crds`` and, when the chart exists, its ``crds/``; drop stale files."""
    targets = [root / "crds"]
    chart = root / "charts" / "kubeloop"
    if chart.is_dir():
        targets.append(chart / "crds")
    files = render_crds()
    written: list[Path] = []
    for directory in targets:
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.yaml"):
            if stale.name not in files:
                stale.unlink()
        for name, text in files.items():
            path = directory / name
            if not path.exists() or path.read_text() != text:
                path.write_text(text)
            written.append(path)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="repository root")
    args = parser.parse_args()
    if write_constraints(args.root):
        print(MODULE_PATH, flush=True)
        # The models imported above read the old table: render from the new one.
        os.execv(sys.executable, [sys.executable, "-m", "kubeloop.crdgen", *sys.argv[1:]])  # noqa: S606
    for path in write_crds(args.root):
        print(path.relative_to(args.root))
    return 0


raise SystemExit(main())
