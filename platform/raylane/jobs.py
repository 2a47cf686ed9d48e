"""Ray Job Submission of raylane's allow-listed entrypoints and the project's declared jobs.

A job runs one of the scripts in ``jobs/`` (``pipeline``, ``train``, ``sweep``, ``retrain``,
``materialize``) or one the config declares under ``jobs:`` (a script inside the project's
folder), never a command line from the user: the entrypoint is built here from the script's
fixed name, the config and the arguments, each quoted.

Two ways in:

- `submit_project_job` (``raylane job submit``) resolves the config on the submitting machine
  (``--set`` applied, every path absolute) and ships it with the script as the job's
  ``working_dir``; the cluster runs them with its own ``python`` (which must have raylane, as the
  KubeRay image and the launcher's set-up commands provide). Paths in the config must exist on the
  cluster: shared storage (a volume mounted on every node), or this machine for a local cluster.
- `submit` runs a script in place with this interpreter (the monitor, which runs on the cluster).

Token auth: the client sends the project's Ray token (``backends.ray.auth_token_file``,
``RAY_AUTH_TOKEN``/``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``) as a bearer header; without
it the job API answers 401.

The job API address is a cluster's dashboard (``http://127.0.0.1:8265``). The driver reads it from
the cluster's own record (a worker only sees Ray's default address, so the monitor is given the
address its driver resolved).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from raylane.config import ProjectConfig
from raylane.errors import ClusterError, UserError
from raylane.lineage import Tag

__all__ = [
    "ENDED",
    "ENTRYPOINTS",
    "FAILED",
    "LOST",
    "STOPPED",
    "SUCCEEDED",
    "TERMINAL",
    "client",
    "dashboard_address",
    "entrypoint",
    "job_address",
    "project_client",
    "project_script",
    "submit",
    "submit_project_job",
]

ENTRYPOINTS: dict[str, str] = {
    "pipeline": "the whole loop: ingest, features, train (or sweep), deploy, monitor; unchanged steps skipped",
    "train": "train a model, register it and run the promotion gate",
    "sweep": "a Ray Tune sweep whose best trial is registered and gated",
    "retrain": "ingest the newest data, materialize, train, gate and promote (what the monitor submits)",
    "materialize": "load feature rows from the offline tables into the online store",
    "predict": "batch inference: score many entities with a registered model into parquet",
}
# Job statuses, spelled once. The first three are Ray's terminal `JobStatus` values; LOST is
# raylane's own, for a job the job API no longer knows (recorded by the monitor).
SUCCEEDED, FAILED, STOPPED, LOST = "SUCCEEDED", "FAILED", "STOPPED", "LOST"
TERMINAL = (SUCCEEDED, FAILED, STOPPED)
ENDED = (*TERMINAL, LOST)
_CLI = {"materialize": ["features", "materialize"], "pipeline": ["run"]}  # the `raylane` command of a job
CONFIG_NAME = "raylane-config.json"


def _jobs_dir() -> Path | None:
    """``jobs/`` of the source tree raylane runs from (an editable install); None for a wheel."""
    folder = Path(__file__).resolve().parents[2] / "jobs"
    return folder if folder.is_dir() else None


def _check_name(name: str, cfg: ProjectConfig | None = None) -> None:
    if name in ENTRYPOINTS or (cfg is not None and name in cfg.jobs):
        return
    declared = ", ".join(cfg.jobs) if cfg is not None and cfg.jobs else "none"
    raise UserError(
        f"{name!r} is not a raylane job entrypoint ({', '.join(ENTRYPOINTS)})"
        + (f" nor one of the config's jobs ({declared})" if cfg is not None else ""),
        fix="use one of those, or declare the script under `jobs:` in the config"
        " (jobs run allow-listed scripts, never a command line)",
    )


def project_script(cfg: ProjectConfig, name: str) -> Path:
    """The script of the config's job ``name``: a ``.py`` file inside the config's folder.

    Raises:
        UserError: a script outside the project's folder, or missing.
    """
    where = f"jobs.{name}.script"
    base = (cfg.base_dir or Path.cwd()).resolve()
    script = (base / cfg.jobs[name].script).resolve()
    if not script.is_relative_to(base):
        raise UserError(
            f"{where}: {cfg.jobs[name].script} is outside the project's folder {base}",
            fix="keep the project's job scripts inside the config's folder (e.g. scripts/report.py)",
        )
    if not script.is_file():
        raise UserError(f"{where}: {script} does not exist", fix="give a .py file relative to the config's folder")
    return script


def _check_pip(cfg: ProjectConfig, pip: list[str]) -> None:
    """Every requirement must be one the project pinned in ``backends.ray.job_pip``."""
    from raylane.config.backends import pinned

    allowed = {pinned(r) for r in cfg.backends.ray.job_pip}
    for req in pip:
        if pinned(req) not in allowed:  # None (not pinned) never is
            listed = ", ".join(cfg.backends.ray.job_pip) or "none"
            raise UserError(
                f"--pip {req!r} is not one of the project's pinned job requirements (backends.ray.job_pip: {listed})",
                fix="add it, pinned as name==version, to backends.ray.job_pip in the config (a job's packages"
                " run as code on the cluster)",
            )


def entrypoint(name: str, config: Path, overrides: list[str] | None = None, extra: list[str] | None = None) -> str:
    """The shell command of an allow-listed job: its script (or ``python -m raylane``) and arguments.

    Raises:
        UserError: ``name`` is not an allow-listed entrypoint.
    """
    _check_name(name)
    folder = _jobs_dir()
    script = folder / f"{name}.py" if folder else None
    if script is not None and script.is_file():
        head = [sys.executable, str(script)]
    else:
        head = [sys.executable, "-m", "raylane", *_CLI.get(name, [name])]
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


def client(address: str | None = None, headers: dict[str, str] | None = None) -> Any:
    """A `JobSubmissionClient` for ``address`` (this cluster's job API when omitted)."""
    from ray.job_submission import JobSubmissionClient

    address = address or dashboard_address()
    try:
        return JobSubmissionClient(address, headers=headers)
    except Exception as exc:  # ConnectionError, RuntimeError, AuthenticationError…
        denied = "401" in str(exc) or "auth" in type(exc).__name__.lower() or "token" in str(exc).lower()
        raise ClusterError(
            f"cannot reach the Ray job API at {address}: {str(exc).strip().splitlines()[0][:300]}",
            fix="this machine needs the cluster's token (backends.ray.auth_token_file, RAY_AUTH_TOKEN)"
            if denied
            else "check the address (the cluster's dashboard, http://host:8265) and that the cluster is up",
        ) from exc


def job_address(cfg: ProjectConfig, address: str | None = None) -> str:
    """Where ``raylane job`` commands go: ``address``; ``backends.ray.address`` when it is a job API
    (``http://…``); the local cluster `raylane cluster up` recorded; ``RAY_ADDRESS`` when it is one.

    Raises:
        UserError: none of them names a job API.
    """
    from raylane.cluster import read_record

    configured = cfg.backends.ray.address
    env = os.environ.get("RAY_ADDRESS", "")
    local = read_record(cfg)
    for candidate in (address, configured, local.dashboard_url if local else None, env):
        if candidate and candidate.startswith(("http://", "https://")):
            return candidate.rstrip("/")
    raise UserError(
        "no Ray job API to submit to",
        fix="start a local cluster (`raylane cluster up CONFIG`), pass --address http://host:8265,"
        " or set backends.ray.address to the cluster's job API",
    )


def project_client(cfg: ProjectConfig, address: str | None = None) -> tuple[str, Any]:
    """The job API address of ``cfg``'s cluster and a client that carries the project's token."""
    from raylane.cluster import auth_headers

    url = job_address(cfg, address)
    headers = auth_headers(cfg) if os.environ.get("RAY_AUTH_MODE", "token").lower() != "disabled" else None
    return url, client(url, headers)


def submit_project_job(
    cfg: ProjectConfig,
    name: str,
    *,
    address: str | None = None,
    extra: list[str] | None = None,
    pip: list[str] | None = None,
    submission_id: str | None = None,
) -> tuple[str, str]:
    """Submit an allow-listed job with ``cfg`` (resolved here) as its config; returns (job API, id).

    ``name`` is one of raylane's `ENTRYPOINTS` or one of the config's ``jobs``: the script's folder
    (its ``.py`` files) is the job's working directory, with the config beside the script, and
    the job reserves the declared ``resources``.

    Args:
        extra: Arguments for the job's script after the config (each quoted; the script parses them).
        pip: Requirements the cluster installs for this job (Ray's ``runtime_env``): each one of
            ``backends.ray.job_pip`` (pinned there).

    Raises:
        UserError: ``name`` is not allow-listed, or a requirement is not in ``backends.ray.job_pip``.
    """
    from raylane.model_code import python_sources

    _check_name(name, cfg)
    clash = sorted(set(cfg.jobs) & set(ENTRYPOINTS))
    if clash:  # the built-in would silently run instead of the declared script
        raise UserError(f"jobs.{clash[0]}: {clash[0]!r} is raylane's own entrypoint", fix="give the job another name")
    _check_pip(cfg, pip or [])
    own = cfg.jobs.get(name) if name not in ENTRYPOINTS else None
    resources: dict[str, Any] = {"entrypoint_num_cpus": 0}
    if own is not None:
        script = project_script(cfg, name)
        resources = {
            "entrypoint_num_cpus": own.resources.num_cpus,
            "entrypoint_num_gpus": own.resources.num_gpus,
            **({"entrypoint_memory": own.resources.memory} if own.resources.memory else {}),
        }
    url, job_client = project_client(cfg, address)
    with tempfile.TemporaryDirectory(prefix="raylane-job-") as stage:
        if own is not None:
            for rel, text in python_sources(script.parent, f"jobs.{name}.script").items():
                (Path(stage) / rel).parent.mkdir(parents=True, exist_ok=True)
                (Path(stage) / rel).write_text(text)
            head = ["python", script.name, CONFIG_NAME, *own.args]
        else:
            folder = _jobs_dir()
            builtin = folder / f"{name}.py" if folder else None
            if builtin is not None and builtin.is_file():
                shutil.copy(builtin, Path(stage) / builtin.name)
                head = ["python", builtin.name, CONFIG_NAME]
            else:
                head = ["python", "-m", "raylane", *_CLI.get(name, [name]), CONFIG_NAME]
        (Path(stage) / CONFIG_NAME).write_text(json.dumps(cfg.model_dump(mode="json"), indent=1))
        runtime_env: dict[str, Any] = {"working_dir": stage, "env_vars": {"RAYLANE_JOB": name}}
        if pip:
            runtime_env["pip"] = list(pip)
        job_id = job_client.submit_job(
            entrypoint=shlex.join([*head, *(extra or [])]),
            runtime_env=runtime_env,
            submission_id=submission_id,
            metadata={Tag.JOB_ENTRYPOINT: name, Tag.JOB_PROJECT: cfg.project},
            **resources,
        )
    return url, str(job_id)


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
            metadata={Tag.JOB_ENTRYPOINT: name, **(metadata or {})},
            entrypoint_num_cpus=0,
        )
    )
