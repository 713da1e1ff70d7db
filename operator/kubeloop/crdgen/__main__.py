"""``python -m kubeloop.crdgen``: write ``crds/`` (and the Helm chart's copy) from the models."""

from __future__ import annotations

import argparse
from pathlib import Path

from kubeloop.crdgen.render import render_crds


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
    for path in write_crds(args.root):
        print(path.relative_to(args.root))
    return 0


raise SystemExit(main())
