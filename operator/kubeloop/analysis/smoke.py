"""The blue-green smoke test's records: inline in the spec or JSON Lines in a ConfigMap.

The controller sends each record to the preview's (and, for ``minAgreement``, stable's)
``/predict`` and judges the answers with :func:`kubeloop.analysis.checks.smoke_test_result`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from kubeloop.api.deployment import SmokeTest

MAX_RECORDS = 100


def smoke_records(
    test: SmokeTest, config_map_data: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """The records to send, at most :data:`MAX_RECORDS`.

    ``config_map_data`` is the referenced ConfigMap's ``data`` (None when the test is inline).
    Raises ``ValueError`` naming the ConfigMap key and line when the records cannot be read,
    so the rollout can fail with a message a person can act on.
    """
    if test.records is not None:
        return [dict(record) for record in test.records]
    ref = test.config_map_ref
    assert ref is not None  # noqa: S101 - the API requires exactly one
    where = f"ConfigMap {ref.name} key {ref.key}"
    if config_map_data is None or ref.key not in config_map_data:
        raise ValueError(f"{where} does not exist")
    records: list[dict[str, Any]] = []
    for number, line in enumerate(config_map_data[ref.key].splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{where} line {number}: not JSON ({error.msg})") from error
        if not isinstance(record, dict):
            raise ValueError(f"{where} line {number}: a record must be a JSON object")
        records.append(record)
        if len(records) > MAX_RECORDS:
            raise ValueError(f"{where}: more than {MAX_RECORDS} records")
    if not records:
        raise ValueError(f"{where} holds no records")
    return records
