"""The ``kubeloop`` command line: one entrypoint for every component.

Each component (operator, profiler, trainer, inference server, router) is a subcommand so a
single image serves every workload the operator creates. Heavy imports happen inside the
subcommand that needs them, so ``kubeloop --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from kubeloop import __version__

_PASS_THROUGH = frozenset({"data", "train", "serve", "route", "rollout"})


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubeloop",
        description="kubeloop: data, training, registry, serving and drift on Kubernetes.",
    )
    parser.add_argument("--version", action="version", version=f"kubeloop {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    sub.add_parser(
        "serve",
        help="serve an ONNX ModelVersion (Open Inference Protocol V2 + /predict)",
        add_help=False,
    )
    sub.add_parser("route", help="run the NGINX router of a Deployment", add_help=False)
    sub.add_parser(
        "rollout",
        help="status, pause, resume, promote, abort or retry a kubeloop Deployment's rollout",
        add_help=False,
    )

    data = sub.add_parser("data", help="dataset tools")
    data_sub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND")
    data_sub.add_parser(
        "profile", help="validate, snapshot and profile a Dataset source", add_help=False
    )

    sub.add_parser("operator", help="run the Kopf controllers (settings from KUBELOOP_* variables)")
    sub.add_parser(
        "train", help="train one trial of a TrainingRun and export it to ONNX", add_help=False
    )

    crds = sub.add_parser("crds", help="print the generated CustomResourceDefinitions as YAML")
    crds.add_argument("--kind", help="only this kind (e.g. TrainingRun)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the process exit status."""
    parser = _build_parser()
    # Subcommands that own their flags (data profile, train) get the rest of the line.
    args, remaining = parser.parse_known_args(argv)
    if remaining and args.command not in _PASS_THROUGH:
        parser.error(f"unrecognized arguments: {' '.join(remaining)}")
    command: str | None = args.command
    if command is None:
        parser.print_help()
        return 2
    if command == "operator":
        from kubeloop.controllers.app import run  # noqa: PLC0415 - Kopf loads slowly
        from kubeloop.settings import OperatorSettings  # noqa: PLC0415

        return run(OperatorSettings())
    if command == "train":
        from kubeloop.trainer.cli import main as train_main  # noqa: PLC0415 - sklearn loads slowly

        return train_main(remaining)
    if command == "crds":
        from kubeloop.crdgen.render import render_crds  # noqa: PLC0415 - keeps startup light

        wanted = None if args.kind is None else args.kind.lower()
        for file_name, text in render_crds().items():
            plural = file_name.split(".", 1)[0]
            if wanted is None or wanted in (plural, plural.removesuffix("s")):
                sys.stdout.write(text)
        return 0
    if command == "data":
        if args.data_command is None:
            parser.parse_args(["data", "--help"])
        from kubeloop.data.cli import main as profile_main  # noqa: PLC0415 - pyarrow loads slowly

        return profile_main(remaining)
    if command == "serve":
        from kubeloop.serving.cli import main as serve_main  # noqa: PLC0415 - onnxruntime loads slowly

        return serve_main(remaining)
    if command == "route":
        from kubeloop.router.cli import main as route_main  # noqa: PLC0415

        return route_main(remaining)
    if command == "rollout":
        from kubeloop.rollout_cli import main as rollout_main  # noqa: PLC0415

        return rollout_main(remaining)
    parser.error(f"unknown command {command}")
    return 2
