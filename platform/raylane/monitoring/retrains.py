"""The retrain job as the monitor runs it: submitted through Ray Job Submission, then followed.

A retrain is the allow-listed ``retrain`` entrypoint (`raylane.jobs`), run with the config the
monitor stored and told where to write its result (``retrains/<job id>.json``). `RetrainJobs`
asks the job API how a job stands and turns an ended job into its ``retrain_ended`` record. What
to do when (one in flight, the cooldown) is `raylane.monitoring.policy`'s, not this module's.
"""

from __future__ import annotations

import contextlib
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from raylane import jobs
from raylane.lineage import Tag
from raylane.monitoring.store import MonitorStore

__all__ = ["LOG_TAIL_LINES", "RetrainJobs", "new_job_id"]

LOG_TAIL_LINES = 15  # of a job that did not succeed, kept in its record (why it failed)


def new_job_id(project: str, at: datetime) -> str:
    """A submission id that sorts by time and does not repeat within a second."""
    return f"raylane-retrain-{project}-{at.strftime('%Y%m%dT%H%M%S')}-{os.urandom(2).hex()}"


class RetrainJobs:
    """Submits retrain jobs and follows them, with one job API client kept between polls."""

    def __init__(self) -> None:
        self._client: Any = None

    def reset(self) -> None:
        """Forget the client (another address, or the job API went away): the next call makes one."""
        self._client = None

    def _job_client(self, address: str | None) -> Any:
        if self._client is None:
            self._client = jobs.client(address)
        return self._client

    @staticmethod
    def submit(
        *, address: str | None, project: str, job_id: str, config_file: Path, reasons: list[str], result_file: Path
    ) -> None:
        """Submit the retrain job under ``job_id``; raises whatever the job API raises."""
        jobs.submit(
            "retrain",
            config_file,
            extra=["--reason", "; ".join(reasons), "--result", str(result_file)],
            address=address,
            submission_id=job_id,
            metadata={Tag.JOB_PROJECT: project},
        )

    def _status(self, address: str | None, job_id: str) -> tuple[str, str | None]:
        """The job's status and, for one the job API does not know (`jobs.LOST`), why."""
        try:
            return str(self._job_client(address).get_job_status(job_id).value), None
        except RuntimeError as exc:  # the job API answered: it has no such job
            if "does not exist" not in str(exc):
                self.reset()
                raise
            return jobs.LOST, "the job API does not know this job (the monitor stopped mid-submission?)"
        except Exception:
            self.reset()  # the job API is unreachable: ask again next time
            raise

    def ended(self, address: str | None, job_id: str, store: MonitorStore) -> dict[str, Any] | None:
        """The ``retrain_ended`` record of ``job_id`` once it ended (None while it runs): its
        status, the result it wrote, and the tail of its log when it did not succeed.

        Raises:
            Exception: the job API cannot be reached (the client is made again next time).
        """
        status, why = self._status(address, job_id)
        if status not in jobs.ENDED:
            return None
        outcome: dict[str, Any] = {"action": "retrain_ended", "job_id": job_id}
        if why:
            outcome["why"] = why
        outcome["status"] = status
        result = store.retrain_result(job_id)
        if result is not None:
            outcome["result"] = result
        if status not in (jobs.SUCCEEDED, jobs.LOST):
            with contextlib.suppress(Exception):
                outcome["log_tail"] = self._job_client(address).get_job_logs(job_id).splitlines()[-LOG_TAIL_LINES:]
        return outcome
