"""``raylane train``, ``sweep``, ``registry`` and ``lineage``: making model versions, and reading and moving them.

Training and sweeps register a challenger and run the promotion gate; ``registry`` lists, shows, promotes
and rolls back versions; ``lineage`` says what a version was made from.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from raylane.cli._common import ConfigArg, SetOpt, err, fmt, load, on_ray, out, state, steps, verdict
from raylane.config import ProjectConfig
from raylane.errors import UserError

if TYPE_CHECKING:
    from raylane.sweep import SweepProgress, SweepResult
    from raylane.timing import Stopwatch

__all__ = ["lineage_cmd", "registry_app", "sweep_cmd", "train_cmd"]

registry_app = typer.Typer(help="Model versions, aliases and promotion (MLflow registry).", no_args_is_help=True)


# --------------------------------------------------------------------------- train


def train_cmd(
    config: ConfigArg,
    set_: SetOpt = None,
    reproduce: Annotated[
        str | None,
        typer.Option(help="Retrain MODEL/VERSION (or @alias) from its recorded config and compare metrics."),
    ] = None,
    no_register: Annotated[bool, typer.Option("--no-register", help="Train and track only.")] = False,
) -> None:
    """Train on Ray Train, track in MLflow, register a challenger and run the promotion gate."""
    cfg = load(config, set_, model=reproduce is None)
    if reproduce is not None:
        _reproduce(cfg, reproduce)
        return
    from raylane.timing import Stopwatch
    from raylane.training import train

    timer = Stopwatch()
    started = time.perf_counter()
    with steps() as step, on_ray(cfg):
        timer.add("Ray start", time.perf_counter() - started)
        result = train(cfg, register=not no_register, step=step, timer=timer)
        stopping = time.perf_counter()
    timer.add("Ray stop", time.perf_counter() - stopping)
    table = Table(
        title=f"trained {cfg.model_name} in {result.seconds:.0f}s ({result.epochs} epochs)", title_justify="left"
    )
    table.add_column("holdout metric")
    table.add_column("value", justify="right")
    for k, v in result.metrics.items():
        table.add_row(k, f"{v:.4f}")
    out.print(table)
    out.print(f"MLflow run {result.run_id} ({cfg.mlflow_tracking_uri})", soft_wrap=True)
    if result.version is not None and result.decision is not None:
        out.print(
            f"version {result.version}: {verdict(result.promoted)}: {escape(result.decision.reason)}", soft_wrap=True
        )
    _print_timings(timer, time.perf_counter() - started)


def _print_timings(timer: Stopwatch, total: float) -> None:
    """Where the time went: each stage's seconds and share of the command's wall time."""
    table = Table(title=f"where the {total:.1f}s went", title_justify="left")
    for col in ("stage", "seconds", "share"):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for name, seconds in timer.rows(total):
        table.add_row(name, f"{seconds:.1f}", f"{seconds / total:.0%}" if total > 0 else "—")
    out.print(table)


def _reproduce(cfg: ProjectConfig, ref: str) -> None:
    """``train --reproduce``: retrain a version from its recorded config and compare its holdout metrics."""
    from raylane.training import REPRODUCE_TOLERANCE
    from raylane.training import reproduce as do_reproduce

    with steps() as step, on_ray(cfg):
        rep = do_reproduce(cfg, ref, step=step)
    table = Table(title=f"reproducing {rep.ref} (tolerance ±{REPRODUCE_TOLERANCE})", title_justify="left")
    for col in ("holdout metric", "recorded", "retrained", "difference"):
        table.add_column(col)
    for k, v in rep.recorded.items():
        new_v = rep.retrained.get(k, float("nan"))
        table.add_row(k, f"{v:.4f}", f"{new_v:.4f}", f"{new_v - v:+.4f}")
    out.print(table)
    out.print(
        f"code: {'same commit' if rep.same_code else 'different commit'} "
        f"({(rep.lineage_then.git_sha or '?')[:12]} → {(rep.lineage_now.git_sha or '?')[:12]}); "
        f"data: {'same' if rep.same_data else 'changed'} (hash {rep.lineage_then.data_hash or None} → "
        f"{rep.lineage_now.data_hash or None}); model code: the version's logged copy"
        f" ({(rep.lineage_then.model_code_hash or 'built-in')[:12]})",
        soft_wrap=True,
    )
    if not rep.matches:
        raise UserError(
            f"{rep.ref} did not reproduce within ±{REPRODUCE_TOLERANCE}",
            fix="compare the code and data lines above: a changed commit or data explains a difference",
        )
    out.print(f"[green]✓[/] {rep.ref} reproduced")


# --------------------------------------------------------------------------- sweep


def _show_progress(p: SweepProgress) -> None:
    best = f"best {p.metric} {p.best:.4f} ({p.best_trial})" if p.best is not None else "no result yet"
    err.print(
        f"[dim]{time.strftime('%H:%M:%S')}[/] {escape(p.event)} · running {p.running}, done {p.completed},"
        f" stopped early {p.stopped_early}, failed {p.failed}, pending {p.pending} of {p.total} · {best}",
        highlight=False,
        soft_wrap=True,
    )


def sweep_cmd(
    config: ConfigArg,
    set_: SetOpt = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted sweep (the latest, or --name).")
    ] = False,
    name: Annotated[str | None, typer.Option(help="Sweep name (default: a new unique one).")] = None,
    no_register: Annotated[bool, typer.Option("--no-register", help="Do not register the best model.")] = False,
) -> None:
    """Search hyperparameters with Ray Tune (each trial a Ray Train run; random, grid, Optuna or HyperOpt
    search; ASHA, PBT or FIFO scheduling), track every trial as a nested MLflow run, and register the best
    model through the promotion gate."""
    from raylane.sweep import sweep

    cfg = load(config, set_, model=True)
    with steps() as step, on_ray(cfg):
        result = sweep(
            cfg,
            name=name,
            resume=resume,
            register=not no_register,
            step=step,
            on_progress=_show_progress,
            verbose=state.verbose,
        )
    _print_trials(cfg, result)
    _print_rungs(result)
    params = ", ".join(f"{k}={fmt(v)}" for k, v in result.best.params.items())
    out.print(f"best trial {result.best.trial_id}: val_{result.metric} {fmt(result.best.best)} with {params}")
    out.print(f"MLflow parent run {result.parent_run_id} ({cfg.mlflow_tracking_uri})", soft_wrap=True)
    trained = result.train
    if trained is not None:
        scores = ", ".join(f"{k} {v:.4f}" for k, v in trained.metrics.items())
        out.print(f"holdout: {scores}")
        if trained.version is not None and trained.decision is not None:
            out.print(
                f"version {trained.version}: {verdict(trained.promoted)}: {escape(trained.decision.reason)}",
                soft_wrap=True,
            )


def _print_trials(cfg: ProjectConfig, result: SweepResult) -> None:
    """The sweep's trials, best first (the best marked ★)."""
    table = Table(
        title=f"sweep {result.name} ({cfg.tune.search.type} search, {cfg.tune.scheduler.type}):"
        f" {len(result.trials)} trials in {result.seconds:.0f}s, {result.concurrency} at a time;"
        f" {result.trial_epochs} of {result.planned_epochs} trial-epochs ({result.epochs_saved} saved)",
        title_justify="left",
    )
    for col in ("trial", *cfg.tune.space, f"best val_{result.metric}", "epochs", "outcome", "seconds"):
        table.add_column(col, justify="right" if col not in ("trial", "outcome") else "left")
    ranked = sorted(
        result.trials, key=lambda t: (t.best is None, -(t.best or 0.0) if result.mode == "max" else (t.best or 0.0))
    )
    for t in ranked:
        mark = "★ " if t is result.best else ""
        table.add_row(
            mark + t.trial_id,
            *(fmt(t.params.get(k)) for k in cfg.tune.space),
            fmt(t.best),
            str(t.epochs),
            t.outcome.replace("_", " "),
            f"{t.seconds:.0f}",
        )
    out.print(table)


def _print_rungs(result: SweepResult) -> None:
    """The best trial at each rung (the epochs where the scheduler compares trials)."""
    table = Table(title="best trial per rung", title_justify="left")
    for col in ("epoch", "trials reached", "best trial", f"val_{result.metric}"):
        table.add_column(col, justify="left" if col == "best trial" else "right")
    for r in result.rungs:
        table.add_row(str(r.epoch), str(r.reached), r.best_trial or "—", fmt(r.best))
    out.print(table)


# --------------------------------------------------------------------------- registry


@registry_app.command("list")
def registry_list(config: ConfigArg, set_: SetOpt = None) -> None:
    """List the versions of the project's model with aliases, metrics and gate decisions."""
    from raylane.registry import Registry

    cfg = load(config, set_)
    reg = Registry(cfg)
    aliases: dict[str, list[str]] = {}
    for alias, version in reg.aliases().items():
        aliases.setdefault(str(version), []).append(alias)
    table = Table(title=f"registered model {cfg.model_name}", title_justify="left")
    for col in ("version", "aliases", "gate", "metric", "created", "git sha", "data hash"):
        table.add_column(col)
    for mv in reg.versions():
        t = mv.tags
        table.add_row(
            str(mv.version),
            ", ".join(aliases.get(str(mv.version), [])),
            t.get("gate.decision", ""),
            f"{t.get('gate.metric', '')} {t.get('gate.challenger', '')}",
            datetime.fromtimestamp(mv.creation_timestamp / 1000).strftime("%Y-%m-%d %H:%M"),
            t.get("git_sha", "")[:10],
            t.get("data_hash", ""),
        )
    out.print(table)


@registry_app.command("show")
def registry_show(
    config: ConfigArg,
    ref: Annotated[str, typer.Argument(help="VERSION, @alias, MODEL/VERSION or MODEL@alias.")] = "@champion",
    set_: SetOpt = None,
) -> None:
    """Show one version: aliases, tags (lineage, gate decision) and its run's metrics."""
    from raylane.registry import Registry

    cfg = load(config, set_)
    reg = Registry(cfg)
    mv = reg.version(ref)
    run = reg.client.get_run(mv.run_id)
    table = Table(title=f"{mv.name} version {mv.version}", title_justify="left", show_header=False)
    table.add_row("aliases", ", ".join(a for a, v in reg.aliases().items() if str(v) == str(mv.version)))
    table.add_row("run", mv.run_id)
    for k, v in sorted(mv.tags.items()):
        table.add_row(k, escape(str(v)))
    for k, v in sorted(run.data.metrics.items()):
        if k.startswith("holdout_"):
            table.add_row(k, f"{v:.4f}")
    out.print(table)


@registry_app.command("promote")
def registry_promote(
    config: ConfigArg,
    version: Annotated[str, typer.Argument(help="Version to promote to champion.")],
    set_: SetOpt = None,
    force: Annotated[bool, typer.Option(help="Skip the gate (the reason is recorded).")] = False,
) -> None:
    """Promote a version to champion through the gate (on the current holdout)."""
    from raylane.registry import Registry

    cfg = load(config, set_)
    reg = Registry(cfg)
    mv = reg.version(version)
    if force:
        reg.promote(str(mv.version), "promoted by hand with --force (gate skipped)")
        out.print(f"version {mv.version} is champion (gate skipped)")
        return
    from raylane.training import holdout_frame

    with steps() as step, on_ray(cfg):
        step("building the holdout")
        holdout = holdout_frame(cfg)
        step("evaluating challenger and champion")
        decision = reg.gate_and_promote(str(mv.version), holdout)
    outcome = "[green]promoted[/]" if decision.passed else "[yellow]not promoted[/]"
    out.print(f"version {mv.version}: {outcome}: {escape(decision.reason)}", soft_wrap=True)
    if not decision.passed:
        raise typer.Exit(1)


@registry_app.command("rollback")
def registry_rollback(config: ConfigArg, set_: SetOpt = None) -> None:
    """Move champion back to the previous champion."""
    from raylane.registry import Registry

    cfg = load(config, set_)
    before, after = Registry(cfg).rollback()
    out.print(f"champion: version {before} → version {after}")


# --------------------------------------------------------------------------- lineage


def lineage_cmd(
    config: ConfigArg,
    ref: Annotated[str, typer.Argument(help="MODEL@alias, MODEL/VERSION, @alias or VERSION.")] = "@champion",
    set_: SetOpt = None,
) -> None:
    """What a model was made from: code, data, config, metrics and its parent version."""
    from raylane.training import recorded_config

    cfg = load(config, set_)
    then_cfg, mv, run = recorded_config(cfg, ref)
    t = mv.tags
    table = Table(title=f"lineage of {mv.name} version {mv.version}", title_justify="left", show_header=False)
    rows = [
        ("code", f"git {t.get('git_sha', '?')} (dirty: {t.get('git_dirty', '?')})"),
        ("config", f"hash {t.get('config_hash', '?')[:16]}…, artifact runs:/{mv.run_id}/config/project.yaml"),
        (
            "data",
            f"views {t.get('data_views')}; {t.get('data_rows')} rows; label time "
            f"{t.get('data_label_time_min')} → {t.get('data_label_time_max')}; hash {t.get('data_hash')}",
        ),
        ("run", f"MLflow run {mv.run_id}; Ray job {t.get('ray_job_id', '?')}"),
        ("parent", f"version {t['parent_version']}" if t.get("parent_version") else "none (first model)"),
        ("gate", f"{t.get('gate.decision', '?')}: {t.get('gate.reason', '')}"),
        (
            "metrics",
            ", ".join(
                f"{k.removeprefix('holdout_')} {v:.4f}"
                for k, v in sorted(run.data.metrics.items())
                if k.startswith("holdout_")
            ),
        ),
        ("seed", str(then_cfg.train.seed)),
    ]
    for k, v in rows:
        table.add_row(k, escape(v))
    out.print(table)
