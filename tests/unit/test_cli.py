"""The kubeloop command line: routing, CRD printing."""

from __future__ import annotations

import pytest

from kubeloop.cli import main


def test_crds_are_printed_by_kind(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["crds", "--kind", "TrainingRun"]) == 0
    out = capsys.readouterr().out
    assert "name: trainingruns.kubeloop.io" in out
    assert "datasets.kubeloop.io" not in out


def test_data_profile_owns_its_flags(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "profile", "--help"])
    assert exit_info.value.code == 0
    assert "--termination-log" in capsys.readouterr().out


def test_unknown_flags_are_refused() -> None:
    with pytest.raises(SystemExit):
        main(["crds", "--bogus"])
