"""Router settings: CPU limit from cgroups, namespace and worker defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubeloop.router.settings import RouterSettings, cpu_limit


@pytest.mark.parametrize(
    ("content", "expected"),
    [("200000 100000\n", 2), ("150000 100000\n", 2), ("50000 100000\n", 1), ("max 100000\n", None)],
)
def test_cpu_limit_cgroup_v2(tmp_path: Path, content: str, expected: int | None) -> None:
    (tmp_path / "cpu.max").write_text(content)
    assert cpu_limit(tmp_path) == expected


def test_cpu_limit_cgroup_v1_and_none(tmp_path: Path) -> None:
    assert cpu_limit(tmp_path) is None
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("300000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu_limit(tmp_path) == 3


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBELOOP_ROUTE_DEPLOYMENT", "iris")
    monkeypatch.setenv("KUBELOOP_ROUTE_NAMESPACE", "ml")
    monkeypatch.setenv("KUBELOOP_ROUTE_LISTEN_PORT", "9000")
    monkeypatch.setenv("KUBELOOP_ROUTE_WORKER_PROCESSES", "3")
    settings = RouterSettings()
    assert (settings.deployment, settings.resolved_namespace(), settings.listen_port) == (
        "iris",
        "ml",
        9000,
    )
    assert settings.resolved_workers() == 3
    assert settings.state_dir == Path("/tmp/kubeloop-route")
