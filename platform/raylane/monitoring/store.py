"""The monitor's state on disk: where each file lives, how it is written, and typed readers of it.

The monitor actor is the only writer; the CLI, the demo and the tests read through `MonitorStore`
(typed records) or `read_windows` / `read_decisions` (the JSON as it is on disk). Layout, under
``<storage_root>/monitor/``::

    inbox/<profile id>.bin       profiles of the open window (stored before `ingest` answers)
    windows/<n>/                 a closed window: profile.bin, parts.json, report.json, report.html
                                 (self-contained), whylogs.html (whylogs' interactive page)
    retrains/<job id>.json       what a retrain job produced (written by the job)
    decisions.jsonl              every policy decision
    state.json                   the retrain in flight, the last submission (for the cooldown)
    config.json                  the resolved project config (what the retrain job runs with)

Every file but the decision log is written whole under a temporary name and renamed (a window's
folder too), so a reader sees all of a file or none of it; the decision log is appended and fsynced.
Nothing here knows whylogs or Ray: profiles are bytes.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from raylane.config import ProjectConfig
from raylane.monitoring.analysis import ColumnDrift, LiveMetric

__all__ = [
    "DecisionRecord",
    "InFlight",
    "MonitorState",
    "MonitorStore",
    "QualityCheck",
    "WindowRecord",
    "iso",
    "monitor_dir",
    "now",
    "read_decisions",
    "read_windows",
    "valid_profile_id",
    "write_atomic",
]


def monitor_dir(cfg: ProjectConfig) -> Path:
    return cfg.storage_root / "monitor"


def now() -> datetime:
    return datetime.now(UTC)


def iso(t: datetime | None) -> str | None:
    """The form every time in the monitor's files takes (UTC, to the second)."""
    return t.isoformat(timespec="seconds") if t else None


def write_atomic(path: Path, data: bytes) -> None:
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


def valid_profile_id(profile_id: str) -> bool:
    """A profile id names a file in the inbox: letters, digits, '-' and '_' only."""
    return 0 < len(profile_id) <= 128 and all(c.isalnum() or c in "-_" for c in profile_id)


# --------------------------------------------------------------------------- typed records


@dataclass(frozen=True)
class QualityCheck:
    name: str
    passed: bool
    summary: Any = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> QualityCheck:
        return cls(name=str(d["name"]), passed=bool(d["passed"]), summary=d.get("summary"))


@dataclass(frozen=True)
class DecisionRecord:
    """One policy decision: ``none`` (in a window's report only), ``retrain`` (submitted, or
    ``SUBMIT_FAILED``), ``skipped`` (``why``: in flight or cooldown), ``retrain_ended`` (``status``
    is a `raylane.jobs.ENDED` status; ``result`` is what the job wrote) or ``rollout`` (a canary's
    step judged: ``verdict``, the challenger ``version``, the ``evidence``)."""

    action: str
    at: str | None = None
    window: int | None = None
    reasons: list[str] = field(default_factory=list)
    why: str | None = None
    job_id: str | None = None
    status: str | None = None
    error: str | None = None
    result: dict[str, Any] | None = None
    log_tail: list[str] | None = None
    verdict: str | None = None  # ``rollout``: advance, promote or abort
    version: str | None = None  # ``rollout``: the challenger judged
    evidence: dict[str, Any] | None = None  # ``rollout``: counts, both metrics, the interval, the guard

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DecisionRecord:
        return cls(
            action=str(d.get("action", "none")),
            at=d.get("at"),
            window=d.get("window"),
            reasons=list(d.get("reasons") or []),
            why=d.get("why"),
            job_id=d.get("job_id"),
            status=d.get("status"),
            error=d.get("error"),
            result=d.get("result"),
            log_tail=d.get("log_tail"),
            verdict=d.get("verdict"),
            version=d.get("version"),
            evidence=d.get("evidence"),
        )

    def text(self) -> str:
        """One line for people: what was decided and why."""
        reasons = "; ".join(self.reasons)
        if self.action == "retrain_ended":
            res = self.result or {}
            promoted = "promoted" if res.get("promoted") else "not promoted"
            made = f": version {res.get('version')} {promoted}" if res else ""
            return f"retrain job {self.job_id} {self.status}{made}"
        if self.action == "retrain":
            return f"retrain submitted as job {self.job_id} ({self.status}) — {reasons}"
        if self.action == "skipped":
            return f"trigger skipped ({self.why}) — {reasons}"
        if self.action == "rollout":
            return f"canary of version {self.version}: {self.verdict} — {reasons}"
        return self.action


@dataclass(frozen=True)
class WindowRecord:
    """A closed window's report (``windows/<n>/report.json``)."""

    window: int
    project: str
    opened_at: str
    closed_at: str
    profiles: int
    rows: int
    reference_version: str | None
    drift: list[ColumnDrift]
    quality: list[QualityCheck]
    live: LiveMetric | None
    drifted_features: list[str]
    prediction_drifted: bool
    failed_checks: list[str]
    decision: DecisionRecord
    html: str | None = None
    whylogs_html: str | None = None
    source: str = "live"  # live traffic, or a batch scoring run (`raylane predict`)
    batch: dict[str, Any] | None = None  # the batch run's summary
    authenticated_rows: int = 0  # rows of requests that carried the API key
    challenger: LiveMetric | None = None  # shadow rollout: the challenger's live metric

    @property
    def authenticated_share(self) -> float:
        return self.authenticated_rows / self.rows if self.rows else 0.0

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> WindowRecord:
        live = d.get("live")
        return cls(
            window=int(d["window"]),
            project=str(d["project"]),
            opened_at=str(d["opened_at"]),
            closed_at=str(d["closed_at"]),
            profiles=int(d["profiles"]),
            rows=int(d["rows"]),
            reference_version=d.get("reference_version"),
            drift=[ColumnDrift(**c) for c in d.get("drift", [])],
            quality=[QualityCheck.from_json(q) for q in d.get("quality", [])],
            live=LiveMetric(**live) if live else None,
            drifted_features=list(d.get("drifted_features", [])),
            prediction_drifted=bool(d.get("prediction_drifted", False)),
            failed_checks=list(d.get("failed_checks", [])),
            decision=DecisionRecord.from_json(d.get("decision") or {}),
            html=d.get("html"),
            whylogs_html=d.get("whylogs_html"),
            source=str(d.get("source", "live")),
            batch=d.get("batch"),
            authenticated_rows=int(d.get("authenticated_rows", 0)),
            challenger=LiveMetric(**d["challenger"]) if d.get("challenger") else None,
        )


@dataclass(frozen=True)
class InFlight:
    """The retrain job the monitor submitted and has not seen end."""

    job_id: str
    submitted_at: str | None = None
    reasons: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> InFlight:
        return cls(job_id=str(d["job_id"]), submitted_at=d.get("submitted_at"), reasons=list(d.get("reasons") or []))


@dataclass(frozen=True)
class MonitorState:
    """``state.json``: when the monitor first started, its last submission, the job in flight."""

    started_at: str | None = None
    last_submitted_at: str | None = None
    in_flight: InFlight | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> MonitorState:
        job = d.get("in_flight")
        return cls(
            started_at=d.get("started_at"),
            last_submitted_at=d.get("last_submitted_at"),
            in_flight=InFlight.from_json(job) if job else None,
        )


# --------------------------------------------------------------------------- the store


class MonitorStore:
    """The files under ``<storage_root>/monitor/`` of one project: the actor's writers, everyone's readers."""

    def __init__(self, cfg: ProjectConfig) -> None:
        self.dir = monitor_dir(cfg)
        self.inbox = self.dir / "inbox"
        self.windows_dir = self.dir / "windows"
        self.retrains_dir = self.dir / "retrains"
        self.state_file = self.dir / "state.json"
        self.decisions_file = self.dir / "decisions.jsonl"
        self.config_file = self.dir / "config.json"
        self.judgement_file = self.dir / "rollout.json"  # the canary's latest judgement

    # ----- readers

    def has_run(self) -> bool:
        """Whether a monitor ever ran on this storage root (it made its inbox)."""
        return self.inbox.is_dir()

    def window_numbers(self) -> list[int]:
        """The closed windows, oldest first (a folder counts once its report is in it)."""
        if not self.windows_dir.is_dir():
            return []
        return sorted(int(p.name) for p in self.windows_dir.glob("[0-9]*") if (p / "report.json").is_file())

    def window_folder(self, number: int) -> Path:
        return self.windows_dir / f"{number:06d}"

    def window_reports(self, last: int | None = None) -> list[dict[str, Any]]:
        """The closed windows' reports as JSON, oldest first (the last ``last`` of them)."""
        numbers = self.window_numbers()
        if last is not None:
            numbers = numbers[-last:] if last > 0 else []
        return [json.loads((self.window_folder(n) / "report.json").read_text()) for n in numbers]

    def windows(self, last: int | None = None) -> list[WindowRecord]:
        return [WindowRecord.from_json(r) for r in self.window_reports(last)]

    def window(self, number: int) -> WindowRecord | None:
        report = self.window_folder(number) / "report.json"
        return WindowRecord.from_json(json.loads(report.read_text())) if report.is_file() else None

    def window_parts(self, number: int) -> list[str]:
        """The profile ids a closed window merged."""
        return list(json.loads((self.window_folder(number) / "parts.json").read_text())["parts"])

    def decision_log(self, last: int | None = None) -> list[dict[str, Any]]:
        """The decisions as JSON, oldest first (the last ``last``; every one for 0 or None)."""
        if not self.decisions_file.is_file():
            return []
        lines = [json.loads(line) for line in self.decisions_file.read_text().splitlines() if line.strip()]
        return lines[-last:] if last else lines

    def decisions(self, last: int | None = None) -> list[DecisionRecord]:
        return [DecisionRecord.from_json(d) for d in self.decision_log(last)]

    def load_state(self) -> dict[str, Any]:
        """``state.json`` as the actor keeps it (a dict; {} before the first save)."""
        return dict(json.loads(self.state_file.read_text())) if self.state_file.is_file() else {}

    def state(self) -> MonitorState:
        return MonitorState.from_json(self.load_state())

    def in_flight(self) -> InFlight | None:
        return self.state().in_flight

    def inbox_profiles(self) -> list[Path]:
        """The open window's stored profiles, oldest first."""
        if not self.inbox.is_dir():
            return []
        return sorted(self.inbox.glob("*.bin"), key=lambda p: p.stat().st_mtime)

    def open_profiles(self) -> int:
        """How many profiles wait in the open window."""
        return len(self.inbox_profiles())

    def load_config(self) -> ProjectConfig | None:
        """The config the last `configure` stored (None when none was); raises ValueError when it is invalid."""
        if not self.config_file.is_file():
            return None
        return ProjectConfig.model_validate_json(self.config_file.read_text())

    def retrain_result_file(self, job_id: str) -> Path:
        return self.retrains_dir / f"{job_id}.json"

    def retrain_result(self, job_id: str) -> dict[str, Any] | None:
        path = self.retrain_result_file(job_id)
        return dict(json.loads(path.read_text())) if path.is_file() else None

    def judgement(self) -> dict[str, Any] | None:
        """The monitor's latest judgement of a canary (``action``, ``reason``, ``evidence``, ``at``)."""
        return dict(json.loads(self.judgement_file.read_text())) if self.judgement_file.is_file() else None

    # ----- writers (the monitor actor's)

    def save_judgement(self, judgement: dict[str, Any] | None) -> None:
        if judgement is None:
            self.judgement_file.unlink(missing_ok=True)
        else:
            write_atomic(self.judgement_file, json.dumps(judgement, indent=1).encode())

    def create(self) -> None:
        for d in (self.inbox, self.windows_dir, self.retrains_dir):
            d.mkdir(parents=True, exist_ok=True)

    def save_state(self, state: dict[str, Any]) -> None:
        write_atomic(self.state_file, json.dumps(state, indent=1).encode())

    def save_config(self, cfg: ProjectConfig) -> Path:
        write_atomic(self.config_file, json.dumps(cfg.model_dump(mode="json"), indent=1).encode())
        return self.config_file

    def append_decision(self, decision: dict[str, Any]) -> None:
        with self.decisions_file.open("a") as f:
            f.write(json.dumps(decision) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def store_profile(self, profile_id: str, blob: bytes) -> None:
        write_atomic(self.inbox / f"{profile_id}.bin", blob)

    def drop_profile(self, profile_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            (self.inbox / f"{profile_id}.bin").unlink()

    def begin_window(self, number: int) -> Path:
        """An empty staging folder for window ``number`` (a crashed close leaves one behind)."""
        tmp = self.windows_dir / f".{number:06d}.tmp"
        if tmp.exists():
            for p in tmp.iterdir():
                p.unlink()
        tmp.mkdir(exist_ok=True)
        return tmp

    def commit_window(
        self, number: int, staged: Path, *, profile: bytes, parts: list[str], report: dict[str, Any], html: str
    ) -> Path:
        """Write a window's files into its staging folder and rename it into place; its profiles
        then leave the inbox."""
        (staged / "profile.bin").write_bytes(profile)
        (staged / "parts.json").write_text(json.dumps({"parts": sorted(parts)}))
        (staged / "report.json").write_text(json.dumps(report, indent=1, default=str))
        (staged / "report.html").write_text(html, encoding="utf-8")
        folder = self.window_folder(number)
        os.replace(staged, folder)
        for pid in parts:
            self.drop_profile(pid)
        return folder


def read_windows(cfg: ProjectConfig, last: int | None = None) -> list[dict[str, Any]]:
    """The reports of closed windows, oldest first (the last ``last`` of them)."""
    return MonitorStore(cfg).window_reports(last)


def read_decisions(cfg: ProjectConfig, last: int | None = None) -> list[dict[str, Any]]:
    """Every decision the monitor recorded, oldest first (the last ``last`` of them)."""
    return MonitorStore(cfg).decision_log(last)
