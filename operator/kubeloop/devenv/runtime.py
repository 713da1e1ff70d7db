"""The local cluster's stand-in for the kubeloop image: a virtualenv pods can execute.

The process node runs a pod's command on the host as the pod's user (65532 for every
kubeloop workload, as Pod Security ``restricted`` wants). The development virtualenv is no
use to that user when its interpreter lives in a home directory (pyenv under ``/root``), so
this module builds a second one from the system interpreter under ``/opt/kubeloop``, with
exactly the locked dependencies and kubeloop installed as a package (not editable, so the
code is readable wherever the checkout is). The dependencies are keyed by the lock file's
hash and installed once; the package is reinstalled only when its sources change.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parents[3]
DEFAULT_ROOT = Path("/opt/kubeloop/runtime")
SYSTEM_PYTHON = Path("/usr/bin/python3")


class WorkloadRuntimeError(RuntimeError):
    """The workload runtime could not be built."""


def _digest(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(str(path.relative_to(_REPO)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _sources() -> list[Path]:
    package = _REPO / "operator" / "kubeloop"
    return [p for p in package.rglob("*.py") if "__pycache__" not in p.parts] + [
        _REPO / "pyproject.toml"
    ]


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        raise WorkloadRuntimeError(f"{' '.join(argv)} failed:\n{result.stderr[-3000:]}")


def ensure_runtime(root: Path = DEFAULT_ROOT, python: Path = SYSTEM_PYTHON) -> Path:
    """Build what is missing and return the runtime's ``kubeloop`` executable."""
    if not python.exists():
        raise WorkloadRuntimeError(
            f"{python} is missing: the workload runtime needs the system Python 3.11"
        )
    lock = _REPO / "requirements.lock"
    venv = root / _digest([lock])
    kubeloop = venv / "bin" / "kubeloop"
    deps_stamp = venv / ".dependencies-installed"
    if not deps_stamp.exists():
        _run([str(python), "-m", "venv", "--clear", str(venv)])
        _run(
            [
                str(venv / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "-r",
                str(lock),
            ]
        )
        deps_stamp.write_text("ok\n")
    source_hash = _digest(_sources())
    package_stamp = venv / ".kubeloop-sources"
    if not package_stamp.exists() or package_stamp.read_text().strip() != source_hash:
        _run(
            [
                str(venv / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--no-build-isolation",
                "--force-reinstall",
                str(_REPO),
            ]
        )
        package_stamp.write_text(source_hash + "\n")
    # Every user may read and run it; nobody but root may change it.
    for directory in (root.parent, root, venv):
        directory.chmod(0o755)
    return kubeloop


def main() -> int:
    """``python -m kubeloop.devenv.runtime``: build it and print the ``kubeloop`` path."""
    path = ensure_runtime(Path(os.environ.get("KUBELOOP_RUNTIME_ROOT", str(DEFAULT_ROOT))))
    sys.stdout.write(f"{path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
