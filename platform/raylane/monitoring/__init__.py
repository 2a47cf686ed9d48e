"""Continuous monitoring: whylogs profiles of live traffic, a monitor actor per project that finds
drift, data-quality failures and decay, and a policy that submits retraining as a Ray job.

- `profiler.ProfileSink`: made in each Serve replica; profiles rows off the request path.
- `actor.Monitor`: the detached monitor actor (`start`, `stop`, `monitor_handle`).
- `analysis`: drift, quality, live metric and the HTML report of a window.
"""

from __future__ import annotations

from raylane.monitoring.actor import (
    Monitor,
    monitor_dir,
    monitor_handle,
    monitor_name,
    read_decisions,
    read_windows,
    start,
    stop,
)

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
