"""``kubeloop train``: run one trial in a pod and report through the termination message.

The operator learns a trial's outcome from the container's termination message (at most
4096 bytes, ``/dev/termination-log`` by default), not from logs: on success the parameters,
validation score, test metrics, artifact prefix and model digest; on failure the reason and
the trainer's own message (see ``errors.py``). Exit status 0 on success, 1 on failure, so the
Indexed Job's ``backoffLimit`` and pod failure policy apply as usual.

Inputs: the :class:`~kubeloop.trainer.config.TrialConfig` JSON from ``--config FILE`` or the
``KUBELOOP_TRIAL_CONFIG`` environment variable; ``JOB_COMPLETION_INDEX`` (set by Kubernetes in
an Indexed Job) replaces its ``trial``; S3 settings from ``KUBELOOP_S3_*``; the thread budget
from ``KUBELOOP_TRAINER_THREADS`` or the cgroup quota (``threads.py``). Errors about
settings name the variable, never its value.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from kubeloop.api.estimators import CLASSIFICATION_METRICS, REGRESSION_METRICS
from kubeloop.storage import ObjectStore, S3Settings
from kubeloop.trainer.config import TrialConfig
from kubeloop.trainer.errors import InvalidConfig, StorageMisconfigured, TrainerError
from kubeloop.trainer.threads import cpu_budget, limited_threads
from kubeloop.trainer.train import run_trial

CONFIG_ENV = "KUBELOOP_TRIAL_CONFIG"
INDEX_ENV = "JOB_COMPLETION_INDEX"
DEFAULT_TERMINATION_LOG = Path("/dev/termination-log")
TERMINATION_MESSAGE_LIMIT = 4096  # bytes; the kubelet truncates anything longer
_CORE_METRICS = frozenset(
    {*CLASSIFICATION_METRICS, *REGRESSION_METRICS, "demographic_parity_difference"}
)

_log = logging.getLogger("kubeloop.trainer")


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run one trial; write the termination message; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="kubeloop train", description="Train one trial of a TrainingRun and export it to ONNX."
    )
    parser.add_argument(
        "--config", type=Path, help=f"TrialConfig JSON file (default: ${CONFIG_ENV})"
    )
    parser.add_argument(
        "--termination-log",
        type=Path,
        default=DEFAULT_TERMINATION_LOG,
        help="where the result JSON goes (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    env = os.environ if environ is None else environ
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )
    trial = _index_from_env(env)
    try:
        config = load_config(args.config, env)
        trial = config.trial
        settings = load_s3_settings(env)
        threads = cpu_budget(env)
        _log.info("trial %d: %d CPU thread(s)", trial, threads)
        with ObjectStore(settings) as store, limited_threads(threads):
            result = run_trial(config, store)
        payload, status = result.termination_payload(), 0
    except TrainerError as exc:
        _log.error("trial failed: %s: %s", exc.reason, exc.message)
        payload, status = failure_payload(trial, exc.reason, exc.message), 1
    except Exception as exc:  # a bug: still tell the operator something it can show
        _log.exception("trial failed unexpectedly")
        message = f"{type(exc).__name__}: {exc}"
        payload, status = failure_payload(trial, "InternalError", message), 1
    text = termination_message(payload)
    try:
        args.termination_log.write_text(text, encoding="utf-8")
    except OSError as exc:
        _log.warning("cannot write the termination message to %s: %s", args.termination_log, exc)
    sys.stdout.write(text + "\n")
    return status


def load_config(path: Path | None, environ: Mapping[str, str]) -> TrialConfig:
    """The TrialConfig from ``path`` or ``$KUBELOOP_TRIAL_CONFIG``, index from the Job."""
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidConfig(f"cannot read the trial configuration {path}: {exc}") from exc
    elif environ.get(CONFIG_ENV):
        text = environ[CONFIG_ENV]
    else:
        raise InvalidConfig(f"no trial configuration: pass --config FILE or set {CONFIG_ENV}")
    try:
        config = TrialConfig.model_validate_json(text)
    except ValidationError as exc:
        raise InvalidConfig(f"invalid trial configuration: {_describe(exc)}") from exc
    index = _index_from_env(environ)
    if index is not None:
        config = config.model_copy(update={"trial": index})
    elif environ.get(INDEX_ENV):
        raise InvalidConfig(f"{INDEX_ENV}={environ[INDEX_ENV]!r} is not a non-negative integer")
    return config


def load_s3_settings(environ: Mapping[str, str]) -> S3Settings:
    """S3Settings from ``KUBELOOP_S3_*`` in ``environ``; errors name variables, not values."""
    prefix = "KUBELOOP_S3_"
    values = {
        key[len(prefix) :].lower(): value
        for key, value in environ.items()
        if key.startswith(prefix)
    }
    try:
        # Passing the values explicitly (not letting pydantic-settings read os.environ) keeps
        # main() testable with a given environment.
        return S3Settings.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{prefix}{'.'.join(str(p) for p in error['loc']).upper() or '?'}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)
        )
        raise StorageMisconfigured(f"invalid object storage settings: {problems}") from exc


def failure_payload(trial: int | None, reason: str, message: str) -> dict[str, Any]:
    """The failure JSON of the termination message."""
    return {"ok": False, "trial": trial, "reason": reason, "message": message}


def termination_message(payload: dict[str, Any], limit: int = TERMINATION_MESSAGE_LIMIT) -> str:
    """Compact JSON of ``payload`` in at most ``limit`` UTF-8 bytes.

    Too long, it sheds in this order: non-core metrics, the parameters (``paramsOmitted``;
    they are in metrics.json), then the message is shortened; JSON stays valid throughout.
    """
    payload = _finite(payload)
    text = _dumps(payload)
    if _fits(text, limit):
        return text
    if isinstance(payload.get("metrics"), dict):
        payload["metrics"] = {k: v for k, v in payload["metrics"].items() if k in _CORE_METRICS}
        text = _dumps(payload)
        if _fits(text, limit):
            return text
    if payload.get("params"):
        payload["params"] = {}
        payload["paramsOmitted"] = True
        text = _dumps(payload)
        if _fits(text, limit):
            return text
    message = str(payload.get("message", ""))
    while message and not _fits(text, limit):
        overflow = len(text.encode("utf-8")) - limit
        message = message[: max(0, len(message) - max(overflow, 16) - 1)]
        payload["message"] = message + "…"
        text = _dumps(payload)
    if _fits(text, limit):
        return text
    keep = ("ok", "trial", "reason", "message", "score", "metric", "artifactURI", "modelSHA256")
    return _dumps({k: payload[k] for k in keep if k in payload})


def _dumps(payload: dict[str, Any]) -> str:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def _fits(text: str, limit: int) -> bool:
    return len(text.encode("utf-8")) <= limit


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _index_from_env(environ: Mapping[str, str]) -> int | None:
    raw = environ.get(INDEX_ENV, "").strip()
    return int(raw) if raw.isdigit() else None


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_input=False, include_url=False)[:10]:
        where = ".".join(str(part) for part in error["loc"]) or "(document)"
        problems.append(f"{where}: {error['msg']}")
    return "; ".join(problems)
