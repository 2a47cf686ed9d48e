"""The monitor's files without Ray: the store's writers, then its typed readers and the JSON readers."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from raylane.config import ProjectConfig, load_config
from raylane.monitoring import MonitorStore, monitor_dir, read_decisions, read_windows
from raylane.monitoring.analysis import ColumnDrift, LiveMetric, WindowAnalysis
from raylane.monitoring.store import DecisionRecord, InFlight, QualityCheck, valid_profile_id, write_atomic
from raylane.testing import example_config_path


@pytest.fixture
def cfg(tmp_path: Path) -> ProjectConfig:
    env = {"CHURN_DATA": str(tmp_path / "data"), "RAYLANE_STORAGE": str(tmp_path / "store")}
    return load_config(example_config_path(), env=env)


def _report(store: MonitorStore, number: int, decision: dict[str, Any], *, drifted: bool) -> dict[str, Any]:
    analysis = WindowAnalysis(
        rows=300,
        reference_version="4",
        drift=[
            ColumnDrift("tenure_months", "ks", 0.31, 0.0001 if drifted else 0.4, drifted),
            ColumnDrift("prediction", "ks", 0.05, 0.7, False),
        ],
        quality=[{"name": "null percentage of tenure_months lower than 0.1", "passed": not drifted, "summary": None}],
        live=LiveMetric("roc_auc", 0.8125, 64, 0.7, False) if number == 2 else None,
    )
    folder = store.window_folder(number)
    return {
        "window": number,
        "project": "churn",
        "opened_at": f"2026-01-01T12:0{number}:00+00:00",
        "closed_at": f"2026-01-01T12:0{number}:30+00:00",
        "profiles": 3,
        **analysis.to_dict(),
        "decision": decision,
        "html": str(folder / "report.html"),
        "whylogs_html": None,
    }


def _close(store: MonitorStore, number: int, parts: list[str], decision: dict[str, Any], *, drifted: bool) -> None:
    for pid in parts:
        store.store_profile(pid, b"profile " + pid.encode())
    staged = store.begin_window(number)
    report = _report(store, number, decision, drifted=drifted)
    store.commit_window(number, staged, profile=b"merged", parts=parts, report=report, html="<html></html>")


@pytest.fixture
def store(cfg: ProjectConfig) -> MonitorStore:
    s = MonitorStore(cfg)
    assert not s.has_run() and s.windows() == [] and s.decisions() == [] and s.in_flight() is None
    s.create()
    _close(s, 1, ["r1-a", "r1-b", "r1-c"], {"action": "none"}, drifted=False)
    retrain = {"window": 2, "reasons": ["drift: 1 features drifted (tenure_months)"], "action": "retrain"}
    retrain |= {"job_id": "raylane-retrain-churn-1", "status": "SUBMITTED"}
    _close(s, 2, ["r2-b", "r2-a", "r2-c"], retrain, drifted=True)
    s.append_decision({"at": "2026-01-01T12:02:30+00:00", **retrain})
    s.store_profile("r3-a", b"open")
    s.store_profile("r3-b", b"open")
    os.utime(s.inbox / "r3-b.bin", (1_700_000_000, 1_700_000_000))  # the older one, though written last
    s.save_state(
        {
            "started_at": "2026-01-01T12:00:00+00:00",
            "last_submitted_at": "2026-01-01T12:02:30+00:00",
            "in_flight": {"job_id": "raylane-retrain-churn-1", "submitted_at": "2026-01-01T12:02:30+00:00"},
        }
    )
    return s


def test_windows_are_typed_oldest_first(store: MonitorStore) -> None:
    assert store.has_run() and store.window_numbers() == [1, 2]
    first, second = store.windows()
    assert (first.window, first.rows, first.profiles, first.reference_version) == (1, 300, 3, "4")
    assert first.decision == DecisionRecord("none") and first.live is None and first.drifted_features == []
    assert second.drift[0] == ColumnDrift("tenure_months", "ks", 0.31, 0.0001, True)
    assert second.drifted_features == ["tenure_months"] and not second.prediction_drifted
    assert second.quality == [QualityCheck("null percentage of tenure_months lower than 0.1", False)]
    assert second.failed_checks == ["null percentage of tenure_months lower than 0.1"]
    assert second.live == LiveMetric("roc_auc", 0.8125, 64, 0.7, False)
    assert second.decision.job_id == "raylane-retrain-churn-1" and second.decision.window == 2
    assert second.html == str(store.dir / "windows" / "000002" / "report.html")
    assert [w.window for w in store.windows(last=1)] == [2]
    assert store.windows(last=0) == []
    assert store.window(2) == second and store.window(3) is None


def test_a_closed_window_holds_its_files_and_empties_the_inbox(store: MonitorStore, cfg: ProjectConfig) -> None:
    folder = monitor_dir(cfg) / "windows" / "000002"
    assert sorted(p.name for p in folder.iterdir()) == ["parts.json", "profile.bin", "report.html", "report.json"]
    assert store.window_parts(2) == ["r2-a", "r2-b", "r2-c"]  # sorted
    assert (folder / "profile.bin").read_bytes() == b"merged"
    assert not list(store.windows_dir.glob(".*"))  # no staging folder left
    assert [p.name for p in store.inbox_profiles()] == ["r3-b.bin", "r3-a.bin"]  # oldest first
    assert store.open_profiles() == 2


def test_the_json_readers_return_the_files_as_they_are(store: MonitorStore, cfg: ProjectConfig) -> None:
    on_disk = json.loads((monitor_dir(cfg) / "windows" / "000001" / "report.json").read_text())
    windows = read_windows(cfg)
    assert windows[0] == on_disk and [w["window"] for w in windows] == [1, 2]
    assert read_windows(cfg, 1)[0]["decision"]["status"] == "SUBMITTED"
    [decision] = read_decisions(cfg)
    assert decision["at"] == "2026-01-01T12:02:30+00:00" and decision["action"] == "retrain"


def test_decisions_and_their_text(store: MonitorStore) -> None:
    store.append_decision(
        {"at": "2026-01-01T12:03:30+00:00", "window": 3, "reasons": ["drift: x", "decay: y"]}
        | {
            "action": "skipped",
            "why": "retrain job raylane-retrain-churn-1 is still running",
        }
    )
    ended = {"at": "2026-01-01T12:09:00+00:00", "action": "retrain_ended", "job_id": "raylane-retrain-churn-1"}
    store.append_decision(ended | {"status": "SUCCEEDED", "result": {"version": "5", "promoted": True}})
    store.append_decision(ended | {"status": "FAILED", "log_tail": ["Traceback", "FileNotFoundError: gone"]})
    texts = [d.text() for d in store.decisions()]
    assert texts == [
        "retrain submitted as job raylane-retrain-churn-1 (SUBMITTED) — drift: 1 features drifted (tenure_months)",
        "trigger skipped (retrain job raylane-retrain-churn-1 is still running) — drift: x; decay: y",
        "retrain job raylane-retrain-churn-1 SUCCEEDED: version 5 promoted",
        "retrain job raylane-retrain-churn-1 FAILED",
    ]
    last = store.decisions(last=2)
    assert [d.status for d in last] == ["SUCCEEDED", "FAILED"] and last[1].log_tail == [
        "Traceback",
        "FileNotFoundError: gone",
    ]
    assert last[0].result == {"version": "5", "promoted": True} and last[0].at == "2026-01-01T12:09:00+00:00"
    assert DecisionRecord("none").text() == "none"


def test_state_and_the_retrain_in_flight(store: MonitorStore) -> None:
    state = store.state()
    assert state.started_at == "2026-01-01T12:00:00+00:00" and state.last_submitted_at == "2026-01-01T12:02:30+00:00"
    assert store.in_flight() == InFlight("raylane-retrain-churn-1", "2026-01-01T12:02:30+00:00", [])
    raw = store.load_state()
    store.save_state(raw | {"in_flight": None})
    assert store.in_flight() is None and store.state().last_submitted_at == "2026-01-01T12:02:30+00:00"


def test_config_and_retrain_results_round_trip(store: MonitorStore, cfg: ProjectConfig) -> None:
    assert store.load_config() is None
    newer = cfg.model_copy(update={"monitor": cfg.monitor.model_copy(update={"window_rows": 123})})
    assert store.save_config(newer) == store.config_file
    loaded = store.load_config()
    assert loaded is not None and loaded.monitor.window_rows == 123
    assert store.retrain_result("raylane-retrain-churn-1") is None
    store.retrain_result_file("raylane-retrain-churn-1").write_text(json.dumps({"version": "5", "promoted": False}))
    assert store.retrain_result("raylane-retrain-churn-1") == {"version": "5", "promoted": False}
    store.config_file.write_text("{not json")
    with pytest.raises(ValueError):
        store.load_config()


def test_atomic_writes_leave_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    write_atomic(target, b"one")
    write_atomic(target, b"two")
    assert target.read_bytes() == b"two" and [p.name for p in tmp_path.iterdir()] == ["state.json"]


@pytest.mark.parametrize(
    ("profile_id", "ok"),
    [
        ("replica-a_00000001-1f2e3d4c", True),
        ("../../etc/passwd", False),
        ("", False),
        ("a" * 129, False),
        ("a b", False),
    ],
)
def test_profile_ids_name_files_safely(profile_id: str, ok: bool) -> None:
    assert valid_profile_id(profile_id) is ok
