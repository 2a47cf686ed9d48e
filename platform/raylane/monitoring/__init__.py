"""Continuous monitoring: whylogs profiles of live traffic, a monitor actor per project that finds
drift, data-quality failures and decay, and a policy that submits retraining as a Ray job.

- `sink.ProfileSink`: made in each Serve replica; buffers rows, ships profiles off the request path.
- `control`: `start`, `stop` and `monitor_handle` of the detached monitor actor.
- `actor.Monitor`: the monitor actor, wiring the rooms below.
- `store`: the files under ``<storage_root>/monitor/`` and their typed readers (`MonitorStore`).
- `analysis`: a window's drift, quality checks and live metric; `report`: its HTML pages.
- `policy`: the retrain rules as pure functions (triggers, cooldown, one retrain in flight).
- `retrains`: submitting and following the retrain job; `metrics`: the monitor's Ray metrics.
"""

from __future__ import annotations

from raylane.monitoring.actor import Monitor
from raylane.monitoring.control import monitor_handle, monitor_name, start, stop
from raylane.monitoring.store import MonitorStore, monitor_dir, read_decisions, read_windows

__all__ = [
    "Monitor",
    "MonitorStore",
    "monitor_dir",
    "monitor_handle",
    "monitor_name",
    "read_decisions",
    "read_windows",
    "start",
    "stop",
]
