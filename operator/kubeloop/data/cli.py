"""``kubeloop data profile``: the entrypoint of a Dataset's profiling Job.

Inputs: the :class:`~kubeloop.data.models.ProfileRequest` as JSON, from ``--request FILE``
(``-`` for stdin) or else the ``KUBELOOP_PROFILE_REQUEST`` environment variable (the JSON
itself), and the S3 connection from the ``KUBELOOP_S3_*`` variables (:class:`S3Settings`).

Outputs: the compact result (at most 4096 bytes) in the termination message file, where the
Dataset controller reads it (``/dev/termination-log``, or ``--termination-log``); the full
result as one JSON line on stdout; progress on stderr.

Exit status: 0 when profiling ran, *including* when the data failed validation (that is an
answer, not an error: the result says ``ValidationFailed``); 1 when something kept it from
running (missing or unreadable source, unusable storage, a malformed request); 2 for usage
errors. Secrets never reach any output: settings errors are reported by field, without values.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from pydantic import SecretStr, ValidationError

from kubeloop.data.errors import InvalidRequest, ProfileError
from kubeloop.data.models import ProfileRequest, ProfileResult, dumps, termination_message
from kubeloop.data.profiler import profile_dataset
from kubeloop.storage import ObjectStore, S3Settings

REQUEST_ENV: Final = "KUBELOOP_PROFILE_REQUEST"
SOURCE_ACCESS_KEY_ENV: Final = "KUBELOOP_SOURCE_ACCESS_KEY"
SOURCE_SECRET_KEY_ENV: Final = "KUBELOOP_SOURCE_SECRET_KEY"  # noqa: S105 - a variable name
DEFAULT_TERMINATION_LOG: Final = Path("/dev/termination-log")
_MAX_REQUEST_BYTES: Final = 1024 * 1024
_log = logging.getLogger("kubeloop.data")


def main(argv: Sequence[str] | None = None, *, environ: Mapping[str, str] | None = None) -> int:
    """Run one profiling Job; return the process exit status."""
    parser = argparse.ArgumentParser(
        prog="kubeloop data profile",
        description="Validate, snapshot and profile one version of a Dataset source.",
    )
    parser.add_argument(
        "--request",
        metavar="FILE",
        help=f"the ProfileRequest as a JSON file ('-' for stdin); default: ${REQUEST_ENV}",
    )
    parser.add_argument(
        "--termination-log",
        type=Path,
        default=DEFAULT_TERMINATION_LOG,
        metavar="FILE",
        help=f"where to write the compact result (default: {DEFAULT_TERMINATION_LOG})",
    )
    parser.add_argument(
        "--work-dir", type=Path, help="scratch directory for the download and the snapshot"
    )
    args = parser.parse_args(argv)
    env = os.environ if environ is None else environ
    _configure_logging()

    try:
        request = load_request(args.request, env)
        settings = load_settings(env)
        source_settings = load_source_settings(settings, env)
        with ObjectStore(settings) as store:
            if source_settings is None:
                result = profile_dataset(request, store, work_dir=args.work_dir)
            else:
                with ObjectStore(source_settings) as source_store:
                    result = profile_dataset(
                        request, store, work_dir=args.work_dir, source_store=source_store
                    )
    except ProfileError as exc:
        _log.error("%s: %s", exc.reason, exc)
        result = ProfileResult(ok=False, reason=exc.reason, message=str(exc))
    except Exception as exc:
        # A bug, or data that breaks a library in a way we did not foresee: still answer the
        # controller, with the traceback in the log.
        _log.exception("profiling failed unexpectedly")
        result = ProfileResult(
            ok=False, reason="InternalError", message=f"{type(exc).__name__}: {exc}"
        )

    _write_termination_message(args.termination_log, termination_message(result))
    sys.stdout.write(dumps(result.to_json()) + "\n")
    sys.stdout.flush()
    if result.ok:
        _log.info("%s", result.message)
        return 0
    if result.reason == "ValidationFailed":
        _log.warning("%s", result.message)
        return 0
    return 1


def load_request(path: str | None, environ: Mapping[str, str]) -> ProfileRequest:
    """Parse the request from ``path`` (``-``: stdin) or else from ``$KUBELOOP_PROFILE_REQUEST``."""
    if path is not None:
        try:
            text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidRequest(f"cannot read the request file {path}: {exc.strerror}") from exc
        where = "stdin" if path == "-" else path
    elif REQUEST_ENV in environ:
        text, where = environ[REQUEST_ENV], f"${REQUEST_ENV}"
    else:
        raise InvalidRequest(f"no request: pass --request FILE or set {REQUEST_ENV}")
    if len(text.encode("utf-8")) > _MAX_REQUEST_BYTES:
        raise InvalidRequest(f"the request in {where} is larger than {_MAX_REQUEST_BYTES} bytes")
    try:
        return ProfileRequest.model_validate_json(text)
    except ValidationError as exc:
        raise InvalidRequest(f"invalid request in {where}: {describe_errors(exc)}") from None


def load_settings(environ: Mapping[str, str]) -> S3Settings:
    """S3 settings from the ``KUBELOOP_S3_*`` variables of ``environ``."""
    prefix = "KUBELOOP_S3_"
    fields = set(S3Settings.model_fields)
    values = {
        name[len(prefix) :].lower(): value
        for name, value in environ.items()
        if name.startswith(prefix) and name[len(prefix) :].lower() in fields
    }
    try:
        # Passing the values explicitly (rather than letting pydantic-settings read os.environ)
        # lets tests hand in an environment; it is the same mapping in a Job.
        return S3Settings.model_validate(values)
    except ValidationError as exc:
        raise InvalidRequest(f"invalid S3 settings: {describe_errors(exc)}") from None


def load_source_settings(settings: S3Settings, environ: Mapping[str, str]) -> S3Settings | None:
    """The source's own credentials (``KUBELOOP_SOURCE_ACCESS_KEY``/``_SECRET_KEY``), if given.

    They come from the Dataset's ``source.credentialsSecretRef``: same endpoint, another key
    pair, so a team can point a Dataset at a bucket kubeloop's own identity cannot read.
    """
    access, secret = environ.get(SOURCE_ACCESS_KEY_ENV), environ.get(SOURCE_SECRET_KEY_ENV)
    if not access and not secret:
        return None
    if not access or not secret:
        raise InvalidRequest(
            f"source credentials need both {SOURCE_ACCESS_KEY_ENV} and {SOURCE_SECRET_KEY_ENV} "
            "(keys accessKey and secretKey of the Secret in source.credentialsSecretRef)"
        )
    return settings.model_copy(update={"access_key": access, "secret_key": SecretStr(secret)})


def describe_errors(exc: ValidationError) -> str:
    """Field paths and messages of a validation error, without the input values.

    pydantic's own message quotes the input, which for settings includes the secret key.
    """
    parts = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        location = ".".join(str(part) for part in error["loc"]) or "(root)"
        parts.append(f"{location}: {error['msg']}")
    return "; ".join(parts)


def _write_termination_message(path: Path, message: str) -> None:
    try:
        path.write_text(message, encoding="utf-8")
    except OSError as exc:
        # Outside a pod there is no /dev/termination-log; the result is on stdout as well.
        _log.warning("cannot write the termination message to %s: %s", path, exc.strerror)


def _configure_logging() -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(
            level=logging.INFO,
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )


if __name__ == "__main__":  # python -m kubeloop.data.cli, until `kubeloop data profile` routes here
    sys.exit(main())
