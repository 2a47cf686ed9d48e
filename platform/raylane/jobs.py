"""Ray Job Submission of raylane's allow-listed entrypoints.

A job runs one of the scripts in ``jobs/`` (``train``, ``sweep``, ``retrain``), never a command
line from the user: the entrypoint is built here from the script's fixed path, the config file
and ``--set`` values, each quoted. Ray's token auth is carried by the job client (it reads the
same token the Ray runtime uses).

The job API address is the cluster's dashboard (``http://127.0.0.1:8265``); inside a Ray cluster
(the monitor actor) it is found in the cluster's own metadata.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

from raylane.errors import ClusterError, UserError

__all__ = ["ENTRYPOINTS", "client", "dashboard_address", "entrypoint", "submit"]

ENTRYPOINTS: dict[str, str] = {
    "train": "train a model, register it and run the promotion gate",
    "sweep": "a Ray Tune sweep whose best trial is registered and gated",
    "retrain": "ingest the newest data, materialize, train, gate and promote (what the monitor submits)",
}


def _jobs_dir() -> Path | None:
    """``jobs/`` of the source tree raylane runs from (an editable install); None for a wheel."""
    folder = Path(__file__).resolve().parents[2] / "jobs"
    return folder if folder.is_dir() else None


def entrypoint(name: str, config: Path, overrides: list[str] | None = None, extra: list[str] | None = None) -> str:
    """The shell command of an allow-listed job: its script (or ``python -m raylane``) and arguments.

    Raises:
        UserError: ``name`` is not an allow-listed entrypoint.
    """
    if name not in ENTRYPOINTS:
        raise UserError(
            f"{name!r} is not a raylane job entrypoint",
            fix=f"use one of {', '.join(ENTRYPOINTS)} (jobs run raylane's own scripts, never a command line)",
        )
    folder = _jobs_dir()
    script = folder / f"{name}.py" if folder else None
    head = [sys.executable, str(script)] if script and script.is_file() else [sys.executable, "-m", "raylane", name]
    args = [str(config), *(a for o in overrides or [] for a in ("--set", o)), *(extra or [])]
    return shlex.join([*head, *args])


def dashboard_address() -> str:
    """The job API of the cluster this process is connected to."""
    import ray

    url = ray._private.worker.get_dashboard_url()  # the cluster's own record of its dashboard
    if not url:
        raise ClusterError(
            "this Ray cluster runs no dashboard, so it cannot take jobs",
            fix="start Ray with the dashboard (backends.ray.dashboard: true) or set monitor.job_address",
        )
    return url if url.startswith("http") else f"http://{url}"


def client(address: str | None = None) -> Any:
    """A `JobSubmissionClient` for ``address`` (this cluster's job API when omitted)."""
    from ray.job_submission import JobSubmissionClient

    address = address or dashboard_address()
    try:
        return JobSubmissionClient(address)
    except Exception as exc:  # ConnectionError, RuntimeError, AuthenticationError…
        raise ClusterError(
            f"cannot reach the Ray job API at {address}: {exc}",
            fix="check the address and that this machine has the cluster's token",
        ) from exc


def submit(
    name: str,
    config: Path,
    *,
    overrides: list[str] | None = None,
    extra: list[str] | None = None,
    address: str | None = None,
    submission_id: str | None = None,
    metadata: dict[str, str] | None = None,
) -> str:
    """Submit an allow-listed job; returns its submission id."""
    job_client = client(address)
    return str(
        job_client.submit_job(
            entrypoint=entrypoint(name, config, overrides, extra),
            submission_id=submission_id,
            metadata={"raylane.entrypoint": name, **(metadata or {})},
            entrypoint_num_cpus=0,
        )
    )
