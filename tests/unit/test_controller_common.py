"""The merge patch the Deployment controller writes its status with (controllers/common.py)."""

from __future__ import annotations

from typing import Any

from kubeloop.controllers.common import merge_patch


def apply_merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386 as the API server applies it, written out independently of merge_patch."""
    result = dict(target)
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            base = result.get(key)
            result[key] = apply_merge_patch(base if isinstance(base, dict) else {}, value)
        else:
            result[key] = value
    return result


def test_a_nested_field_that_went_away_is_sent_as_null() -> None:
    old = {
        "phase": "Healthy",
        "lastRetrain": {"name": "iris-retrain-1", "phase": "Succeeded", "finishedAt": "T1"},
    }
    new = {"phase": "Healthy", "lastRetrain": {"name": "iris-retrain-2", "phase": "Training"}}

    patch = merge_patch(old, new)

    assert patch == {
        "lastRetrain": {"name": "iris-retrain-2", "phase": "Training", "finishedAt": None}
    }
    assert apply_merge_patch(old, patch) == new


def test_top_level_keys_that_went_away_are_cleared_and_unchanged_ones_not_sent() -> None:
    old = {"phase": "Progressing", "candidateVersion": "iris-v2", "stableVersion": "iris-v1"}
    new = {"phase": "Healthy", "stableVersion": "iris-v1"}

    patch = merge_patch(old, new)

    assert patch == {"phase": "Healthy", "candidateVersion": None}
    assert apply_merge_patch(old, patch) == new


def test_lists_are_replaced_whole_and_a_dict_replacing_a_scalar_is_sent_whole() -> None:
    old: dict[str, Any] = {"versions": [{"version": "a"}, {"version": "b"}], "drift": "none"}
    new: dict[str, Any] = {"versions": [{"version": "b"}], "drift": {"verdict": "NoDrift"}}

    patch = merge_patch(old, new)

    assert patch == new
    assert apply_merge_patch(old, patch) == new


def test_equal_statuses_give_an_empty_patch() -> None:
    status = {"phase": "Healthy", "drift": {"features": [{"name": "x"}], "window": {"seconds": 60}}}

    assert merge_patch(status, {**status}) == {}
