"""A recorded pid is signalled only while it is still the recorded process; the storage root is private."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from raylane.cli._common import load
from raylane.config import load_config
from raylane.processes import is_recorded_process, started_at
from raylane.serving.deploy import record_path, shutdown
from raylane.testing import example_config_path


def _sleeper() -> subprocess.Popen[bytes]:
    import psutil

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)  # raylane-test"])
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # until it runs its own program (after fork, before exec: ours)
        if "raylane-test" in " ".join(psutil.Process(proc.pid).cmdline()):
            break
        time.sleep(0.05)
    return proc


def test_a_pid_is_the_recorded_process_only_with_its_start_time_and_program() -> None:
    proc = _sleeper()
    try:
        started = started_at(proc.pid)
        assert started > 0
        assert is_recorded_process(proc.pid, started, "raylane-test")
        assert is_recorded_process(proc.pid, 0.0, "raylane-test")  # an older record without the time
        assert not is_recorded_process(proc.pid, started - 3600, "raylane-test")  # a reused pid
        assert not is_recorded_process(proc.pid, started, "something-else")
    finally:
        proc.kill()
        proc.wait()
    assert not is_recorded_process(proc.pid, started, "raylane-test") and started_at(proc.pid) == 0.0


def test_serve_shutdown_never_signals_a_reused_pid(tmp_path: Path) -> None:
    env = {"CHURN_DATA": str(tmp_path / "data"), "RAYLANE_STORAGE": str(tmp_path / "store")}
    cfg = load_config(example_config_path(), env=env)
    proc = _sleeper()  # a live process whose command line says raylane, started at another time
    try:
        path = record_path(cfg)
        path.parent.mkdir(parents=True)
        record = {
            "app": "churn",
            "url": "http://127.0.0.1:1",
            "model_name": "churn",
            "model_version": "1",
            "ray_address": "127.0.0.1:1",
            "embedded": True,
            "pid": proc.pid,
            "deployed_at": "2026-01-01T00:00:00+00:00",
            "pid_started": started_at(proc.pid) - 3600,
        }
        path.write_text(json.dumps(record))
        assert "is gone; record removed" in shutdown(cfg)
        assert proc.poll() is None and not path.exists()  # not signalled
    finally:
        proc.kill()
        proc.wait()


def test_the_storage_root_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHURN_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("RAYLANE_STORAGE", str(tmp_path / "store"))
    cfg = load(example_config_path(), None)
    assert (cfg.storage_root.stat().st_mode & 0o777) == 0o700
    os.chmod(cfg.storage_root, 0o755)  # made by an older raylane
    load(example_config_path(), None)
    assert (cfg.storage_root.stat().st_mode & 0o777) == 0o700


def test_token_mode_is_set_before_ray_is_imported() -> None:
    """Joining a cluster with backends.ray.auth_token_file needs RAY_AUTH_MODE=token when Ray is imported."""
    code = (
        "from raylane import runtime; runtime.token_mode_before_import(); import ray;"
        " from ray._raylet import AuthenticationMode, get_authentication_mode;"
        " print(get_authentication_mode() == AuthenticationMode.TOKEN)"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "True", out.stderr[-2000:]
    off = subprocess.run(
        [sys.executable, "-c", code], env={**env, "RAY_AUTH_MODE": "disabled"}, capture_output=True, text=True
    )
    assert off.stdout.strip() == "False", off.stderr[-2000:]


@pytest.mark.parametrize("same_start", [False, True])
def test_cluster_down_signals_a_recorded_node_only_while_its_pid_is_still_that_node(
    tmp_path: Path, same_start: bool
) -> None:
    from dataclasses import asdict

    from raylane import cluster

    env = {"CHURN_DATA": str(tmp_path / "data"), "RAYLANE_STORAGE": str(tmp_path / "store")}
    cfg = load_config(example_config_path(), env=env)
    proc = _sleeper()  # its command line says "ray" (raylane-test), as a `ray start` node's does
    try:
        started = started_at(proc.pid) - (0 if same_start else 3600)
        node = cluster.Node(role="head", pid=proc.pid, num_cpus=1, log=str(tmp_path / "head.log"), started=started)
        record = cluster.LocalCluster(
            name="local",
            address="127.0.0.1:1",
            dashboard_url="http://127.0.0.1:1",
            token_file=str(tmp_path / "token"),
            started_at="2026-01-01T00:00:00+00:00",
            nodes=[node],
        )
        path = cluster.record_path(cfg)
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(asdict(record)))
        assert cluster.down(cfg) is not None and not path.exists()
        if same_start:  # still the recorded node: stopped
            assert proc.wait(30) is not None
        else:  # a reused pid: left alone
            assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()
