"""Reclaiming what a sweep's dead drivers left behind, before a resume.

A driver killed while a trial was starting can leave that trial's Ray Train placement group
reserved after every actor of its job is gone (Ray Train's own cleaner had not registered it yet),
and the resumed trials then wait forever for its CPUs. A placement group's id ends with the id of
the job that created it; only groups of this sweep's own dead drivers are removed, and a resume
while one of its drivers is still alive is refused.

A running sweep loses CPUs the same way: Ray keeps a placement group that an actor created until
the actor's *job* ends, and a Ray Train controller that Tune kills while it is creating its workers'
group (a trial stopped or paused as it starts, a Ctrl-C) leaves that group reserved for the rest
of the sweep. `remove_orphans` removes the groups of this driver's job whose creating actor is dead;
the sweep calls it every few seconds while Tune runs, and once more at the end.
"""

from __future__ import annotations

import logging
from typing import Any

from raylane.errors import UserError

__all__ = ["job_id", "reclaim", "remove_orphans"]

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


def remove_orphans() -> list[str]:
    """Remove the placement groups of this driver's job whose creating actor is dead; their ids.

    Groups the driver made itself (Tune's trial groups) and groups of live actors are kept."""
    import ray
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    try:  # (also called on the way out of a failed sweep: never raise over its error)
        from ray._raylet import PlacementGroupID
        from ray.core.generated import gcs_pb2

        table_data = gcs_pb2.PlacementGroupTableData  # type: ignore[attr-defined]
        job = job_id()
        table = ray._private.state.state._connect_and_get_accessor().get_placement_group_table()  # type: ignore[attr-defined]
    except Exception:  # internal API: without it, remove nothing
        log.debug("cannot read the placement group table", exc_info=True)
        return []
    removed = []
    for raw in table:
        info = table_data.FromString(raw)
        creator = info.creator_actor_id.hex()
        if (
            info.state == table_data.REMOVED
            or info.is_detached
            or info.creator_job_id.hex() != job
            or not creator.strip("f")  # no creating actor: the driver made it
            or _actor_state(creator) != "DEAD"
        ):
            continue
        pg_id = info.placement_group_id.hex()
        log.info("removing placement group %s: the actor that created it is dead", pg_id)
        try:
            remove_placement_group(PlacementGroup(PlacementGroupID(info.placement_group_id)))
        except Exception:  # removed meanwhile (Ray Train's own cleaner)
            log.debug("placement group %s is gone already", pg_id, exc_info=True)
            continue
        removed.append(pg_id)
    return removed


def _actor_state(actor_id: str) -> str | None:
    import ray

    try:
        found = ray._private.state.actors(actor_id=actor_id)  # type: ignore[attr-defined]
    except Exception:
        return None
    return found.get("State") if isinstance(found, dict) else None


def _pg_id(hex_id: str) -> Any:
    from ray._raylet import PlacementGroupID

    return PlacementGroupID(bytes.fromhex(hex_id))
