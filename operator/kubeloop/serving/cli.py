"""``kubeloop serve``: flags and environment → settings → uvicorn with graceful shutdown.

Every :class:`~kubeloop.serving.settings.ServeSettings` field is a flag (``--max-batch-size``)
and a variable (``KUBELOOP_SERVE_MAX_BATCH_SIZE``); flags win. S3 comes from ``KUBELOOP_S3_*``.
Invalid settings exit with status 2 and a message naming the flag or variable.

The HTTP stack is uvicorn with httptools and uvloop 0.21 (pinned: 0.23 wrote each response with
two ``write`` calls and measured markedly slower), one worker, no access log, no proxy-header
rewriting and no ``server``/``date`` headers: all per-request work the server does not need.

SIGTERM: readiness turns false at once; after ``shutdown_delay`` seconds uvicorn stops
accepting, finishes in-flight requests (at most ``drain_timeout`` seconds), then the lifespan
flushes batches and logs, and the process exits 0. A second SIGINT forces the exit.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import Any

import uvicorn
from pydantic import ValidationError

from kubeloop.serving.app import ServingApp
from kubeloop.serving.settings import ENV_PREFIX, ServeSettings, cpu_budget
from kubeloop.storage import S3Settings

S3_PREFIX = "KUBELOOP_S3_"
_log = logging.getLogger("kubeloop.serving")


class GracefulServer(uvicorn.Server):
    """uvicorn's server with readiness-first shutdown and exit status 0 on SIGTERM."""

    def __init__(self, config: uvicorn.Config, app: ServingApp, delay: float) -> None:
        super().__init__(config)
        self._app = app
        self._delay = delay
        self._signalled = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # uvicorn's own handler re-raises the signal after shutdown (exit status -15);
        # a drained, flushed server exits 0 instead.
        del frame
        if self._signalled:
            if sig == signal.SIGINT:
                self.force_exit = True
            return
        self._signalled = True
        self._app.begin_shutdown()
        if self._delay > 0:
            timer = threading.Timer(self._delay, self._stop)
            timer.daemon = True
            timer.start()
        else:
            self._stop()

    def _stop(self) -> None:
        self.should_exit = True


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kubeloop serve",
        description=(
            "Serve one ONNX ModelVersion over Open Inference Protocol V2 and /predict. Every "
            f"flag is also a {ENV_PREFIX}* variable; S3 settings come from {S3_PREFIX}*."
        ),
    )
    for name, field in ServeSettings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        env = ENV_PREFIX + name.upper()
        parser.add_argument(flag, dest=name, default=None, help=f"{field.description} (${env})")
    return parser


def load_settings(
    argv: Sequence[str], environ: Mapping[str, str]
) -> tuple[ServeSettings, S3Settings]:
    """Settings from flags over ``KUBELOOP_SERVE_*``; S3 from ``KUBELOOP_S3_*``."""
    args = build_parser().parse_args(list(argv))
    values: dict[str, object] = {
        key[len(ENV_PREFIX) :].lower(): value
        for key, value in environ.items()
        if key.startswith(ENV_PREFIX)
    }
    values.update({k: v for k, v in vars(args).items() if v is not None})
    try:
        settings = ServeSettings.model_validate(values)
    except ValidationError as exc:
        raise SystemExit(
            _problems("invalid serving settings", exc, ENV_PREFIX, flags=True)
        ) from None
    s3_values = {
        key[len(S3_PREFIX) :].lower(): value
        for key, value in environ.items()
        if key.startswith(S3_PREFIX)
    }
    try:
        s3 = S3Settings.model_validate(s3_values)
    except ValidationError as exc:
        raise SystemExit(_problems("invalid object storage settings", exc, S3_PREFIX)) from None
    return settings, s3


def _problems(title: str, exc: ValidationError, prefix: str, *, flags: bool = False) -> str:
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        name = ".".join(str(p) for p in error["loc"]) or "?"
        where = f"{prefix}{name.upper()}"
        if flags:
            where = f"--{name.replace('_', '-')} / {where}"
        lines.append(f"  {where}: {error['msg']}")
    return f"kubeloop serve: {title}:\n" + "\n".join(lines)


# The HTTP stack of the server, shared with the benchmark's floor so the floor is exactly the
# same stack: uvloop (0.21, pinned by measurement) + httptools, no per-request extras.
HTTP_STACK: dict[str, Any] = {
    "loop": "uvloop",
    "http": "httptools",
    "ws": "none",
    "interface": "asgi3",
    "lifespan": "on",
    "access_log": False,
    "proxy_headers": False,
    "server_header": False,
    "date_header": False,
    "backlog": 2048,
}


def main(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> int:
    """Run the server until SIGTERM; return the exit status."""
    env = os.environ if environ is None else environ
    try:
        settings, s3 = load_settings(argv, env)
    except SystemExit as exc:
        if isinstance(exc.code, str):
            sys.stderr.write(exc.code + "\n")
            return 2
        return int(exc.code or 0)
    logging.basicConfig(
        level=settings.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    threads = cpu_budget(settings.threads)
    app = ServingApp(settings, s3, threads=threads)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        timeout_graceful_shutdown=int(max(1, settings.drain_timeout)),
        log_level=settings.log_level,
        **HTTP_STACK,
    )
    server = GracefulServer(config, app, settings.shutdown_delay)
    server.run()
    return 0
