"""``kubeloop serve``: command-line entry of the inference server (being built)."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str]) -> int:
    """Say that this command is being built; the serving milestone replaces this."""
    del argv
    sys.stderr.write("kubeloop serve: not implemented yet\n")
    return 2
