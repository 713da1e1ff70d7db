"""The registry's artifact check against a real SeaweedFS: bytes re-read and hashed."""

from __future__ import annotations

import hashlib

import pytest

from kubeloop.controllers.modelversion import verify_artifact
from kubeloop.storage import ObjectStore

pytestmark = pytest.mark.component


def test_the_artifact_is_re_read_and_its_digest_compared(
    store: ObjectStore, key_prefix: str
) -> None:
    payload = b"onnx bytes" * 1000
    uri = str(store.upload(payload, f"{key_prefix}model.onnx").uri)
    good = hashlib.sha256(payload).hexdigest()

    verified = verify_artifact(store, uri, good)
    assert verified.ok is True
    assert "10000 bytes" in verified.message

    wrong = "0" * 64
    mismatch = verify_artifact(store, uri, wrong)
    assert mismatch.ok is False
    assert good in mismatch.message and wrong in mismatch.message

    missing = verify_artifact(store, uri.replace("model.onnx", "absent.onnx"), good)
    assert missing.ok is False and "cannot be read" in missing.message

    unchecked = verify_artifact(None, uri, good)
    assert unchecked.ok is None and "no S3 settings" in unchecked.message
