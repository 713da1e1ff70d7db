"""Request validation of the inference server: every bad-input class names its field."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from kubeloop.api.modelversion import Signature
from kubeloop.serving.schema import RequestError, RequestSchema, loads

SIGNATURE = Signature.model_validate(
    {
        "inputs": [
            {"name": "tenure", "type": "integer"},
            {"name": "charges", "type": "number"},
            {"name": "total charges", "type": "number", "nullable": True},
            {"name": "contract", "type": "category", "categories": ["monthly", "yearly"]},
            {"name": "region", "type": "category", "nullable": True, "categories": ["n", "s"]},
            {"name": "paperless", "type": "boolean"},
        ],
        "output": {"task": "classification", "labels": ["false", "true"]},
    }
)
GOOD = {
    "tenure": 12,
    "charges": 70.5,
    "total charges": 846.0,
    "contract": "monthly",
    "region": "n",
    "paperless": True,
}


def schema(**options: Any) -> RequestSchema:
    return RequestSchema(SIGNATURE, max_rows=10, **options)


def refused(document: Any, **options: Any) -> RequestError:
    with pytest.raises(RequestError) as caught:
        schema(**options).from_records(document)
    return caught.value


def test_a_good_record_becomes_one_row_per_block() -> None:
    rows = schema().from_records({"records": [GOOD]})
    assert rows.n_rows == 1
    assert rows.numbers == [(12, 70.5, 846.0)]
    assert rows.texts == [("monthly", "n", "true")]


def test_bare_lists_and_slow_path_agree_with_the_fast_path() -> None:
    fast = schema().from_records([GOOD, {**GOOD, "paperless": False}])
    # A string boolean sends the request through the column-wise path: same result.
    slow = schema().from_records([GOOD, {**GOOD, "paperless": "false"}])
    assert fast == slow


def test_values_near_the_float32_bound_pass_whichever_path_checks_them() -> None:
    big = 3e38  # within float32's range; two of them add up beyond it
    rows = schema().from_records([{**GOOD, "charges": big, "total charges": -big}])
    assert rows.numbers == [(12, big, -big)]


def test_feeds_are_one_array_per_column_for_the_whole_batch() -> None:
    s = schema()
    first = s.from_records([GOOD])
    second = s.from_records([{**GOOD, "total charges": None, "region": None}])
    feeds, numbers = s.batch_inputs([first, second])
    assert numbers is not None and numbers.shape == (2, len(s.number_names))
    assert feeds["tenure"].dtype == np.float32
    assert feeds["tenure"].shape == (2, 1)
    assert math.isnan(feeds["total charges"][1, 0])
    assert feeds["region"].tolist() == [["n"], [""]]
    assert feeds["paperless"].tolist() == [["true"], ["true"]]
    assert feeds["charges"].flags["C_CONTIGUOUS"]


@pytest.mark.parametrize(
    ("record", "field", "words"),
    [
        ({**GOOD, "tenure": "12"}, "tenure", "must be a number, not a string"),
        ({**GOOD, "tenure": True}, "tenure", "not a boolean"),
        ({**GOOD, "tenure": 1.5}, "tenure", "must be an integer"),
        ({**GOOD, "charges": None}, "charges", "is required"),
        ({**GOOD, "charges": 1e39}, "charges", "out of float32 range"),
        ({**GOOD, "charges": 10**40}, "charges", "out of float32 range"),
        # Beyond a double's range: summing it with a float overflows (once a 500).
        ({**GOOD, "charges": 10**400}, "charges", "out of float32 range"),
        ({**GOOD, "charges": math.inf}, "charges", "must be finite"),
        ({**GOOD, "charges": math.nan}, "charges", "NaN means missing; not nullable"),
        ({**GOOD, "charges": [1]}, "charges", "not an array"),
        ({**GOOD, "contract": 3.5}, "contract", "must be a string, not a number"),
        ({**GOOD, "contract": ""}, "contract", "is required"),
        ({**GOOD, "contract": None}, "contract", "is required"),
        ({**GOOD, "paperless": "yes"}, "paperless", "must be true or false"),
        ({**GOOD, "paperless": 1}, "paperless", "must be true or false"),
        ({**GOOD, "surprise": 1}, "surprise", "unknown column"),
        ({k: v for k, v in GOOD.items() if k != "contract"}, "contract", "missing column"),
    ],
)
def test_each_bad_value_is_a_422_naming_its_field(
    record: dict[str, Any], field: str, words: str
) -> None:
    error = refused([GOOD, record])
    assert error.status == 422
    assert error.field == field
    assert words in error.message
    assert error.body()["field"] == field
    assert error.row == 1


@pytest.mark.parametrize(
    ("record", "field", "words"),
    [
        # As many keys as columns, one of them unknown: the one-record path sees a column missing.
        (
            {**{k: v for k, v in GOOD.items() if k != "charges"}, "surprise": 1},
            "surprise",
            "unknown",
        ),
        ({**{k: v for k, v in GOOD.items() if k != "contract"}, "x": "a"}, "x", "unknown column"),
        ({k: v for k, v in GOOD.items() if k != "contract"}, "contract", "missing column"),
        ({**GOOD, "surprise": 1}, "surprise", "unknown column"),
    ],
)
def test_a_one_record_body_with_other_columns_is_refused_naming_the_column(
    record: dict[str, Any], field: str, words: str
) -> None:
    error = refused({"records": [record]})
    assert (error.status, error.field, error.row) == (422, field, 0)
    assert words in error.message


def test_nullable_columns_may_be_null_absent_or_nan() -> None:
    s = schema()
    absent = {k: v for k, v in GOOD.items() if k not in ("total charges", "region")}
    rows = s.from_records([absent, {**GOOD, "total charges": math.nan, "region": ""}])
    assert math.isnan(rows.numbers[0][2])
    assert math.isnan(rows.numbers[1][2])
    assert rows.texts[0][1] == rows.texts[1][1] == ""


def test_nan_policy_reject_refuses_nan_even_when_nullable() -> None:
    error = refused([{**GOOD, "total charges": math.nan}], nan_policy="reject")
    assert error.field == "total charges"
    assert "NaN policy: reject" in error.message


def test_unknown_categories_are_accepted_unless_the_policy_rejects_them() -> None:
    rows = schema().from_records([{**GOOD, "contract": "weekly"}])
    assert rows.texts[0][0] == "weekly"
    error = refused([{**GOOD, "contract": "weekly"}], unknown_categories="reject")
    assert error.field == "contract"
    assert "not a known category" in error.message


def test_integer_categories_are_spelled_as_in_training() -> None:
    rows = schema().from_records([{**GOOD, "contract": 7}])
    assert rows.texts[0][0] == "7"


@pytest.mark.parametrize(
    ("document", "status", "field"),
    [
        ({"rows": []}, 422, "records"),
        ({"records": [GOOD], "extra": 1}, 422, "extra"),
        ({"records": "x"}, 422, "records"),
        ([], 422, "records"),
        ([GOOD] * 11, 413, "records"),
        (["x"], 422, "records"),
        (42, 422, "records"),
    ],
)
def test_request_shapes(document: Any, status: int, field: str) -> None:
    error = refused(document)
    assert (error.status, error.field) == (status, field)


def test_loads_accepts_python_json_nan_and_refuses_garbage() -> None:
    assert math.isnan(loads(b'{"a": NaN}')["a"])
    assert loads(b'{"a": Infinity}')["a"] == math.inf
    for garbage in (b"{nope", b"\xff\xfe", b"[" * 100_000):
        with pytest.raises(RequestError) as caught:
            loads(garbage)
        assert (caught.value.status, caught.value.field) == (400, "body")
