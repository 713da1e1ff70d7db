"""``kubeloop serve`` settings: flags over KUBELOOP_SERVE_*, errors that name the variable."""

from __future__ import annotations

import pytest

from kubeloop.serving.cli import load_settings, main

S3 = {
    "KUBELOOP_S3_ENDPOINT": "http://127.0.0.1:9000",
    "KUBELOOP_S3_ACCESS_KEY": "key",
    "KUBELOOP_S3_SECRET_KEY": "very-secret",
    "KUBELOOP_S3_BUCKET": "kubeloop",
}
SERVE = {
    "KUBELOOP_SERVE_MODEL_NAME": "churn",
    "KUBELOOP_SERVE_MODEL_VERSION": "3",
    "KUBELOOP_SERVE_MODEL_URI": "s3://kubeloop/models/churn/v3/model.onnx",
    "KUBELOOP_SERVE_MODEL_SHA256": "a" * 64,
}


def test_flags_win_over_the_environment() -> None:
    settings, s3 = load_settings(
        ["--max-batch-size", "8", "--model-version", "4"],
        {**S3, **SERVE, "KUBELOOP_SERVE_MAX_BATCH_SIZE": "16", "KUBELOOP_SERVE_PORT": "9000"},
    )
    assert settings.max_batch_size == 8
    assert settings.model_version == "4"
    assert settings.port == 9000
    assert s3.bucket == "kubeloop"


def test_invalid_settings_exit_2_naming_flags_and_variables(
    capsys: pytest.CaptureFixture[str],
) -> None:
    environ = {**S3, **SERVE, "KUBELOOP_SERVE_MODEL_SHA256": "nope"}
    assert main(["--nan-policy", "ignore"], environ) == 2
    err = capsys.readouterr().err
    assert "--model-sha256 / KUBELOOP_SERVE_MODEL_SHA256" in err
    assert "--nan-policy / KUBELOOP_SERVE_NAN_POLICY" in err
    assert main([], {**SERVE, **{k: v for k, v in S3.items() if k != "KUBELOOP_S3_BUCKET"}}) == 2
    err = capsys.readouterr().err
    assert "KUBELOOP_S3_BUCKET" in err
    assert "very-secret" not in err
