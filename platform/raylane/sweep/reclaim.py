"""Reclaiming what a sweep's dead drivers left behind, before a resume.

A driver killed while a trial was starting can leave that trial's Ray Train placement group
reserved after every actor of its job is gone (Ray Train's own cleaner had not registered it yet),
and the resumed trials then wait forever for its CPUs. A placement group's id ends with the id of
the job that created it; only groups of this sweep's own dead drivers are removed, and a resume
while one of its drivers is still alive is refused.
"""

from __future__ import annotations

import logging
from typing import Any

from raylane.errors import UserError

__all__ = ["job_id", "reclaim"]

log = logging.getLogger(__name__)


def job_id() -> str:
    """The Ray job id of this driver."""
    import ray

    return str(ray.get_runtime_context().get_job_id())


def _dead_jobs(job_ids: list[str]) -> set[str]:
    """Those of ``job_ids`` that this cluster knows as finished (its GCS job table)."""
    import ray

    try:
        table = ray._private.worker.global_worker.gcs_client.get_all_job_info()  # type: ignore[attr-defined]
    except Exception:  # the job table is internal API: without it, reclaim nothing
        log.debug("cannot read the Ray job table", exc_info=True)
        return set()
    known = {job.job_id.hex(): bool(job.is_dead) for job in table.values()}
    alive = [j for j in job_ids if known.get(j) is False and j != job_id()]
    if alive:
        raise UserError(
            f"the sweep is still running in Ray job {alive[0]}",
            fix="wait for it, or stop that driver before resuming",
        )
    return {j for j in job_ids if known.get(j)}


def reclaim(job_ids: list[str], name: str) -> None:
    """Remove the placement groups that sweep ``name``'s dead drivers (``job_ids``) left behind.

    Raises:
        UserError: one of the drivers is still running.
    """
    from ray.util.placement_group import PlacementGroup, placement_group_table, remove_placement_group

    dead = _dead_jobs(job_ids)
    if not dead:
        return
    for pg_id, info in placement_group_table().items():
        if info.get("state") != "REMOVED" and pg_id[-8:] in dead:
            log.warning("sweep %s: removing placement group %s left by its dead driver", name, pg_id)
            remove_placement_group(PlacementGroup(_pg_id(pg_id)))


def _pg_id(hex_id: str) -> Any:
    from ray._raylet import PlacementGroupID

    return PlacementGroupID(bytes.fromhex(hex_id))
