"""``raylane monitor`` and ``retrain``: the monitor's windows, decisions and reports, and one retraining pass."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from raylane.cli._common import ConfigArg, SetOpt, embedded, fmt, foreground, load, on_ray, out, steps, verdict
from raylane.errors import UserError

__all__ = ["monitor_app", "retrain_cmd"]

monitor_app = typer.Typer(
    help="Continuous monitoring: drift, quality and live metric per window; the retrain policy.", no_args_is_help=True
)


def retrain_cmd(
    config: ConfigArg,
    set_: SetOpt = None,
    reason: Annotated[str, typer.Option(help="Why (recorded on the MLflow run as raylane.trigger).")] = "manual",
    result: Annotated[
        Path | None, typer.Option(help="Write the outcome here as JSON (the monitor reads it).", show_default=False)
    ] = None,
) -> None:
    """One pass of continuous training: ingest the newest data, add the labels from /feedback,
    materialize, train, register, gate and promote. The monitor submits it as a Ray job."""
    from raylane.retrain import retrain, write_result

    cfg = load(config, set_)
    with steps() as step, on_ray(cfg):
        outcome = retrain(cfg, reason, step=step)
    if result is not None:
        write_result(outcome, result)
    out.print(
        f"retrained ({escape(reason)}) in {outcome.seconds:.0f}s with {outcome.feedback_labels} feedback labels:"
        f" version {outcome.version}: {verdict(outcome.promoted)}: {escape(outcome.gate or '')}",
        soft_wrap=True,
    )


@monitor_app.command("start")
def monitor_start(config: ConfigArg, set_: SetOpt = None) -> None:
    """Start the project's monitor actor (detached, restartable); `serve deploy` also starts it.

    On a Ray cluster it returns at once; with the embedded Ray it runs in the foreground."""
    from raylane.monitoring import monitor_dir, start

    cfg = load(config, set_)
    local = embedded(cfg)  # decided before Ray starts, from the config and the environment as given
    with on_ray(cfg):
        start(cfg)
        out.print(f"[green]✓[/] monitor of {cfg.project} running; state and reports in {monitor_dir(cfg)}")
        if local:
            foreground("monitoring", lambda: None)


@monitor_app.command("stop")
def monitor_stop(config: ConfigArg, set_: SetOpt = None) -> None:
    """Stop the project's monitor on its Ray cluster (its state and reports stay on disk)."""
    from raylane.monitoring import stop

    cfg = load(config, set_)
    if embedded(cfg):
        raise UserError(
            "with the embedded Ray the monitor lives in the process that started it",
            fix="stop that process (Ctrl-C, or `raylane serve shutdown CONFIG` for a deployment)",
        )
    with on_ray(cfg):
        stopped = stop(cfg)
    out.print(f"stopped the monitor of {cfg.project}" if stopped else f"no monitor of {cfg.project} was running")


@monitor_app.command("status")
def monitor_status(
    config: ConfigArg,
    set_: SetOpt = None,
    last: Annotated[int, typer.Option(help="How many recent windows and decisions to show.")] = 10,
) -> None:
    """Recent windows (live traffic or batch scoring runs: rows, drifted features, failed checks, live
    metric), decisions and a running job."""
    from raylane.monitoring import MonitorStore

    cfg = load(config, set_)
    store = MonitorStore(cfg)
    windows = store.windows(last)
    if not windows and not store.has_run():
        out.print(f"{cfg.project}: the monitor has not run yet (`raylane monitor start CONFIG` or `serve deploy`)")
        return
    title = f"{cfg.project}: monitor windows ({store.open_profiles()} profiles in the open one)"
    table = Table(title=title, title_justify="left")
    for col in ("window", "source", "closed", "rows", "model", "drifted", "failed checks", "live metric", "decision"):
        table.add_column(col)
    for w in windows:
        live = w.live
        table.add_row(
            str(w.window),
            w.source,
            w.closed_at,
            str(w.rows),
            f"v{w.reference_version}" if w.reference_version else "—",
            ", ".join(w.drifted_features) or "none",
            str(len(w.failed_checks)),
            f"{live.metric} {live.value:.4f} (n={live.labelled})" if live and live.value is not None else "—",
            w.decision.action,
        )
    out.print(table)
    if running := store.in_flight():
        out.print(f"retrain running: job {running.job_id} since {running.submitted_at}")
    for d in store.decisions(last):
        out.print(f"{d.at}  {escape(d.text())}", soft_wrap=True)


@monitor_app.command("report")
def monitor_report(
    config: ConfigArg,
    set_: SetOpt = None,
    window: Annotated[int | None, typer.Option(help="The window (the latest when omitted).")] = None,
) -> None:
    """One window's report: drift per column, quality checks, live metric, decision, HTML path."""
    from raylane.monitoring import MonitorStore

    cfg = load(config, set_)
    store = MonitorStore(cfg)
    numbers = store.window_numbers()
    if not numbers:
        raise UserError(f"{cfg.project}: no monitor window has closed yet", fix="send traffic to the service first")
    w = store.window(numbers[-1] if window is None else window)
    if w is None:
        raise UserError(f"no window {window}", fix=f"windows are 1 to {numbers[-1]}")
    out.print(
        f"window {w.window} of {w.project}: {w.rows} rows ({w.authenticated_share:.0%} with the API key),"
        f" {w.opened_at} → {w.closed_at},"
        f" against champion v{w.reference_version}",
        soft_wrap=True,
    )
    table = Table(title="drift", title_justify="left")
    for col in ("column", "algorithm", "p-value", "statistic", "drifted"):
        table.add_column(col)
    for d in w.drift:
        drifted = "[red]yes[/]" if d.drifted else "no"
        table.add_row(d.column, d.algorithm, fmt(d.pvalue), fmt(d.statistic), drifted)
    out.print(table)
    for q in w.quality:
        if not q.passed:
            out.print(f"[yellow]quality check failed:[/] {escape(q.name)}", soft_wrap=True)
    theirs = f"challenger ({w.challenger.source or 'shadow'})" if w.challenger else "challenger"
    for who, live in (("champion", w.live), (theirs, w.challenger)):
        if live is not None:
            value = "—" if live.value is None else f"{live.value:.4f}"
            version = f" v{live.version}" if live.version else ""
            out.print(f"live {live.metric} of the {who}{version}: {value} on {live.labelled} labelled predictions")
    out.print(f"decision: {escape(w.decision.text())}", soft_wrap=True)
    if w.html:
        out.print(f"HTML report: {w.html}", soft_wrap=True)
