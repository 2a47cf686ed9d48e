"""The replica side of monitoring: `ProfileSink` buffers a Serve replica's scored rows and ships
them, as whylogs profiles, to the project's monitor actor.

It is not where profiles are made (`raylane.profiling.profile` does that, for training's reference
profile too) nor where they are read (the monitor, `raylane.monitoring.actor`).

A replica adds each scored row (its features, its prediction, and whether the request carried the
API key: `AUTHENTICATED`) to a buffer; off the request path
(the replica's I/O thread) the buffer becomes a whylogs profile every ``monitor.flush_rows`` rows
or ``monitor.flush_seconds``, serialized (protobuf, never pickle) and sent to the monitor actor
under a unique id. The monitor stores it before it answers, and knows an id it has seen, so a
retried send counts once. While the monitor cannot be reached, profiles wait (at most
``monitor.max_pending_profiles``, then the oldest are dropped and counted).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from typing import Any

import pandas as pd

from raylane.config import ProjectConfig
from raylane.monitoring.analysis import AUTHENTICATED, PREDICTION

__all__ = ["ProfileSink"]

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 30.0


class ProfileSink:
    """One replica's profile buffer. `add` is called on the request path; `flush` on an I/O thread."""

    def __init__(self, cfg: ProjectConfig, writer_id: str) -> None:
        self.cfg = cfg
        self.features = list(cfg.feature_dtypes())
        self.writer_id = writer_id
        self._rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()  # the buffer (request path vs I/O thread)
        self._flush_lock = threading.Lock()  # one flush at a time (the I/O thread vs a final flush)
        self._first_at: float | None = None
        self._seq = 0
        self.pending: deque[tuple[str, bytes]] = deque()
        self.sent_rows = 0
        self.dropped = 0
        self._handle: Any = None
        self._warned_at = 0.0

    def add(self, rows: list[dict[str, Any]]) -> bool:
        """Buffer rows (features, ``prediction`` and `AUTHENTICATED`, 1 or 0); true when a profile is due."""
        with self._lock:
            if self._first_at is None:
                self._first_at = time.monotonic()
            self._rows.extend(rows)
            return len(self._rows) >= self.cfg.monitor.flush_rows

    def due(self) -> bool:
        with self._lock:
            if not self._rows or self._first_at is None:
                return bool(self.pending)
            age = time.monotonic() - self._first_at
            return len(self._rows) >= self.cfg.monitor.flush_rows or age >= self.cfg.monitor.flush_seconds

    def flush(self, *, force: bool = False) -> int:
        """Profile what is buffered (when due, or always with ``force``) and send every pending
        profile; returns the rows sent."""
        if not (force or self.due()):
            return 0
        with self._flush_lock:
            with self._lock:
                rows, self._rows, self._first_at = self._rows, [], None
            if rows:
                self._seq += 1
                profile_id = f"{self.writer_id}-{self._seq:08d}-{uuid.uuid4().hex[:8]}"
                self.pending.append((profile_id, self._profile(rows)))
                while len(self.pending) > self.cfg.monitor.max_pending_profiles:
                    self.pending.popleft()
                    self.dropped += 1
            return self._send()

    def _profile(self, rows: list[dict[str, Any]]) -> bytes:
        from raylane.profiling import profile

        frame = pd.DataFrame.from_records(rows, columns=[*self.features, PREDICTION, AUTHENTICATED])
        return bytes(profile(frame, text=self.cfg.text_features()).serialize())

    def _send(self) -> int:
        import ray

        from raylane.monitoring.control import monitor_handle

        sent = 0
        while self.pending:
            profile_id, blob = self.pending[0]
            try:
                if self._handle is None:
                    self._handle = monitor_handle(self.cfg)
                rows = ray.get(self._handle.ingest.remote(profile_id, blob), timeout=SEND_TIMEOUT_S)
            except Exception as exc:  # the monitor is down or restarting: keep the profile, retry later
                self._handle = None
                if time.monotonic() - self._warned_at > 60:
                    self._warned_at = time.monotonic()
                    log.warning(
                        "raylane: cannot reach the monitor (%s); %d profiles wait",
                        type(exc).__name__,
                        len(self.pending),
                    )
                break
            self.pending.popleft()
            sent += int(rows)
        self.sent_rows += sent
        return sent
