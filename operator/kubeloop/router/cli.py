"""``kubeloop route``: command-line entry of the router (being built)."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str]) -> int:
    """Say that this command is being built; the serving milestone replaces this."""
    del argv
    sys.stderr.write("kubeloop route: not implemented yet\n")
    return 2
