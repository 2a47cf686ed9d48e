"""Continuous monitoring: real whylogs profiles, the monitor (in this process, or as the detached
Ray actor), real Ray jobs for retraining, the MLflow registry.

Live traffic is what a replica profiles: the online features of sampled customers (the latest
values, as Feast serves them) and the champion's predictions on them. Drifted traffic comes from
the example generator's drift knob."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from raylane.config import ProjectConfig
from raylane.examples.churn import SIZES, day, generate, write
from raylane.features import FeatureRepo
from raylane.ingest import ingest
from raylane.monitoring import Monitor, monitor_dir, read_decisions, read_windows
from raylane.profiling import profile
from raylane.registry import Registry
from raylane.testing import example_project, headless_browser, headless_dom
from raylane.training import train

WINDOW = 300
DRIFT_DAY = 60  # the tiny data set covers days 0-60; drifted data goes on to day 90


@dataclass
class Project:
    cfg: ProjectConfig
    normal: pd.DataFrame  # each customer's latest features, no drift
    drifted: pd.DataFrame  # the same customers 30 days later, after the drift began


def _latest(tables: dict[str, pd.DataFrame], features: list[str]) -> pd.DataFrame:
    """Each customer's latest value of every feature (what the online store serves)."""
    parts = [
        tables[name].sort_values("event_timestamp").groupby("customer_id").last().drop(columns="event_timestamp")
        for name in ("profiles", "activity")
    ]
    return parts[0].join(parts[1], how="inner")[features].reset_index()


@pytest.fixture(scope="module")
def project(ray_runtime: object, tmp_path_factory: pytest.TempPathFactory) -> Project:
    cfg = example_project(
        tmp_path_factory.mktemp("monitor"),
        overrides=[
            "train.epochs=3",
            "train.batch_size=128",
            "registry.promotion.floor=null",
            f"monitor.window_rows={WINDOW}",
            "monitor.flush_rows=100",
            "monitor.flush_seconds=0.5",
            "monitor.cooldown=1h",
        ],
    )
    ingest(cfg)
    repo = FeatureRepo(cfg)
    repo.apply()
    repo.materialize()
    assert train(cfg).promoted
    features = list(cfg.feature_dtypes())
    spec = SIZES["tiny"]
    normal = _latest(generate(spec), features)
    drifted = _latest(generate(replace(spec, days=90, drift_start_day=DRIFT_DAY)), features)
    return Project(cfg, normal, drifted)


def _traffic(cfg: ProjectConfig, latest: pd.DataFrame, rows: int, seed: int) -> pd.DataFrame:
    """``rows`` requests for random customers, with the champion's predictions (as replicas log them)."""
    rng = np.random.default_rng(seed)
    frame = latest.iloc[rng.integers(0, len(latest), rows)][list(cfg.feature_dtypes())].reset_index(drop=True)
    champion = Registry(cfg).champion()
    frame["prediction"] = Registry(cfg).load_bundle(str(champion.version)).predict(frame)
    return frame


def _send(monitor: Monitor, frame: pd.DataFrame, tag: str, per_profile: int = 100) -> int:
    """Profile ``frame`` in slices as replicas do and hand each profile to the monitor."""
    sent = 0
    for i in range(0, len(frame), per_profile):
        blob = profile(frame.iloc[i : i + per_profile]).serialize()
        sent += monitor.ingest(f"{tag}-{i:06d}", blob)
    return sent


@pytest.fixture
def monitor_of(project: Project) -> Iterator[Callable[..., Monitor]]:
    """A fresh monitor (empty state) in this process, with config overrides."""
    made: list[Monitor] = []

    def make(*, serve: dict[str, Any] | None = None, **monitor: Any) -> Monitor:
        shutil.rmtree(monitor_dir(project.cfg), ignore_errors=True)
        data = project.cfg.model_dump(mode="json")
        data["monitor"] = {**data["monitor"], **monitor}
        data["serve"] = {**data["serve"], **(serve or {})}
        m = Monitor(data)
        made.append(m)
        return m

    yield make
    for m in made:
        m.shutdown()


def _wait(predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def test_no_shift_gives_no_trigger_over_five_windows(project: Project, monitor_of: Callable[..., Monitor]) -> None:
    cfg = project.cfg
    monitor = monitor_of()
    for w in range(5):
        assert _send(monitor, _traffic(cfg, project.normal, WINDOW, seed=w), f"normal{w}") == WINDOW
    windows = read_windows(cfg)
    assert [w["window"] for w in windows] == [1, 2, 3, 4, 5]
    features = set(cfg.feature_dtypes())
    for w in windows:
        assert w["rows"] == WINDOW and w["profiles"] == 3
        assert w["reference_version"] == str(Registry(cfg).champion().version)
        assert {d["column"] for d in w["drift"]} == features | {"prediction"}  # every column was compared
        assert len(w["drifted_features"]) < cfg.monitor.triggers.drifted_features
        assert w["decision"] == {"action": "none"}
        assert any(q["name"].startswith("null percentage of monthly_charges") for q in w["quality"])
    assert read_decisions(cfg) == []
    assert not list((monitor_dir(cfg) / "inbox").glob("*.bin"))  # every profile went into a window


def test_window_metrics_reach_prometheus(project: Project) -> None:
    """After the no-shift test: Ray's metrics agent exports the monitor's gauges (Prometheus text)."""
    import httpx
    import ray

    port = ray._private.worker.global_worker.node.metrics_export_port
    wanted = ("raylane_window_rows", "raylane_drift_score", "raylane_windows_total")

    def scraped() -> str | None:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        return text if all(f"{name}{{" in text or f"ray_{name}{{" in text for name in wanted) else None

    text = _wait(scraped, 90, "the monitor's metrics on the node's metrics endpoint")
    rows = [line for line in text.splitlines() if "raylane_window_rows{" in line and 'project="churn"' in line]
    assert rows and float(rows[-1].rsplit(" ", 1)[1]) == WINDOW
    assert 'column="monthly_charges"' in text


def test_a_resent_profile_counts_once(project: Project, monitor_of: Callable[..., Monitor]) -> None:
    monitor = monitor_of()
    blob = profile(_traffic(project.cfg, project.normal, 50, seed=9)).serialize()
    assert monitor.ingest("replica-a-1", blob) == 50
    assert monitor.ingest("replica-a-1", blob) == 0  # a retry after a lost answer
    assert monitor.status()["open_window"]["rows"] == 50
    with pytest.raises(ValueError, match="not a raylane profile id"):
        monitor.ingest("../../etc/passwd", blob)
    with pytest.raises(Exception):  # noqa: B017 - protobuf's own DecodeError: bytes that are no profile
        monitor.ingest("replica-a-2", b"\x00not a profile")
    # a restarted monitor (a new instance on the same state) finds the open window on disk
    again = Monitor(project.cfg.model_dump(mode="json") | {"monitor": monitor.cfg.monitor.model_dump(mode="json")})
    try:
        assert again.status()["open_window"]["rows"] == 50
        assert again.ingest("replica-a-1", blob) == 0
    finally:
        again.shutdown()


def test_a_retrain_the_job_api_does_not_know_is_recorded_lost(
    project: Project, monitor_of: Callable[..., Monitor]
) -> None:
    """A monitor that died between saving its in-flight job and submitting it finds, on restart,
    an id the job API does not know: recorded as LOST, and the next trigger is free to retrain."""
    monitor = monitor_of()
    monitor.state["in_flight"] = {"job_id": "raylane-retrain-churn-never-submitted", "reasons": ["drift: test"]}
    monitor._follow_job()
    lost = [d for d in read_decisions(project.cfg) if d["action"] == "retrain_ended"]
    assert [(d["job_id"], d["status"]) for d in lost] == [("raylane-retrain-churn-never-submitted", "LOST")]
    assert monitor.status()["in_flight"] is None


def test_a_new_config_outlives_a_restart(project: Project, monitor_of: Callable[..., Monitor]) -> None:
    """A redeploy hands the running monitor its new config; Ray restarts an actor with the args it
    was created with, so the monitor keeps the newest config on disk and prefers it."""
    monitor = monitor_of()
    first = project.cfg.model_dump(mode="json")
    newer = first | {"monitor": {**first["monitor"], "window_rows": 123}}
    monitor.configure(newer)
    assert monitor.cfg.monitor.window_rows == 123
    restarted = Monitor(first)
    try:
        assert restarted.cfg.monitor.window_rows == 123
        shutil.rmtree(monitor_dir(project.cfg))  # its state removed under it (a fresh start)
        restarted.configure(first)
        assert restarted.cfg.monitor.window_rows == WINDOW and (monitor_dir(project.cfg) / "config.json").is_file()
    finally:
        restarted.shutdown()


def test_drift_triggers_one_retrain_per_cooldown_and_a_failed_one_is_recorded(
    project: Project, monitor_of: Callable[..., Monitor], tmp_path: Any
) -> None:
    """Drift fires within 2 windows; the retrain job (made to fail: its data is gone) is recorded
    as failed and the champion stays; inside the cooldown later triggers are skipped; after it, a
    new trigger retries."""
    cfg = project.cfg
    champion = str(Registry(cfg).champion().version)
    missing = str(tmp_path / "gone" / "profiles.parquet")
    monitor = monitor_of(cooldown="20s")
    # the retrain job reads the config the monitor writes: point its data at a file that is gone
    monitor.cfg = monitor.cfg.model_copy(
        update={
            "data": monitor.cfg.data.model_copy(
                update={
                    "sources": [
                        s.model_copy(update={"path": missing}) if s.name == "profiles" else s
                        for s in monitor.cfg.data.sources
                    ]
                }
            )
        }
    )
    _send(monitor, _traffic(cfg, project.normal, WINDOW, seed=11), "before")
    _send(monitor, _traffic(cfg, project.drifted, WINDOW, seed=12), "drift1")
    windows = read_windows(cfg)
    assert windows[0]["decision"] == {"action": "none"}
    fired = windows[1]
    assert len(fired["drifted_features"]) >= cfg.monitor.triggers.drifted_features
    assert fired["decision"]["action"] == "retrain" and fired["decision"]["status"] == "SUBMITTED"
    assert fired["decision"]["reasons"][0].startswith("drift:")
    job = fired["decision"]["job_id"]
    # inside the cooldown (and while the job may still run): skipped, no second job
    _send(monitor, _traffic(cfg, project.drifted, WINDOW, seed=13), "drift2")
    assert read_windows(cfg)[-1]["decision"]["action"] == "skipped"
    ended = _wait(
        lambda: [d for d in read_decisions(cfg) if d["action"] == "retrain_ended" and d["job_id"] == job],
        120,
        "the retrain job to end",
    )[0]
    assert ended["status"] == "FAILED"
    assert any("gone/profiles.parquet" in line for line in ended["log_tail"])  # why, in the record
    assert str(Registry(cfg).champion().version) == champion
    assert monitor.status()["in_flight"] is None
    _wait(lambda: _cooled(monitor), 30, "the cooldown to pass")
    _send(monitor, _traffic(cfg, project.drifted, WINDOW, seed=14), "drift3")
    retry = read_windows(cfg)[-1]["decision"]
    assert retry["action"] == "retrain" and retry["job_id"] != job
    jobs = [d for d in read_decisions(cfg) if d["action"] == "retrain"]
    assert len(jobs) == 2  # one per cooldown
    _wait(lambda: monitor.status()["in_flight"] is None, 120, "the second job to end")


def test_cli_monitor_status_and_report(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    """After the drift test: `raylane monitor status|report` read the windows and decisions on disk."""
    from raylane.cli import main
    from raylane.testing import example_config_path

    cfg = project.cfg
    env = {"CHURN_DATA": str(cfg.data.sources[0].path.parent), "RAYLANE_STORAGE": str(cfg.storage_root)}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        assert main(["monitor", "status", str(example_config_path())]) == 0
        shown = capsys.readouterr().out
        windows = read_windows(cfg)
        assert f"{cfg.project}: monitor windows" in shown
        assert "retrain submitted as job" in shown and "FAILED" in shown and "trigger skipped (" in shown
        assert main(["monitor", "report", str(example_config_path()), "--window", "2"]) == 0
        report = capsys.readouterr().out
        assert "window 2 of churn: 300 rows" in report and "HTML report:" in report
        for feature in windows[1]["drifted_features"]:
            assert feature in report
        assert main(["monitor", "report", str(example_config_path()), "--window", "99"]) == 2
        assert "no window 99" in capsys.readouterr().err


def _cooled(monitor: Monitor) -> bool:
    from datetime import UTC, datetime

    last = monitor.state.get("last_submitted_at")
    return last is None or datetime.now(UTC) >= datetime.fromisoformat(last) + monitor.cfg.monitor.cooldown


def test_window_report_html_shows_the_drifted_features(project: Project, monitor_of: Callable[..., Monitor]) -> None:
    cfg = project.cfg
    monitor = monitor_of(triggers={"drifted_features": None, "live_metric_below": None, "every": None})
    _send(monitor, _traffic(cfg, project.drifted, WINDOW, seed=21), "html")
    report = read_windows(cfg)[-1]
    html = (monitor_dir(cfg) / "windows" / "000001" / "report.html").read_text()
    assert report["html"].endswith("report.html") and "<script" not in html  # self-contained, works offline
    assert "<!DOCTYPE html>" in (monitor_dir(cfg) / "windows" / "000001" / "whylogs.html").read_text()
    assert html.lstrip().lower().startswith("<!doctype html>") and html.rstrip().endswith("</html>")
    for feature in report["drifted_features"]:
        assert feature in html
    assert json.loads((monitor_dir(cfg) / "windows" / "000001" / "report.json").read_text())["rows"] == WINDOW


@pytest.mark.skipif(headless_browser() is None, reason="no headless Chromium on this machine")
def test_window_report_renders_in_headless_chromium(project: Project) -> None:
    """After the HTML test: the report, opened by a browser, shows the drifted features."""
    report = read_windows(project.cfg)[-1]
    dom = headless_dom(monitor_dir(project.cfg) / "windows" / f"{report['window']:06d}" / "report.html")
    assert report["drifted_features"]
    for feature in report["drifted_features"]:
        assert feature in dom


@pytest.mark.slow
def test_drift_in_anonymous_traffic_is_recorded_and_skipped(
    project: Project, monitor_of: Callable[..., Monitor]
) -> None:
    """With ``min_authenticated_share``, a drifted window of anonymous requests (answered under
    ``serve.auth.allow_anonymous``) submits nothing: the decision is skipped, saying why, and the
    report shows the window's share of rows that came with the API key."""
    from raylane.monitoring.analysis import AUTHENTICATED

    cfg = project.cfg
    triggers = {"drifted_features": 3, "min_authenticated_share": 0.5}
    auth = {"api_key_env": "RAYLANE_UNUSED_KEY", "allow_anonymous": True}
    monitor = monitor_of(serve={"auth": auth}, triggers=triggers)
    drifted = _traffic(cfg, project.drifted, WINDOW, seed=41)
    keyed = drifted.iloc[: WINDOW // 5].assign(**{AUTHENTICATED: 1})
    anonymous = drifted.iloc[WINDOW // 5 :].assign(**{AUTHENTICATED: 0})
    assert _send(monitor, pd.concat([keyed, anonymous], ignore_index=True), "anon") == WINDOW
    (window,) = read_windows(cfg)
    assert len(window["drifted_features"]) >= 3
    assert window["authenticated_rows"] == WINDOW // 5 and window["authenticated_share"] == 0.2
    assert window["decision"]["action"] == "skipped"
    assert window["decision"]["why"].startswith(f"20% of the window's {WINDOW} rows came with the API key")
    assert [d["action"] for d in read_decisions(cfg)] == ["skipped"]
    assert monitor.status()["in_flight"] is None
    page = Path(window["html"]).read_text()
    assert "(20% with the API key)" in page


def test_a_shadow_window_judges_both_models_on_the_same_labelled_requests(
    project: Project, monitor_of: Callable[..., Monitor]
) -> None:
    """serve.rollout.mode: shadow. The window's live metric is the champion's on its served
    predictions, and beside it the challenger's on its shadow predictions of the same requests,
    both joined with the same /feedback labels (here: the champion right, the challenger wrong)."""
    from datetime import UTC, datetime

    from raylane.inference_log import LogWriter, feedback_schema, log_dir, prediction_schema

    cfg = project.cfg
    shutil.rmtree(log_dir(cfg), ignore_errors=True)
    off = {"drifted_features": None, "live_metric_below": None, "every": None}
    monitor = monitor_of(serve={"rollout": {"mode": "shadow"}}, triggers=off)
    champion = str(Registry(cfg).champion().version)
    traffic = _traffic(cfg, project.normal, WINDOW, seed=51)
    _send(monitor, traffic.iloc[:100], "shadow-a")  # the window opens
    writers = {
        kind: LogWriter(log_dir(cfg), kind, schema, 10**6, "test")
        for kind, schema in (
            ("predictions", prediction_schema(cfg)),
            ("shadow", prediction_schema(cfg)),
            ("feedback", feedback_schema(cfg)),
        )
    }
    at, middle = datetime.now(UTC), float(traffic["prediction"].median())
    for i, row in enumerate(traffic.to_dict("records")):
        base = {"request_id": f"{i:032x}", "ts": at, "model_name": cfg.model_name, "customer_id": i}
        features = {f: row[f] for f in cfg.feature_dtypes()}
        label = int(row["prediction"] > middle)  # the champion ranks every case right
        writers["predictions"].append(
            [{**base, **features, "model_version": champion, "prediction": row["prediction"]}]
        )
        writers["shadow"].append([{**base, **features, "model_version": "99", "prediction": 1 - row["prediction"]}])
        writers["feedback"].append([{"request_id": base["request_id"], "ts": at, "customer_id": i, "label": label}])
    for w in writers.values():
        assert w.flush() == WINDOW
    _send(monitor, traffic.iloc[100:], "shadow-b")  # the window closes
    (window,) = read_windows(cfg)
    live, challenger = window["live"], window["challenger"]
    assert live["version"] == champion and live["labelled"] == WINDOW and live["value"] == 1.0
    assert challenger["version"] == "99" and challenger["labelled"] == WINDOW and challenger["value"] == 0.0
    page = Path(window["html"]).read_text()
    assert f"champion <code>v{champion}</code>: roc_auc 1" in page and "challenger <code>v99</code> (shadow" in page
    shutil.rmtree(log_dir(cfg), ignore_errors=True)


def test_closed_loop_drift_retrain_promote(project: Project) -> None:
    """The detached monitor actor takes profiles from a replica's profile sink; new drifted data
    arrives; drift is found; the retrain job trains on the newest data, passes the gate, and the
    new champion scores better on post-drift data than the one it replaced. (Last in the module:
    it replaces the project's data.)"""
    import ray

    from raylane.model import metrics
    from raylane.monitoring import start, stop
    from raylane.monitoring.sink import ProfileSink

    hour = project.cfg.monitor.model_copy(update={"cooldown": timedelta(hours=1)})
    cfg = project.cfg.model_copy(update={"monitor": hour})
    shutil.rmtree(monitor_dir(cfg), ignore_errors=True)
    registry = Registry(cfg)
    old = registry.champion()
    handle = start(cfg)
    try:
        sink = ProfileSink(cfg, "test-replica")
        # new data arrives: 30 more days, the drift begins on day 60
        write(replace(SIZES["tiny"], days=90, drift_start_day=DRIFT_DAY), cfg.data.sources[0].path.parent)
        ingest(cfg)
        FeatureRepo(cfg).materialize()
        online = FeatureRepo(cfg).online().get(project.drifted["customer_id"].tolist())
        latest = pd.DataFrame({f: online[f] for f in cfg.feature_dtypes()})
        traffic = _traffic(cfg, latest, 2 * WINDOW, seed=31)
        for i in range(0, len(traffic), 100):  # as a replica does: a profile per flush_rows rows
            assert sink.add(traffic.iloc[i : i + 100].to_dict("records"))
            assert sink.flush() == 100
        decision = _wait(
            lambda: [d for d in read_decisions(cfg) if d["action"] == "retrain"], 60, "a retrain decision"
        )[0]
        assert decision["window"] <= 2 and decision["status"] == "SUBMITTED"
        ended = _wait(
            lambda: [d for d in read_decisions(cfg) if d["action"] == "retrain_ended"], 400, "the retrain job"
        )[0]
        assert ended["status"] == "SUCCEEDED", ended
        assert ended["result"]["promoted"], ended
        new = registry.champion()
        assert new.version != old.version and ended["result"]["version"] == str(new.version)
        assert ray.get(handle.status.remote())["in_flight"] is None
    finally:
        stop(cfg)
    # better on post-drift data than the model it replaced
    frame = FeatureRepo(cfg).training_set().to_pandas()
    post = frame[pd.to_datetime(frame["label_timestamp"], utc=True) >= pd.Timestamp(day(DRIFT_DAY))]
    assert len(post) > 200
    y = post[cfg.data.labels.column].to_numpy()
    score = {
        v: metrics("binary", y, registry.load_bundle(v).predict(post[list(cfg.feature_dtypes())]))["roc_auc"]
        for v in (str(old.version), str(new.version))
    }
    assert score[str(new.version)] > score[str(old.version)], score
    assert registry.version(str(new.version)).tags.get("parent_version") == str(old.version)
