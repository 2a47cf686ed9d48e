"""The monitor: one detached, named Ray actor per project, the only place retraining is decided.

It takes serialized whylogs profiles from the Serve replicas (`ingest`), stores each under the
storage root *before* it answers, merges them into windows (``monitor.window_rows`` rows or
``monitor.window_seconds``); a batch scoring run's profile is a window of its own
(`report_batch`, ``source: batch``); and for each closed window writes a report (JSON and HTML), exports
Ray metrics (Prometheus), and applies the retrain policy; a retrain is the allow-listed
``retrain`` job, which the monitor follows to record how it ended and the version it produced.

This class wires the rooms that do each part: `store` (the files, ``<storage_root>/monitor/``),
`analysis` (drift, quality, live metric), `report` (the pages), `policy` (the pure rules:
triggers, cooldown, one retrain in flight), `retrains` (the job) and `metrics`. Starting and
finding the actor is `control`'s.

The actor restarts on failure (``max_restarts=-1``) and rebuilds itself from its files: the open
window is the inbox, a profile id already stored is acknowledged again without counting.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from raylane.config import ProjectConfig
from raylane.monitoring import policy
from raylane.monitoring.analysis import WindowAnalysis
from raylane.monitoring.metrics import MonitorMetrics
from raylane.monitoring.retrains import RetrainJobs, new_job_id
from raylane.monitoring.store import MonitorStore, iso, monitor_dir, now, valid_profile_id

__all__ = ["Monitor"]

log = logging.getLogger(__name__)

TICK_S = 1.0
JOB_POLL_S = 5.0
JUDGE_S = 2.0  # a canary is judged at most this often (it reads its rollout's log)
REJUDGE_S = 60.0  # a canary with no new evidence is judged again this often (its max_step_s clock)


class Monitor:
    """The monitor actor's class (wrapped by `ray.remote` in `control.start`; threaded, so its
    clock ticks beside the calls it serves)."""

    def __init__(self, config: dict[str, Any]) -> None:
        cfg = ProjectConfig.model_validate(config)
        stored = MonitorStore(cfg)
        try:  # the latest `configure` (Ray restarts an actor with the args it was created with)
            cfg = stored.load_config() or cfg
        except ValueError as exc:
            log.warning("raylane monitor: ignoring %s (%s); using the config it started with", stored.config_file, exc)
        self._lock = threading.RLock()
        self._jobs = RetrainJobs()
        self._metrics = MonitorMetrics(cfg.project)
        self._registry_of: Any = None
        self.rollout_verdict: dict[str, Any] | None = None  # the canary's latest judgement (status)
        self._judged: tuple[Any, float] = (None, 0.0)  # what it was judged on, and until when that holds
        self._attach(cfg)
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick_loop, name="raylane-monitor-tick", daemon=True)
        self._ticker.start()

    # ----- state on disk

    def _attach(self, cfg: ProjectConfig) -> None:
        """Take ``cfg`` and the state under its storage root."""
        self.cfg = cfg
        self.store = MonitorStore(cfg)
        self.dir = self.store.dir
        self.store.create()
        self._reference: tuple[str | None, Any] = (None, None)
        self._jobs.reset()
        self._load_state()

    def _load_state(self) -> None:
        from whylogs.core import DatasetProfileView

        from raylane.monitoring.analysis import rows_of

        self.state: dict[str, Any] = self.store.load_state()
        self.state.setdefault("started_at", iso(now()))
        numbers = self.store.window_numbers()
        closed = {pid for n in numbers for pid in self.store.window_parts(n)}
        self.next_window = max(numbers, default=0) + 1
        self.seen_closed = closed
        self.open: dict[str, int] = {}  # the open window's profile ids and their rows
        self.merged: Any = None  # their merged profile (memory stays flat however many rows come)
        self.opened_at: datetime | None = None
        for path in self.store.inbox_profiles():
            pid = path.stem
            if pid in closed:  # the window closed, the clean-up did not finish
                path.unlink()
                continue
            view = DatasetProfileView.deserialize(path.read_bytes())
            self.open[pid] = rows_of(view)
            self.merged = view if self.merged is None else self.merged.merge(view)
            at = datetime.fromtimestamp(path.stat().st_mtime, UTC)
            self.opened_at = min(self.opened_at or at, at)

    def _record(self, decision: dict[str, Any]) -> dict[str, Any]:
        decision = {"at": iso(now()), **decision}
        self.store.append_decision(decision)
        log.info("raylane monitor: %s", decision)
        return decision

    # ----- the calls

    def ingest(self, profile_id: str, blob: bytes) -> int:
        """Store a replica's profile, then count it in the open window; returns its rows (0 for a
        profile already received)."""
        from whylogs.core import DatasetProfileView

        from raylane.monitoring.analysis import rows_of

        if not valid_profile_id(profile_id):
            raise ValueError(f"profile id {profile_id[:40]!r} is not a raylane profile id")
        view = DatasetProfileView.deserialize(blob)  # protobuf: a bad blob raises, nothing runs
        rows = rows_of(view)
        with self._lock:
            if profile_id in self.open or profile_id in self.seen_closed:
                return 0
            self.store.store_profile(profile_id, blob)
            self.open[profile_id] = rows
            self.merged = view if self.merged is None else self.merged.merge(view)
            self.opened_at = self.opened_at or now()
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
                    "opened_at": iso(self.opened_at),
                },
                "in_flight": self.state.get("in_flight"),
                "last_submitted_at": self.state.get("last_submitted_at"),
                "reference_version": self._reference[0],
                "rollout": self.rollout_verdict,
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
            if monitor_dir(cfg) != self.dir or not self.store.has_run():
                self._attach(cfg)  # another storage root, or its state was removed: start from what is on disk
            self.cfg = cfg
            self._jobs.reset()
            self.store.save_config(cfg)

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
        age = (now() - self.opened_at).total_seconds() if self.opened_at else 0.0
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

    def _analyse(
        self, number: int, merged: Any, opened: datetime, closed: datetime, *, live: bool = True
    ) -> tuple[WindowAnalysis, Any]:
        """The window's analysis, and the reference profile it was compared with (None without a
        champion); ``live``: with the live metric from the inference log (a batch has no labels)."""
        from raylane.monitoring.analysis import analyse, live_metric, window_predictions

        try:
            version, reference = self.reference()
        except Exception as exc:  # the registry is down: report the window without drift
            log.warning("raylane monitor: cannot load the champion's reference profile: %s", exc)
            version, reference = None, None
        analysis = analyse(self.cfg, merged, reference, version)
        try:
            if live:
                served = window_predictions(self.cfg, opened, closed)
                ours, source = window_predictions(self.cfg, opened, closed, "shadow"), "shadow"
                rollout = self._registry().current_rollout()
                if rollout is not None and rollout.mode == "canary" and len(served):  # its own share
                    mine = served["model_version"].astype(str) == rollout.challenger
                    served, ours, source = served[~mine], served[mine], "canary"
                analysis.live = live_metric(self.cfg, served)
                if len(ours):  # judged like the champion; its floor is the champion's trigger only
                    theirs = replace(live_metric(self.cfg, ours), worse_than=None, breached=False, source=source)
                    analysis.challenger = theirs
        except Exception as exc:
            log.warning("raylane monitor: no live metric for window %d: %s", number, exc)
        return analysis, reference

    def _close_window(self) -> dict[str, Any]:
        parts, merged, opened = list(self.open), self.merged, self.opened_at or now()
        report = self._write_window(self.next_window, parts, merged, opened, now(), {"source": "live"})
        self.open, self.merged, self.opened_at = {}, None, None
        return report

    def report_batch(self, profile_id: str, blob: bytes, meta: dict[str, Any]) -> dict[str, Any] | None:
        """A batch scoring run's profile (`raylane predict`) as a window of its own, closed at once
        (``source: batch``) and decided on like live traffic; the live window stays open. Returns
        its report, or None for a profile already reported (a retried call counts once)."""
        from whylogs.core import DatasetProfileView

        if not valid_profile_id(profile_id):
            raise ValueError(f"profile id {profile_id[:40]!r} is not a raylane profile id")
        view = DatasetProfileView.deserialize(blob)
        started = datetime.fromisoformat(str(meta.get("started_at") or iso(now())))
        with self._lock:
            if profile_id in self.seen_closed or profile_id in self.open:
                return None
            extra = {"source": "batch", "batch": dict(meta)}
            return self._write_window(self.next_window, [profile_id], view, started, now(), extra)

    def _write_window(
        self, number: int, parts: list[str], merged: Any, opened: datetime, closed: datetime, extra: dict[str, Any]
    ) -> dict[str, Any]:
        """Analyse, decide on and write window ``number`` (its report, pages and merged profile)."""
        from raylane.monitoring.report import render_html, write_whylogs_html

        analysis, reference = self._analyse(number, merged, opened, closed, live=extra["source"] == "live")
        decision = self._decide(number, analysis)
        folder = self.store.window_folder(number)
        staged = self.store.begin_window(number)
        whylogs_html = None
        try:
            whylogs_html = write_whylogs_html(merged, reference, staged / "whylogs.html")
        except Exception as exc:  # an extra view; the window's numbers stand without it
            log.warning("raylane monitor: no whylogs HTML page for window %d: %s", number, exc)
        report = {
            "window": number,
            "project": self.cfg.project,
            "opened_at": iso(opened),
            "closed_at": iso(closed),
            "profiles": len(parts),
            **extra,
            **analysis.to_dict(),
            "decision": decision,
            "html": str(folder / "report.html"),
            "whylogs_html": str(folder / "whylogs.html") if whylogs_html else None,
        }
        self.store.commit_window(
            number, staged, profile=merged.serialize(), parts=parts, report=report, html=render_html(report)
        )
        self.seen_closed.update(parts)
        self.next_window = number + 1
        self._metrics.window(analysis)
        return report

    # ----- the policy

    def _policy_state(self) -> policy.PolicyState:
        last = self.state.get("last_submitted_at")
        return policy.PolicyState(
            started_at=datetime.fromisoformat(self.state["started_at"]),
            last_submitted_at=datetime.fromisoformat(last) if last else None,
            in_flight=(self.state.get("in_flight") or {}).get("job_id"),
        )

    def _decide(self, window: int | None, analysis: WindowAnalysis | None) -> dict[str, Any]:
        """Apply the policy; submits a retrain when a trigger fires outside the cooldown."""
        verdict = policy.decide(self.cfg.monitor, analysis, self._policy_state(), now())
        if verdict.action == "none":
            return {"action": "none"}
        decision: dict[str, Any] = {"window": window, "reasons": verdict.reasons}
        if verdict.action == "skipped":
            decision |= {"action": "skipped", "why": verdict.why}
        else:
            decision |= self._submit(verdict.reasons)
        return self._record(decision)

    def _submit(self, reasons: list[str]) -> dict[str, Any]:
        config_file = self.store.save_config(self.cfg)
        at = now()
        job_id = new_job_id(self.cfg.project, at)
        # Saved before the submission: a monitor that dies in between finds the id unknown (LOST)
        # instead of forgetting a job that runs.
        self.state["last_submitted_at"] = iso(at)
        self.state["in_flight"] = {"job_id": job_id, "submitted_at": iso(at), "reasons": reasons}
        self.store.save_state(self.state)
        try:
            RetrainJobs.submit(
                address=self.cfg.monitor.job_address,
                project=self.cfg.project,
                job_id=job_id,
                config_file=config_file,
                reasons=reasons,
                result_file=self.store.retrain_result_file(job_id),
            )
        except Exception as exc:
            self.state["in_flight"] = None  # a failed submission counts for the cooldown: no retry storm
            self.store.save_state(self.state)
            self._metrics.retrain("submit_failed")
            return {"action": "retrain", "job_id": None, "status": "SUBMIT_FAILED", "error": str(exc)[:500]}
        self._metrics.retrain("submitted")
        return {"action": "retrain", "job_id": job_id, "status": "SUBMITTED"}

    def _follow_job(self) -> None:
        """Record how the retrain in flight ended, and the version it produced. The job API is
        asked outside the lock: windows keep closing while it answers."""
        with self._lock:
            in_flight = self.state.get("in_flight")
        if not in_flight:
            return
        job_id = in_flight["job_id"]
        outcome = self._jobs.ended(self.cfg.monitor.job_address, job_id, self.store)
        if outcome is None:
            return
        with self._lock:
            if (self.state.get("in_flight") or {}).get("job_id") != job_id:
                return
            self.state["in_flight"] = None
            self.store.save_state(self.state)
            self._metrics.retrain(str(outcome["status"]).lower())
            self._record(outcome)

    # ----- the canary

    def _registry(self) -> Any:
        from raylane.registry import Registry

        if self._registry_of is None or self._registry_of.cfg is not self.cfg:
            self._registry_of = Registry(self.cfg)
        return self._registry_of

    def _judge_rollout(self) -> dict[str, Any] | None:
        """Judge a canary's step on the inference log (`raylane.monitoring.canary`) and apply the
        verdict: the registry moves first (it is the rollout's state: a monitor restarted after
        this continues from the new step), then the decision is recorded with its evidence."""
        from raylane.inference_log import read, read_failures
        from raylane.monitoring.canary import judge

        registry = self._registry()
        rollout = registry.current_rollout()
        if rollout is None or rollout.mode != "canary":
            if self.rollout_verdict is not None:
                self.rollout_verdict = None
                self.store.save_judgement(None)
            return None
        served, failures = read(self.cfg, since=rollout.since), read_failures(self.cfg, since=rollout.since)
        seen = (rollout, len(served), int(served["label"].notna().sum()), len(failures))
        if seen == self._judged[0] and time.monotonic() < self._judged[1]:  # no new evidence: the same verdict
            return None
        self._judged = (seen, time.monotonic() + REJUDGE_S)  # judged again without news: max_step_s
        verdict = judge(self.cfg, rollout, served, failures, now())
        self.rollout_verdict = {"at": iso(now()), "action": verdict.action, "reason": verdict.reason}
        self.rollout_verdict["evidence"] = verdict.evidence
        self.store.save_judgement(self.rollout_verdict)
        if verdict.action == "wait" or registry.current_rollout() != rollout:  # moved meanwhile: judged anew
            return None
        if verdict.action == "advance":
            registry.advance_rollout(rollout, rollout.step + 1)
        else:
            registry.end_rollout(verdict.action, f"by the monitor: {verdict.reason}")
        self._metrics.rollout(verdict.action)
        with self._lock:
            return self._record(
                {"action": "rollout", "verdict": verdict.action, "version": rollout.challenger}
                | {"reasons": [verdict.reason], "evidence": verdict.evidence}
            )

    def _tick_loop(self) -> None:
        next_poll = next_judgement = 0.0
        while not self._stop.wait(TICK_S):
            try:
                with self._lock:
                    if self._window_due():
                        self._close_window()
                if time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + JOB_POLL_S
                    self._follow_job()
                if time.monotonic() >= next_judgement:  # replicas follow a step every model_poll_s
                    next_judgement = time.monotonic() + max(self.cfg.serve.model_poll_s, JUDGE_S)
                    self._judge_rollout()
                with self._lock:
                    if policy.schedule_due(self.cfg.monitor, self._policy_state(), now()):
                        self._decide(None, None)
            except Exception:
                log.exception("raylane monitor: tick failed")
