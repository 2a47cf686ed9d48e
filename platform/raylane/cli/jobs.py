"""``raylane job`` and ``cluster``: Ray jobs of the allow-listed entrypoints, and a local multi-node cluster."""

from __future__ import annotations

import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from raylane.cli._common import ConfigArg, SetOpt, load, out, steps
from raylane.errors import UserError
from raylane.jobs import ENTRYPOINTS, SUCCEEDED, TERMINAL
from raylane.lineage import Tag

__all__ = ["cluster_app", "job_app"]

job_app = typer.Typer(
    help="Ray jobs of raylane's allow-listed entrypoints: submit, status, logs, stop, list.", no_args_is_help=True
)
cluster_app = typer.Typer(
    help="A local multi-node Ray cluster on this machine (`ray start` head and workers).", no_args_is_help=True
)

AddressOpt = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="The cluster's job API (http://host:8265); backends.ray.address, the local cluster or RAY_ADDRESS"
        " when omitted.",
        show_default=False,
    ),
]


# --------------------------------------------------------------------------- jobs


def _follow(job_client: Any, job_id: str, *, poll_s: float = 1.0) -> str:
    """Print the job's log as it grows until it ends; returns its final status."""
    shown = 0
    while True:
        status = str(job_client.get_job_status(job_id).value)
        logs = job_client.get_job_logs(job_id)
        if len(logs) > shown:
            sys.stdout.write(logs[shown:])
            sys.stdout.flush()
            shown = len(logs)
        if status in TERMINAL:
            return status
        time.sleep(poll_s)


def _job_info(job_client: Any, job_id: str) -> Any:
    try:
        return job_client.get_job_info(job_id)
    except RuntimeError as exc:
        if "does not exist" in str(exc):
            raise UserError(f"no job {job_id!r} on this cluster", fix="`raylane job list CONFIG` shows them") from None
        raise


@job_app.command(
    "submit", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}, no_args_is_help=True
)
def job_submit(
    ctx: typer.Context,
    config: ConfigArg,
    name: Annotated[
        str,
        typer.Argument(
            metavar="ENTRYPOINT",
            help=f"One of: {', '.join(ENTRYPOINTS)}, or a job the config declares under `jobs:`.",
        ),
    ],
    set_: SetOpt = None,
    address: AddressOpt = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Stream the job's log until it ends; exit 1 if it fails.")
    ] = False,
    pip: Annotated[
        list[str] | None,
        typer.Option(
            "--pip",
            help="A requirement the cluster installs for this job (repeatable); only those pinned in"
            " backends.ray.job_pip.",
            show_default=False,
        ),
    ] = None,
    job_id: Annotated[str | None, typer.Option("--job-id", help="The submission id; Ray's when omitted.")] = None,
) -> None:
    """Submit an allow-listed entrypoint or one of the config's `jobs:` as a Ray job, with this config
    (resolved here, --set applied).

    Arguments after `--` go to the job's script, e.g. `raylane job submit CONFIG sweep -- --resume`."""
    from raylane.jobs import project_client, submit_project_job

    cfg = load(config, set_)
    url, submitted = submit_project_job(cfg, name, address=address, extra=list(ctx.args), pip=pip, submission_id=job_id)
    out.print(f"[green]✓[/] submitted {name} as job [bold]{submitted}[/] to {url}")
    if wait:
        _, job_client = project_client(cfg, url)
        status = _follow(job_client, submitted)
        out.print(f"job {submitted}: {status}")
        if status != SUCCEEDED:
            raise typer.Exit(1)
    else:
        out.print(f"follow it with `raylane job logs {config} {submitted} --follow`")


@job_app.command("status")
def job_status(
    config: ConfigArg, job_id: Annotated[str, typer.Argument(help="Submission id.")], address: AddressOpt = None
) -> None:
    """A job's status, entrypoint, times and message."""
    from raylane.jobs import project_client

    _, job_client = project_client(load(config, None), address)
    info = _job_info(job_client, job_id)
    out.print(f"{job_id}: [bold]{info.status.value}[/]")
    meta = info.metadata or {}
    out.print(f"  entrypoint: {meta.get(Tag.JOB_ENTRYPOINT, '—')} ({escape(info.entrypoint)})", soft_wrap=True)
    for label, ms in (("started", info.start_time), ("ended", info.end_time)):
        if ms:
            out.print(f"  {label}: {datetime.fromtimestamp(ms / 1000):%Y-%m-%d %H:%M:%S}")
    if info.message:
        out.print(f"  message: {escape(info.message)}", soft_wrap=True)


@job_app.command("logs")
def job_logs(
    config: ConfigArg,
    job_id: Annotated[str, typer.Argument(help="Submission id.")],
    address: AddressOpt = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the job ends.")] = False,
) -> None:
    """A job's log (driver output)."""
    from raylane.jobs import project_client

    _, job_client = project_client(load(config, None), address)
    _job_info(job_client, job_id)
    if follow:
        _follow(job_client, job_id)
    else:
        sys.stdout.write(job_client.get_job_logs(job_id))


@job_app.command("stop")
def job_stop(
    config: ConfigArg, job_id: Annotated[str, typer.Argument(help="Submission id.")], address: AddressOpt = None
) -> None:
    """Stop a running job (Ray sends SIGTERM, then SIGKILL)."""
    from raylane.jobs import project_client

    _, job_client = project_client(load(config, None), address)
    status = _job_info(job_client, job_id).status.value
    if status in TERMINAL:
        out.print(f"job {job_id} already ended: {status}")
        return
    job_client.stop_job(job_id)
    out.print(f"stopping job {job_id}")


@job_app.command("list")
def job_list(
    config: ConfigArg,
    address: AddressOpt = None,
    all_: Annotated[bool, typer.Option("--all", help="Every job on the cluster, not only this project's.")] = False,
) -> None:
    """The cluster's jobs of this project, newest first."""
    from raylane.jobs import project_client

    cfg = load(config, None)
    url, job_client = project_client(cfg, address)
    jobs = [j for j in job_client.list_jobs() if all_ or (j.metadata or {}).get(Tag.JOB_PROJECT) == cfg.project]
    jobs.sort(key=lambda j: j.start_time or 0, reverse=True)
    table = Table(title=f"jobs of {'every project' if all_ else cfg.project} on {url}", title_justify="left")
    table.add_column("submission id", no_wrap=True)
    for col in ("entrypoint", "status", "started", "ended"):
        table.add_column(col)
    for j in jobs:
        table.add_row(
            j.submission_id or j.job_id or "—",
            (j.metadata or {}).get(Tag.JOB_ENTRYPOINT, escape(j.entrypoint)[:40]),
            j.status.value,
            f"{datetime.fromtimestamp(j.start_time / 1000):%m-%d %H:%M:%S}" if j.start_time else "—",
            f"{datetime.fromtimestamp(j.end_time / 1000):%m-%d %H:%M:%S}" if j.end_time else "—",
        )
    out.print(table)


# --------------------------------------------------------------------------- clusters


@cluster_app.command("up")
def cluster_up(
    config: ConfigArg,
    set_: SetOpt = None,
    workers: Annotated[int, typer.Option(min=0, help="Worker nodes beside the head.")] = 1,
    cpus: Annotated[int, typer.Option("--cpus-per-node", min=1, help="CPUs each node offers.")] = 1,
    port: Annotated[int | None, typer.Option(help="The head's GCS port; a free one when omitted.")] = None,
    dashboard_port: Annotated[
        int | None, typer.Option(help="The job API / dashboard port; a free one when omitted.")
    ] = None,
) -> None:
    """Start a head and worker nodes on this machine (token auth, 127.0.0.1); returns when all joined."""
    from raylane import cluster

    cfg = load(config, set_)
    with steps() as step:
        step(f"starting a head and {workers} worker node(s), {cpus} CPU each")
        c = cluster.up(cfg, workers=workers, cpus_per_node=cpus, port=port, dashboard_port=dashboard_port)
    out.print(
        f"[green]✓[/] local cluster up: {len(c.nodes)} nodes, drivers at [bold]{c.address}[/],"
        f" job API at [bold]{c.dashboard_url}[/]",
        soft_wrap=True,
    )
    out.print(f"  run a driver there: --set backends.ray.address={c.address}")
    out.print(f"  submit jobs: raylane job submit {config} train")
    out.print(f"  stop it: raylane cluster down {config}")


@cluster_app.command("down")
def cluster_down(config: ConfigArg, set_: SetOpt = None) -> None:
    """Stop the local cluster `cluster up` started (its own processes only; never `ray stop`)."""
    from raylane import cluster

    c = cluster.down(load(config, set_))
    out.print(f"stopped the local cluster ({len(c.nodes)} nodes)" if c else "no local cluster is recorded")


@cluster_app.command("status")
def cluster_status(config: ConfigArg, set_: SetOpt = None) -> None:
    """The local cluster's nodes: processes, and the nodes Ray reports alive."""
    from raylane import cluster

    st = cluster.status(load(config, set_))
    if st is None:
        out.print("no local cluster is recorded; `raylane cluster up CONFIG` starts one")
        raise typer.Exit(1)
    c = st.cluster
    alive = "unreachable" if st.alive_nodes is None else f"{st.alive_nodes} nodes alive, {st.cpus:g} CPUs"
    out.print(f"local cluster since {c.started_at}: {alive}; drivers {c.address}; job API {c.dashboard_url}")
    for node in c.nodes:
        up_ = "[green]running[/]" if st.processes[node.pid] else "[red]gone[/]"
        out.print(f"  {node.role:6} pid {node.pid}: {up_} ({node.num_cpus} CPU) log {node.log}")


@cluster_app.command("render")
def cluster_render(
    kind: Annotated[str, typer.Argument(metavar="KIND", help="kuberay or launcher.")],
    config: ConfigArg,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the manifests into.")] = Path("clusters"),
) -> None:
    """Render cluster manifests from the config: KubeRay (RayCluster, RayJob for train and sweep,
    RayService) or a Ray cluster launcher config (`ray up`)."""
    from raylane.manifests import KINDS, render

    if kind not in KINDS:
        raise UserError(f"no renderer for {kind!r}", fix=f"use one of {', '.join(KINDS)}")
    cfg = load(config, None)
    for path in render(kind, cfg, config, out_dir / kind):
        out.print(f"wrote {path}")
