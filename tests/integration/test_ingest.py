"""Ingestion through the CLI: bad input gives exit code 2, a message naming the thing and the fix,
no traceback, and nothing half-written."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from raylane.cli import main
from raylane.config import ProjectConfig
from raylane.ingest import offline_path
from raylane.testing import example_config_path, example_project, ray_processes

DASHBOARD_AGENT_PORT = 52365  # Ray's default, which `ray.init` cannot change


def _run(cfg: ProjectConfig, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main([*args, str(example_config_path())])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


@pytest.fixture
def env(fresh_churn: ProjectConfig, monkeypatch: pytest.MonkeyPatch) -> ProjectConfig:
    """Point the example config's ${CHURN_DATA} and ${RAYLANE_STORAGE} at a fresh project."""
    monkeypatch.setenv("CHURN_DATA", str(fresh_churn.data.sources[0].path.parent))
    monkeypatch.setenv("RAYLANE_STORAGE", str(fresh_churn.storage_root))
    return fresh_churn


@pytest.fixture(scope="module")
def ingested(ray_runtime: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProjectConfig]:
    """One project, ingested once; each test breaks a source and must leave the tables as they were."""
    cfg = example_project(tmp_path_factory.mktemp("ingested"), size="tiny")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CHURN_DATA", str(cfg.data.sources[0].path.parent))
        mp.setenv("RAYLANE_STORAGE", str(cfg.storage_root))
        assert main(["features", "ingest", str(example_config_path())]) == 0
        yield cfg


def _snapshot(cfg: ProjectConfig) -> dict[str, tuple[int, int]]:
    root = cfg.storage_root / "offline"
    return {str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size) for p in root.rglob("*") if p.is_file()}


def test_ingest_writes_every_source(env: ProjectConfig, capsys: pytest.CaptureFixture[str]) -> None:
    code, text = _run(env, capsys, "features", "ingest")
    assert code == 0, text
    for name in ("profiles", "activity", "labels"):
        assert name in text
        table = pd.read_parquet(offline_path(env, name))
        assert len(table) > 0
        assert str(table[env.data.source(name).timestamp_column].dtype) == "datetime64[us, UTC]"


def _break(cfg: ProjectConfig, source: str, how: str) -> None:
    path = cfg.data.source(source).path
    if path.suffix == ".csv":
        lines = path.read_text().splitlines()
        if how == "broken_row":
            lines.insert(5, "1010,2025-02-01T00:00:00+0000,1,EXTRA,FIELDS")
        elif how == "bad_timestamp":
            lines[3] = lines[3].replace("2025", "yesterday", 1)
        elif how == "empty":
            lines = lines[:1]
        elif how == "bad_label":  # a binary label that is neither 0 nor 1
            lines[3] = lines[3].rsplit(",", 1)[0] + ",999"
            lines[4] = lines[4].rsplit(",", 1)[0] + ",-7"
        path.write_text("\n".join(lines) + "\n")
        return
    frame = pd.read_parquet(path)
    if how == "missing_column":
        frame = frame.drop(columns=["sessions_7d"])
    elif how == "bad_timestamp":
        frame["event_timestamp"] = frame["customer_id"].astype("float64")
    elif how == "empty":
        frame = frame.iloc[:0]
    elif how == "too_many_nulls":
        frame["days_since_last_login"] = None
    frame.to_parquet(path, index=False)


@pytest.mark.parametrize(
    ("source", "how", "says"),
    [
        ("activity", "missing_column", ["source 'activity'", "'sessions_7d'", "fix:"]),
        ("activity", "bad_timestamp", ["timestamp column 'event_timestamp'", "not timestamp", "fix:"]),
        ("labels", "bad_timestamp", ["timestamp column 'label_timestamp'", "fix:"]),
        ("activity", "empty", ["source 'activity'", "no rows", "fix:"]),
        ("labels", "empty", ["source 'labels'", "fix:"]),
        ("labels", "broken_row", ["source 'labels'", "labels.csv", "Expected 3 columns", "broken row"]),
        ("labels", "bad_label", ["label column 'churned'", "2 value(s)", "999", "-7", "0 or 1", "fix:"]),
        ("activity", "too_many_nulls", ["'days_since_last_login'", "100.0% null", "max_null_fraction"]),
    ],
)
def test_bad_source_is_a_clear_error_and_writes_nothing(
    ingested: ProjectConfig, capsys: pytest.CaptureFixture[str], source: str, how: str, says: list[str]
) -> None:
    capsys.readouterr()
    before = _snapshot(ingested)
    raw = ingested.data.source(source).path
    good = raw.read_bytes()
    _break(ingested, source, how)
    try:
        code, text = _run(ingested, capsys, "features", "ingest")
    finally:
        raw.write_bytes(good)
    assert code == 2, text
    assert "Traceback" not in text
    for fragment in says:
        assert fragment in text, (fragment, text)
    assert _snapshot(ingested) == before  # no source was rewritten, not even the good ones


def test_rerunning_after_a_fix_works(ingested: ProjectConfig, capsys: pytest.CaptureFixture[str]) -> None:
    raw = ingested.data.source("labels").path
    good = raw.read_bytes()
    _break(ingested, "labels", "broken_row")
    assert _run(ingested, capsys, "features", "ingest")[0] == 2
    raw.write_bytes(good)
    code, text = _run(ingested, capsys, "features", "ingest")
    assert code == 0, text


def test_missing_source_file(env: ProjectConfig, capsys: pytest.CaptureFixture[str]) -> None:
    env.data.source("profiles").path.unlink()
    code, text = _run(env, capsys, "features", "ingest")
    assert code == 2
    assert "profiles.parquet does not exist" in text and "raylane demo data" in text


def test_cli_in_a_subprocess_prints_no_traceback_and_leaks_no_ray(env: ProjectConfig, tmp_path: Path) -> None:
    """The real entry point, with its own embedded Ray: a user error exits 2 without a traceback,
    a good run exits 0 (while another process holds the dashboard agent's fixed port, as a second
    Ray on the machine does), and neither leaves a Ray process behind."""
    before = set(ray_processes())
    cli = [sys.executable, "-m", "raylane", "features", "ingest", str(example_config_path())]
    run_env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    run_env["RAYLANE__BACKENDS__RAY__NUM_CPUS"] = "1"
    _break(env, "labels", "broken_row")
    bad = subprocess.run(cli, env=run_env, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2, bad.stderr
    assert "Traceback" not in bad.stderr and "broken row" in bad.stderr
    env.data.source("labels").path.unlink()
    from raylane.examples.churn import SIZES, write

    write(SIZES["tiny"], env.data.source("labels").path.parent)
    with contextlib.ExitStack() as held:  # another Ray's dashboard agent holds its fixed port
        agent = held.enter_context(socket.socket())
        with contextlib.suppress(OSError):  # taken already: by another Ray's agent, the same case
            agent.bind(("127.0.0.1", DASHBOARD_AGENT_PORT))
            agent.listen()
        good = subprocess.run(cli, env=run_env, capture_output=True, text=True, timeout=300)
    assert good.returncode == 0, good.stderr
    deadline = time.monotonic() + 20
    while (left := set(ray_processes()) - before) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not left, {p: ray_processes().get(p) for p in left}


def test_a_ray_that_cannot_start_is_a_clear_error(env: ProjectConfig, tmp_path: Path) -> None:
    """Any start-up failure of the embedded Ray (here: its temp folder cannot be made) exits 2 with
    Ray's reason and a fix, never as an internal error."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cli = [sys.executable, "-m", "raylane", "features", "ingest", str(example_config_path())]
    run_env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    run_env["RAY_TMPDIR"] = str(blocker / "ray")
    bad = subprocess.run(cli, env=run_env, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2, bad.stderr
    assert "cannot start Ray" in bad.stderr and "Not a directory" in bad.stderr and "fix:" in bad.stderr
    assert "Traceback" not in bad.stderr and "internal error" not in bad.stderr
