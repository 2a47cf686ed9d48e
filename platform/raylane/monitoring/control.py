"""Starting, finding and stopping a project's monitor actor, from a driver (the CLI, `serve deploy`,
the pipeline) or a replica (its profile sink finds the monitor here).

One detached, named actor per project (``raylane-monitor-<project>`` in the project's Ray
namespace); Ray restarts it on failure and it rebuilds itself from its files
(`raylane.monitoring.store`).
"""

from __future__ import annotations

import contextlib
from typing import Any

from raylane.config import ProjectConfig

__all__ = ["monitor_handle", "monitor_name", "start", "stop"]


def monitor_name(cfg: ProjectConfig) -> str:
    return f"raylane-monitor-{cfg.project}"


def monitor_handle(cfg: ProjectConfig) -> Any:
    """The running monitor of ``cfg``'s project (raises ValueError when none runs)."""
    import ray

    return ray.get_actor(monitor_name(cfg), namespace=cfg.backends.ray.namespace)


def start(cfg: ProjectConfig, *, timeout_s: float = 60.0) -> Any:
    """Start the project's monitor, or return the one that runs. Needs Ray."""
    import ray

    from raylane.monitoring.actor import Monitor

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
