"""The monitor: one detached, named Ray actor per project, the only place retraining is decided.

It takes serialized whylogs profiles from the Serve replicas (`ingest`), stores each under the
storage root *before* it answers, merges them into windows (``monitor.window_rows`` rows or
``monitor.window_seconds``), and for each closed window writes a report (JSON and whylogs' HTML),
exports Ray metrics (Prometheus), and applies the retrain policy:

- triggers: at least ``triggers.drifted_features`` features drift against the champion's reference
  profile; the live metric is worse than ``triggers.live_metric_below``; ``triggers.every``
  elapsed (continuous training);
- a ``cooldown`` between two retrains, and at most one retrain in flight;
- a retrain is the allow-listed ``retrain`` job (Ray Job Submission); the monitor follows it and
  records how it ended and the model version it produced.

Every decision is appended to ``decisions.jsonl`` with its reason. State on disk, under
``<storage_root>/monitor/``::

    inbox/<profile id>.bin       profiles of the open window (stored before `ingest` answers)
    windows/<n>/                 a closed window: profile.bin, parts.json, report.json, report.html
                                 (self-contained), whylogs.html (whylogs' interactive page)
    decisions.jsonl              every policy decision
    state.json                   the retrain in flight, the last submission (for the cooldown)
    config.json                  the resolved project config (what the retrain job runs with)

The actor restarts on failure (``max_restarts=-1``) and rebuilds itself from these files: the
open window is the inbox, a profile id already stored is acknowledged again without counting.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from raylane.config import ProjectConfig

__all__ = [
    "Monitor",
    "monitor_dir",
    "monitor_handle",
    "monitor_name",
    "read_decisions",
    "read_windows",
    "start",
    "stop",
]

log = logging.getLogger(__name__)

TICK_S = 1.0
JOB_POLL_S = 5.0
_TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED", "LOST")


def monitor_name(cfg: ProjectConfig) -> str:
    return f"raylane-monitor-{cfg.project}"


def monitor_dir(cfg: ProjectConfig) -> Path:
    return cfg.storage_root / "monitor"


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(t: datetime | None) -> str | None:
    return t.isoformat(timespec="seconds") if t else None


def _write_atomic(path: Path, data: bytes) -> None:
    """Write through a temporary name, fsync, rename: a reader sees all of it or nothing."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _valid_id(profile_id: str) -> bool:
    return 0 < len(profile_id) <= 128 and all(c.isalnum() or c in "-_" for c in profile_id)


def read_windows(cfg: ProjectConfig, last: int | None = None) -> list[dict[str, Any]]:
    """The reports of closed windows, oldest first (the last ``last`` of them)."""
    folder = monitor_dir(cfg) / "windows"
    names = sorted(p.name for p in folder.glob("[0-9]*") if (p / "report.json").is_file()) if folder.is_dir() else []
    if last is not None:
        names = names[-last:] if last > 0 else []
    return [json.loads((folder / n / "report.json").read_text()) for n in names]


def read_decisions(cfg: ProjectConfig, last: int | None = None) -> list[dict[str, Any]]:
    path = monitor_dir(cfg) / "decisions.jsonl"
    if not path.is_file():
        return []
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return lines[-last:] if last else lines


class Monitor:
    """The monitor actor's class (wrapped by `ray.remote` in `start`; threaded, so its clock ticks
    beside the calls it serves)."""

    def __init__(self, config: dict[str, Any]) -> None:
        cfg = ProjectConfig.model_validate(config)
        stored = monitor_dir(cfg) / "config.json"  # the latest `configure` (Ray restarts with the first args)
        if stored.is_file():
            try:
                cfg = ProjectConfig.model_validate_json(stored.read_text())
            except ValueError as exc:
                log.warning("raylane monitor: ignoring %s (%s); using the config it started with", stored, exc)
        self._lock = threading.RLock()
        self._client: Any = None
        self._metrics = _Metrics(cfg.project)
        self._attach(cfg)
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick_loop, name="raylane-monitor-tick", daemon=True)
        self._ticker.start()

    # ----- state on disk

    def _attach(self, cfg: ProjectConfig) -> None:
        """Take ``cfg`` and the state under its storage root."""
        self.cfg = cfg
        self.dir = monitor_dir(cfg)
        self.inbox = self.dir / "inbox"
        self.windows = self.dir / "windows"
        for d in (self.inbox, self.windows, self.dir / "retrains"):
            d.mkdir(parents=True, exist_ok=True)
        self._reference: tuple[str | None, Any] = (None, None)
        self._client = None
        self._load_state()

    def _load_state(self) -> None:
        from whylogs.core import DatasetProfileView

        from raylane.monitoring.analysis import rows_of

        state_file = self.dir / "state.json"
        self.state: dict[str, Any] = json.loads(state_file.read_text()) if state_file.is_file() else {}
        self.state.setdefault("started_at", _iso(_now()))
        closed: set[str] = set()
        numbers = [int(p.name) for p in self.windows.glob("[0-9]*") if (p / "report.json").is_file()]
        for n in numbers:
            closed.update(json.loads((self.windows / f"{n:06d}" / "parts.json").read_text())["parts"])
        self.next_window = max(numbers, default=0) + 1
        self.seen_closed = closed
        self.open: dict[str, int] = {}  # the open window's profile ids and their rows
        self.merged: Any = None  # their merged profile (memory stays flat however many rows come)
        self.opened_at: datetime | None = None
        for path in sorted(self.inbox.glob("*.bin"), key=lambda p: p.stat().st_mtime):
            pid = path.stem
            if pid in closed:  # the window closed, the clean-up did not finish
                path.unlink()
                continue
            view = DatasetProfileView.deserialize(path.read_bytes())
            self.open[pid] = rows_of(view)
            self.merged = view if self.merged is None else self.merged.merge(view)
            at = datetime.fromtimestamp(path.stat().st_mtime, UTC)
            self.opened_at = min(self.opened_at or at, at)

    def _save_state(self) -> None:
        _write_atomic(self.dir / "state.json", json.dumps(self.state, indent=1).encode())

    def _record(self, decision: dict[str, Any]) -> dict[str, Any]:
        decision = {"at": _iso(_now()), **decision}
        with (self.dir / "decisions.jsonl").open("a") as f:
            f.write(json.dumps(decision) + "\n")
            f.flush()
            os.fsync(f.fileno())
        log.info("raylane monitor: %s", decision)
        return decision

    # ----- the calls

    def ingest(self, profile_id: str, blob: bytes) -> int:
        """Store a replica's profile, then count it in the open window; returns its rows (0 for a
        profile already received)."""
        from whylogs.core import DatasetProfileView

        from raylane.monitoring.analysis import rows_of

        if not _valid_id(profile_id):
            raise ValueError(f"profile id {profile_id[:40]!r} is not a raylane profile id")
        view = DatasetProfileView.deserialize(blob)  # protobuf: a bad blob raises, nothing runs
        rows = rows_of(view)
        with self._lock:
            if profile_id in self.open or profile_id in self.seen_closed:
                return 0
            _write_atomic(self.inbox / f"{profile_id}.bin", blob)
            self.open[profile_id] = rows
            self.merged = view if self.merged is None else self.merged.merge(view)
            self.opened_at = self.opened_at or _now()
            if self._window_due():
                self._close_window()
        return rows

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "project": self.cfg.project,
                "open_window": {
                    "number": self.next_window,
                    "rows": self.open_rows,
                    "profiles": len(self.open),
                    "opened_at": _iso(self.opened_at),
                },
                "in_flight": self.state.get("in_flight"),
                "last_submitted_at": self.state.get("last_submitted_at"),
                "reference_version": self._reference[0],
            }

    def close_window(self) -> dict[str, Any] | None:
        """Close the open window now (if it has rows); returns its report."""
        with self._lock:
            return self._close_window() if self.open else None

    def ping(self) -> bool:
        return True

    def configure(self, config: dict[str, Any]) -> None:
        """Take a new project config (a redeploy); stored, so a restart keeps it."""
        cfg = ProjectConfig.model_validate(config)
        with self._lock:
            if monitor_dir(cfg) != self.dir or not self.inbox.is_dir():
                self._attach(cfg)  # another storage root, or its state was removed: start from what is on disk
            self.cfg = cfg
            self._client = None
            _write_atomic(self.dir / "config.json", json.dumps(cfg.model_dump(mode="json"), indent=1).encode())

    def shutdown(self) -> None:
        self._stop.set()

    # ----- windows

    @property
    def open_rows(self) -> int:
        return sum(self.open.values())

    def _window_due(self) -> bool:
        m = self.cfg.monitor
        if not self.open:
            return False
        if m.window_rows is not None and self.open_rows >= m.window_rows:
            return True
        age = (_now() - self.opened_at).total_seconds() if self.opened_at else 0.0
        return m.window_seconds is not None and age >= m.window_seconds

    def reference(self) -> tuple[str | None, Any]:
        """The champion's version and its reference profile (reloaded when the alias moves)."""
        from mlflow.artifacts import download_artifacts
        from whylogs.core import DatasetProfileView

        from raylane.registry import Registry

        champion = Registry(self.cfg).champion()
        if champion is None:
            return None, None
        version = str(champion.version)
        if self._reference[0] != version:
            with tempfile.TemporaryDirectory(prefix="raylane-ref-") as tmp:
                local = download_artifacts(
                    run_id=champion.run_id,
                    artifact_path="monitoring/reference_profile.bin",
                    dst_path=tmp,
                    tracking_uri=self.cfg.mlflow_tracking_uri,
                )
                self._reference = (version, DatasetProfileView.deserialize(Path(local).read_bytes()))
        return self._reference

    def _close_window(self) -> dict[str, Any]:
        from raylane.monitoring.analysis import (
            analyse,
            live_metric,
            render_html,
            window_predictions,
            write_whylogs_html,
        )

        number = self.next_window
        parts, merged = dict(self.open), self.merged
        opened, closed = self.opened_at or _now(), _now()
        try:
            version, reference = self.reference()
        except Exception as exc:  # the registry is down: report the window without drift
            log.warning("raylane monitor: cannot load the champion's reference profile: %s", exc)
            version, reference = None, None
        analysis = analyse(self.cfg, merged, reference, version)
        try:
            analysis.live = live_metric(self.cfg, window_predictions(self.cfg, opened, closed))
        except Exception as exc:
            log.warning("raylane monitor: no live metric for window %d: %s", number, exc)
        decision = self._decide(number, analysis)
        folder = self.windows / f"{number:06d}"
        tmp = self.windows / f".{number:06d}.tmp"
        if tmp.exists():
            for p in tmp.iterdir():
                p.unlink()
        tmp.mkdir(exist_ok=True)
        (tmp / "profile.bin").write_bytes(merged.serialize())
        (tmp / "parts.json").write_text(json.dumps({"parts": sorted(parts)}))
        whylogs_html = None
        try:
            whylogs_html = write_whylogs_html(merged, reference, tmp / "whylogs.html")
        except Exception as exc:  # an extra view; the window's numbers stand without it
            log.warning("raylane monitor: no whylogs HTML page for window %d: %s", number, exc)
        report = {
            "window": number,
            "project": self.cfg.project,
            "opened_at": _iso(opened),
            "closed_at": _iso(closed),
            "profiles": len(parts),
            **analysis.to_dict(),
            "decision": decision,
            "html": str(folder / "report.html"),
            "whylogs_html": str(folder / "whylogs.html") if whylogs_html else None,
        }
        (tmp / "report.json").write_text(json.dumps(report, indent=1, default=str))
        (tmp / "report.html").write_text(render_html(report), encoding="utf-8")
        os.replace(tmp, folder)
        for pid in parts:
            with contextlib.suppress(FileNotFoundError):
                (self.inbox / f"{pid}.bin").unlink()
        self.seen_closed.update(parts)
        self.open, self.merged, self.opened_at, self.next_window = {}, None, None, number + 1
        self._metrics.window(analysis)
        return report

    # ----- the policy

    def _triggers(self, analysis: Any | None) -> list[str]:
        t = self.cfg.monitor.triggers
        reasons = []
        if analysis is not None:
            drifted = analysis.drifted_features
            if t.drifted_features is not None and len(drifted) >= t.drifted_features:
                reasons.append(f"drift: {len(drifted)} features drifted ({', '.join(drifted)})")
            live = analysis.live
            if live is not None and live.breached:
                reasons.append(f"decay: live {live.metric} {live.value:.4f} worse than {live.worse_than}")
        if t.every is not None:
            since = datetime.fromisoformat(self.state.get("last_submitted_at") or self.state["started_at"])
            if _now() - since >= t.every:
                reasons.append(f"schedule: every {t.every}")
        return reasons

    def _cooldown_end(self) -> datetime | None:
        """When the cooldown after the last submission ends; None when it is over."""
        last = self.state.get("last_submitted_at")
        end = datetime.fromisoformat(last) + self.cfg.monitor.cooldown if last else None
        return end if end and _now() < end else None

    def _decide(self, window: int | None, analysis: Any | None) -> dict[str, Any]:
        """Apply the policy; submits a retrain when a trigger fires outside the cooldown."""
        reasons = self._triggers(analysis)
        if not reasons:
            return {"action": "none"}
        decision: dict[str, Any] = {"window": window, "reasons": reasons}
        in_flight = self.state.get("in_flight")
        cooldown_end = self._cooldown_end()
        if in_flight:
            decision |= {"action": "skipped", "why": f"retrain job {in_flight['job_id']} is still running"}
        elif cooldown_end:
            decision |= {"action": "skipped", "why": f"cooldown until {_iso(cooldown_end)}"}
        else:
            decision |= self._submit(reasons)
        return self._record(decision)

    def _schedule_due(self) -> bool:
        """The ``every`` trigger fired and a retrain could start now (no skip recorded each tick)."""
        if self.cfg.monitor.triggers.every is None or self.state.get("in_flight") or self._cooldown_end():
            return False
        return any(r.startswith("schedule:") for r in self._triggers(None))

    def _submit(self, reasons: list[str]) -> dict[str, Any]:
        from raylane import jobs

        config_file = self.dir / "config.json"
        _write_atomic(config_file, json.dumps(self.cfg.model_dump(mode="json"), indent=1).encode())
        now = _now()
        job_id = f"raylane-retrain-{self.cfg.project}-{now.strftime('%Y%m%dT%H%M%S')}-{os.urandom(2).hex()}"
        result_file = self.dir / "retrains" / f"{job_id}.json"
        # Saved before the submission: a monitor that dies in between finds the id unknown (LOST)
        # instead of forgetting a job that runs.
        self.state["last_submitted_at"] = _iso(now)
        self.state["in_flight"] = {"job_id": job_id, "submitted_at": _iso(now), "reasons": reasons}
        self._save_state()
        try:
            jobs.submit(
                "retrain",
                config_file,
                extra=["--reason", "; ".join(reasons), "--result", str(result_file)],
                address=self.cfg.monitor.job_address,
                submission_id=job_id,
                metadata={"raylane.project": self.cfg.project},
            )
        except Exception as exc:
            self.state["in_flight"] = None  # a failed submission counts for the cooldown: no retry storm
            self._save_state()
            self._metrics.retrain("submit_failed")
            return {"action": "retrain", "job_id": None, "status": "SUBMIT_FAILED", "error": str(exc)[:500]}
        self._metrics.retrain("submitted")
        return {"action": "retrain", "job_id": job_id, "status": "SUBMITTED"}

    def _job_client(self) -> Any:
        from raylane import jobs

        if self._client is None:
            self._client = jobs.client(self.cfg.monitor.job_address)
        return self._client

    def _follow_job(self) -> None:
        """Record how the retrain in flight ended, and the version it produced. The job API is
        asked outside the lock: windows keep closing while it answers."""
        with self._lock:
            in_flight = self.state.get("in_flight")
        if not in_flight:
            return
        job_id = in_flight["job_id"]
        outcome: dict[str, Any] = {"action": "retrain_ended", "job_id": job_id}
        try:
            client = self._job_client()
            status = str(client.get_job_status(job_id).value)
        except RuntimeError as exc:  # the job API answered: it has no such job
            if "does not exist" not in str(exc):
                self._client = None
                raise
            status, outcome["why"] = "LOST", "the job API does not know this job (the monitor stopped mid-submission?)"
        except Exception:
            self._client = None  # the job API is unreachable: ask again next time
            raise
        if status not in _TERMINAL:
            return
        outcome["status"] = status
        result_file = self.dir / "retrains" / f"{job_id}.json"
        if result_file.is_file():
            outcome["result"] = json.loads(result_file.read_text())
        if status not in ("SUCCEEDED", "LOST"):
            with contextlib.suppress(Exception):
                outcome["log_tail"] = client.get_job_logs(job_id).splitlines()[-15:]
        with self._lock:
            if (self.state.get("in_flight") or {}).get("job_id") != job_id:
                return
            self.state["in_flight"] = None
            self._save_state()
            self._metrics.retrain(status.lower())
            self._record(outcome)

    def _tick_loop(self) -> None:
        next_poll = 0.0
        while not self._stop.wait(TICK_S):
            try:
                with self._lock:
                    if self._window_due():
                        self._close_window()
                if time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + JOB_POLL_S
                    self._follow_job()
                with self._lock:
                    if self._schedule_due():
                        self._decide(None, None)
            except Exception:
                log.exception("raylane monitor: tick failed")


class _Metrics:
    """Ray metrics (scraped as Prometheus from each node's metrics agent)."""

    def __init__(self, project: str) -> None:
        from ray.util.metrics import Counter, Gauge

        tags = ("project",)
        self.project = project
        self.drift = Gauge("raylane_drift_score", "Drift p-value or distance per column.", tag_keys=(*tags, "column"))
        self.drifted = Gauge("raylane_drifted_features", "Features that drifted in the last window.", tag_keys=tags)
        self.rows = Gauge("raylane_window_rows", "Rows in the last closed window.", tag_keys=tags)
        self.live = Gauge("raylane_live_metric", "The gate's metric on labelled live predictions.", tag_keys=tags)
        self.windows = Counter("raylane_windows_total", "Windows closed.", tag_keys=tags)
        self.retrains = Counter("raylane_retrains_total", "Retrain jobs, by outcome.", tag_keys=(*tags, "outcome"))

    def window(self, analysis: Any) -> None:
        tags = {"project": self.project}
        self.rows.set(analysis.rows, tags)
        self.windows.inc(1, tags)
        self.drifted.set(len(analysis.drifted_features), tags)
        for d in analysis.drift:
            value = d.pvalue if d.pvalue is not None else d.statistic
            if value is not None:
                self.drift.set(value, {**tags, "column": d.column})
        if analysis.live is not None and analysis.live.value is not None:
            self.live.set(analysis.live.value, tags)

    def retrain(self, outcome: str) -> None:
        self.retrains.inc(1, {"project": self.project, "outcome": outcome})


# --------------------------------------------------------------------------- from drivers


def monitor_handle(cfg: ProjectConfig) -> Any:
    """The running monitor of ``cfg``'s project (raises ValueError when none runs)."""
    import ray

    return ray.get_actor(monitor_name(cfg), namespace=cfg.backends.ray.namespace)


def start(cfg: ProjectConfig, *, timeout_s: float = 60.0) -> Any:
    """Start the project's monitor, or return the one that runs. Needs Ray."""
    import ray

    actor = ray.remote(Monitor).options(
        name=monitor_name(cfg),
        namespace=cfg.backends.ray.namespace,
        lifetime="detached",
        get_if_exists=True,
        max_restarts=-1,
        max_task_retries=-1,
        max_concurrency=8,
        num_cpus=0,
    )
    config = cfg.model_dump(mode="json")
    if cfg.monitor.job_address is None:  # resolved here: a worker only knows Ray's default address
        from raylane import jobs
        from raylane.errors import ClusterError

        with contextlib.suppress(ClusterError):
            config["monitor"]["job_address"] = jobs.dashboard_address()
    handle = actor.remote(config)
    ray.get(handle.configure.remote(config), timeout=timeout_s)  # type: ignore[attr-defined]
    return handle


def stop(cfg: ProjectConfig) -> bool:
    """Stop the project's monitor (its state stays on disk); false when none ran."""
    import ray

    try:
        handle = monitor_handle(cfg)
    except ValueError:
        return False
    with contextlib.suppress(Exception):
        ray.get(handle.shutdown.remote(), timeout=10)
    ray.kill(handle, no_restart=True)
    return True
