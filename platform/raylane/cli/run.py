"""``raylane run`` and ``demo``: the whole loop as one pipeline, and the example project end to end."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from raylane.cli._common import ConfigArg, SetOpt, embedded, fmt, foreground, load, on_ray, out, steps
from raylane.config import ProjectConfig
from raylane.errors import PipelineFailed, UserError

if TYPE_CHECKING:
    from raylane.pipeline import PipelineResult

__all__ = ["demo_app", "run_cmd"]

demo_app = typer.Typer(help="The example project: generate its data, run the whole loop.", no_args_is_help=True)


# --------------------------------------------------------------------------- pipeline


def _show_pipeline(cfg: ProjectConfig, result: PipelineResult) -> None:
    table = Table(title=f"pipeline of {cfg.project} (MLflow run {result.run_id})", title_justify="left")
    for col in ("step", "status", "fingerprint", "seconds", "why / outputs"):
        table.add_column(col)
    colours = {"ran": "green", "skipped": "cyan", "failed": "red"}
    for r in result.steps:
        detail = r.why if r.status != "ran" else ", ".join(f"{k}={fmt(v)}" for k, v in r.outputs.items())
        colour = colours.get(r.status, "dim")
        table.add_row(r.name, f"[{colour}]{r.status}[/]", r.fingerprint, f"{r.seconds:.1f}", escape(detail[:160]))
    out.print(table)


def run_cmd(
    config: ConfigArg,
    set_: SetOpt = None,
    start: Annotated[
        str | None, typer.Option("--from", help="First step: ingest, features, train, deploy, monitor or predict.")
    ] = None,
    until: Annotated[str | None, typer.Option("--until", help="Last step (the same names).")] = None,
    sweep: Annotated[bool, typer.Option("--sweep", help="The train step runs a Ray Tune sweep.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Run every step, even with unchanged inputs.")] = False,
) -> None:
    """Run the loop as one pipeline: ingest → features → train (or sweep; register and gate) → deploy
    → monitor → predict (batch scores, when batch.pipeline_entities is set). Steps whose inputs are
    unchanged since their last success are skipped; a failing step stops the run and leaves the
    registry and serving as they were. Recorded as an MLflow run.

    With the embedded Ray a run that deploys keeps serving in the foreground (Ctrl-C stops it)."""
    from raylane.pipeline import STEPS, run_pipeline

    cfg = load(config, set_, model=True)
    local = embedded(cfg)
    with steps() as step, on_ray(cfg):
        try:
            result = run_pipeline(cfg, start=start, until=until, sweep=sweep, force=force, embedded=local, step=step)
        except PipelineFailed as exc:
            _show_pipeline(cfg, exc.result)
            raise
        _show_pipeline(cfg, result)
        if local and STEPS.index(start or STEPS[0]) <= STEPS.index("deploy") <= STEPS.index(until or STEPS[-1]):
            from raylane.serving import undeploy

            foreground("serving", lambda: undeploy(cfg))


# --------------------------------------------------------------------------- demo


@demo_app.command("data")
def demo_data(
    example: Annotated[
        str, typer.Option(help="churn (binary, tabular) | tickets (multiclass, text, your own model).")
    ] = "churn",
    output: Annotated[
        Path | None, typer.Option("--out", "-o", help="Folder for the raw files (default: data/<example>).")
    ] = None,
    size: Annotated[str, typer.Option(help="tiny | small | medium | large (churn).")] = "small",
    seed: Annotated[int | None, typer.Option(help="Random seed (the size's default when omitted).")] = None,
    drift_start_day: Annotated[
        int | None, typer.Option(help="Day from which features and labels drift; none when omitted.")
    ] = None,
    drift_strength: Annotated[float, typer.Option(help="How strong the drift is (churn).")] = 1.0,
    customers: Annotated[int | None, typer.Option(help="Override the size's customer count (churn).")] = None,
    labels: Annotated[int | None, typer.Option(help="Override the size's label (ticket) count.")] = None,
) -> None:
    """Generate an example's raw sources (deterministic for a given seed): churn for configs/churn.yaml,
    tickets for configs/tickets.yaml."""
    from dataclasses import replace

    from raylane.examples import churn, tickets

    generators: dict[str, Any] = {"churn": churn, "tickets": tickets}
    if example not in generators:
        raise UserError(f"--example {example!r} is not an example", fix=f"use one of {', '.join(generators)}")
    module = generators[example]
    if size not in module.SIZES:
        raise UserError(f"--size {size!r} is not a {example} size", fix=f"use one of {', '.join(module.SIZES)}")
    changes: dict[str, Any] = {"drift_start_day": drift_start_day}
    if example == "churn":
        changes["drift_strength"] = drift_strength
    elif customers is not None:
        raise UserError("--customers is for the churn example", fix="use --labels for the number of tickets")
    count = "labels" if example == "churn" else "tickets"
    for name, value in (("seed", seed), ("customers", customers), (count, labels)):
        if value is not None:
            changes[name] = value
    spec = replace(module.SIZES[size], **changes)
    started = time.perf_counter()
    paths = module.write(spec, output or Path("data") / example)
    table = Table(
        title=f"{example} data ({size}, seed {spec.seed}) in {time.perf_counter() - started:.1f}s",
        title_justify="left",
    )
    table.add_column("table")
    table.add_column("file")
    table.add_column("size")
    for name, path in paths.items():
        table.add_row(name, str(path), f"{path.stat().st_size / 1e6:.1f} MB")
    out.print(table)


@demo_app.command("run")
def demo_run(
    config: Annotated[Path, typer.Argument(help="Project config.")] = Path("configs/churn.yaml"),
    set_: SetOpt = None,
    size: Annotated[str, typer.Option(help="Data size to generate.")] = "small",
) -> None:
    """Run the whole loop on the example: data → ingest → features → train → registry gate → sweep → serve
    → monitor → drifted data → drift → retrain job → new champion served."""
    from raylane.demo import run_demo

    cfg = load(config, set_)
    with steps() as step, on_ray(cfg):
        summary = run_demo(cfg, size=size, step=step)
    table = Table(title=f"raylane demo: project {cfg.project}", title_justify="left")
    table.add_column("step")
    table.add_column("result")
    table.add_column("seconds", justify="right")
    for name, result, seconds in summary:
        table.add_row(name, result, f"{seconds:.1f}")
    out.print(table)
