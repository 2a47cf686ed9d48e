"""Processes raylane recorded (a service's driver, a local cluster's nodes), checked before a signal.

A recorded pid can be reused by an unrelated process after a reboot or a long uptime. Before
`cluster down` or `serve shutdown` signals one, it must still be the process that was recorded:
alive, started at the recorded time, and running the expected program.
"""

from __future__ import annotations

import contextlib

__all__ = ["is_recorded_process", "started_at"]


def started_at(pid: int) -> float:
    """The process's start time (seconds since the epoch, as the OS reports it); 0.0 if it is gone."""
    import psutil

    with contextlib.suppress(psutil.Error):
        return float(psutil.Process(pid).create_time())
    return 0.0


def is_recorded_process(pid: int, started: float, marker: str) -> bool:
    """True when ``pid`` is alive, started at ``started`` (0.0: unknown, an older record) and its
    command line contains ``marker``."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if started and abs(proc.create_time() - started) > 0.05:
            return False
        return marker in " ".join(proc.cmdline())
    except psutil.Error:
        return False
