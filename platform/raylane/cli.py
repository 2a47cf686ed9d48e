"""The ``raylane`` command line. Thin: parse arguments, load the config, call a stage, print.

Errors: a `UserError` prints its message and fix and exits 2; any other error is internal and
exits 1. Neither prints a traceback unless ``--debug`` is given.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from raylane._version import __version__
from raylane.config import ProjectConfig, config_schema, load_config
from raylane.errors import RaylaneError, UserError
from raylane.jobs import ENTRYPOINTS

__all__ = ["app", "main"]

out = Console()
err = Console(stderr=True)


class _State:
    debug = False
    verbose = False


state = _State()

app = typer.Typer(
    name="raylane",
    help="raylane: an MLOps platform on Ray. Features (Feast) → training (Ray Train/Tune, MLflow) → "
    "serving (Ray Serve) → monitoring (whylogs), from one project config.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
config_app = typer.Typer(help="Validate, show and describe project configs.", no_args_is_help=True)
features_app = typer.Typer(help="Ingest raw data and serve features through Feast.", no_args_is_help=True)
demo_app = typer.Typer(help="The example project: generate its data, run the whole loop.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(features_app, name="features")
registry_app = typer.Typer(help="Model versions, aliases and promotion (MLflow registry).", no_args_is_help=True)
app.add_typer(demo_app, name="demo")
app.add_typer(registry_app, name="registry")
serve_app = typer.Typer(help="Online inference on Ray Serve: deploy, inspect, query, stop.", no_args_is_help=True)
app.add_typer(serve_app, name="serve")
monitor_app = typer.Typer(
    help="Continuous monitoring: drift, quality and live metric per window; the retrain policy.", no_args_is_help=True
)
app.add_typer(monitor_app, name="monitor")
job_app = typer.Typer(
    help="Ray jobs of raylane's allow-listed entrypoints: submit, status, logs, stop, list.", no_args_is_help=True
)
app.add_typer(job_app, name="job")
cluster_app = typer.Typer(
    help="A local multi-node Ray cluster on this machine (`ray start` head and workers).", no_args_is_help=True
)
app.add_typer(cluster_app, name="cluster")

ConfigArg = Annotated[Path, typer.Argument(help="Project config (YAML).", show_default=False)]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a field: a.b.c=value (repeatable).", show_default=False),
]


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show Ray's and Feast's own logs.")] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    state.debug, state.verbose = debug, verbose
    if version:
        out.print(f"raylane {__version__}")
        raise typer.Exit()


# --------------------------------------------------------------------------- helpers


def _load(config: Path, overrides: list[str] | None) -> ProjectConfig:
    return load_config(config, overrides or [])


@contextmanager
def _steps() -> Iterator[Callable[[str], Any]]:
    """A progress display; ``step(text)`` starts a spinner line that completes on the next step."""
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
        disable=not err.is_terminal,
    ) as progress:
        current: list[Any] = []

        def step(text: str) -> None:
            if current:
                progress.update(current[-1], completed=1, total=1)
            current.append(progress.add_task(text, total=None))
            if not err.is_terminal:
                err.print(f"• {text}")

        yield step
        if current:
            progress.update(current[-1], completed=1, total=1)


def _ray(cfg: ProjectConfig) -> Any:
    from raylane.runtime import ray_session

    return ray_session(cfg.backends.ray, verbose=state.verbose)


def _time(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise UserError(
            f"{option} {value!r} is not a date or time", fix="write it as ISO 8601, e.g. 2025-03-01 or 2025-03-01T12:00"
        ) from None


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


# --------------------------------------------------------------------------- config


@config_app.command("validate")
def config_validate(config: ConfigArg, set_: SetOpt = None) -> None:
    """Check a config; print what it declares."""
    cfg = _load(config, set_)
    out.print(
        f"[green]✓[/] {config}: project [bold]{cfg.project}[/], {len(cfg.data.sources)} sources, "
        f"{len(cfg.features.views)} feature views, {len(cfg.feature_dtypes())} features, task {cfg.model.task}",
        soft_wrap=True,
    )


@config_app.command("show")
def config_show(
    config: ConfigArg,
    set_: SetOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of YAML.")] = False,
) -> None:
    """Print the resolved config: overrides applied, paths absolute, every default filled in."""
    cfg = _load(config, set_)
    if as_json:
        print(json.dumps(cfg.model_dump(mode="json"), indent=2))
    else:
        print(cfg.to_yaml(), end="")


@config_app.command("schema")
def config_schema_cmd(
    output: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file.")] = None,
) -> None:
    """Print the JSON Schema of project configs (for editors: yaml-language-server)."""
    text = json.dumps(config_schema(), indent=2)
    if output is None:
        print(text)
    else:
        output.write_text(text + "\n")
        err.print(f"wrote {output}")


@config_app.command("reference")
def config_reference_cmd(
    output: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file.")] = None,
) -> None:
    """Print the config reference (Markdown) generated from the models: docs/config.md."""
    from raylane.config import config_reference

    text = config_reference()
    if output is None:
        print(text, end="")
    else:
        output.write_text(text)
        err.print(f"wrote {output}")


# --------------------------------------------------------------------------- features


@features_app.command("ingest")
def features_ingest(
    config: ConfigArg,
    set_: SetOpt = None,
    source: Annotated[list[str] | None, typer.Option("--source", help="Only this source (repeatable).")] = None,
) -> None:
    """Read, validate and write the raw sources as offline tables (Ray Data)."""
    from raylane.ingest import ingest

    cfg = _load(config, set_)
    with _steps() as step, _ray(cfg):
        step("reading and checking sources")
        reports = ingest(cfg, sources=source, on_done=lambda r: step(f"{r.source}: {r.rows:,} rows checked"))
        step("writing offline tables")
    table = Table(title="ingested", title_justify="left")
    for col in ("source", "files", "rows", "columns", "from", "to", "most nulls"):
        table.add_column(col)
    for r in reports:
        worst = max(r.null_fraction.items(), key=lambda kv: kv[1])
        table.add_row(
            r.source,
            str(r.files),
            f"{r.rows:,}",
            str(r.columns),
            f"{r.min_time:%Y-%m-%d %H:%M}",
            f"{r.max_time:%Y-%m-%d %H:%M}",
            f"{worst[0]} {worst[1]:.1%}",
        )
    out.print(table)


@features_app.command("apply")
def features_apply(config: ConfigArg, set_: SetOpt = None) -> None:
    """Render the Feast repo from the config and register it (entity, sources, views, service)."""
    from raylane.features import FeatureRepo

    cfg = _load(config, set_)
    with _steps() as step:
        step("rendering the Feast repo")
        repo = FeatureRepo(cfg, verbose=state.verbose)
        repo.render()
        step("applying to the Feast registry")
        views = repo.apply()
    table = Table(title=f"Feast repo {repo.path}", title_justify="left")
    for col in ("feature view", "source", "ttl", "features", "online"):
        table.add_column(col)
    for v in cfg.features.views:
        if v.name in views:
            table.add_row(v.name, v.source, str(v.ttl), ", ".join(cfg.view_features(v)), "yes" if v.online else "no")
    out.print(table)
    out.print(f"feature service: [bold]{cfg.feature_service_name}[/]")


@features_app.command("materialize")
def features_materialize(
    config: ConfigArg,
    set_: SetOpt = None,
    start: Annotated[str | None, typer.Option(help="Window start (ISO 8601); the oldest row when omitted.")] = None,
    end: Annotated[str | None, typer.Option(help="Window end (ISO 8601); now when omitted.")] = None,
    incremental: Annotated[bool, typer.Option(help="Continue from each view's last materialization.")] = False,
    view: Annotated[list[str] | None, typer.Option("--view", help="Only this feature view (repeatable).")] = None,
) -> None:
    """Load feature rows from the offline tables into the online store."""
    from raylane.features import FeatureRepo

    cfg = _load(config, set_)
    if incremental and start:
        raise UserError("--start and --incremental exclude each other", fix="drop one of them")
    repo = FeatureRepo(cfg, verbose=state.verbose)
    with _steps() as step, _ray(cfg) if cfg.backends.feast.offline_store.type == "ray" else nullcontext():
        step("materializing" + (" incrementally" if incremental else ""))
        reports = repo.materialize(_time(start, "--start"), _time(end, "--end"), views=view, incremental=incremental)
    table = Table(title="materialized", title_justify="left")
    for col in ("feature view", "from", "to", "rows in window", "note"):
        table.add_column(col)
    for r in reports:
        table.add_row(
            r.view,
            f"{r.start:%Y-%m-%d %H:%M}",
            f"{r.end:%Y-%m-%d %H:%M}",
            f"{r.rows:,}",
            "empty window, skipped" if r.skipped else "",
        )
    out.print(table)


@features_app.command("online")
def features_online(
    config: ConfigArg,
    keys: Annotated[list[str], typer.Argument(help="Entity keys to look up.", show_default=False)],
    set_: SetOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
) -> None:
    """Look up served features for entity keys in the online store."""
    from raylane.features import FeatureRepo

    cfg = _load(config, set_)
    parsed: list[Any] = keys
    if cfg.entity.dtype == "int64":
        try:
            parsed = [int(k) for k in keys]
        except ValueError:
            raise UserError(
                f"entity keys of {cfg.entity.name!r} are integers; got {keys}", fix="pass integer keys"
            ) from None
    result = FeatureRepo(cfg, verbose=state.verbose).online().get(parsed)
    if as_json:
        print(json.dumps(result, default=str))
        return
    key = cfg.entity.join_key
    table = Table(title="online features", title_justify="left")
    table.add_column("feature")
    for k in result[key]:
        table.add_column(f"{key}={k}")
    for name in cfg.feature_dtypes():
        table.add_row(name, *(_fmt(v) for v in result[name]))
    out.print(table)
    if unknown := [
        k
        for k, *vals in zip(result[key], *(result[n] for n in cfg.feature_dtypes()), strict=True)
        if all(v is None for v in vals)
    ]:
        err.print(f"no online features for {key} {unknown} (unknown entity, or never materialized)")


@features_app.command("training-set")
def features_training_set(
    config: ConfigArg,
    set_: SetOpt = None,
    output: Annotated[Path | None, typer.Option("--out", "-o", help="Also write it as a parquet file.")] = None,
) -> None:
    """Build the point-in-time correct training set from the label table."""
    from raylane.features import FeatureRepo

    cfg = _load(config, set_)
    repo = FeatureRepo(cfg, verbose=state.verbose)
    with _steps() as step, _ray(cfg):
        step("joining labels to features point-in-time (Feast)")
        ds = repo.training_set()
        step("summarizing")
        table = _to_arrow(ds)
        if output is not None:
            import pyarrow.parquet as pq

            output.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, output)
    _print_training_summary(cfg, table)
    if output is not None:
        out.print(f"wrote {output}")


def _to_arrow(ds: Any) -> Any:
    import pyarrow as pa
    import ray

    return pa.concat_tables(ray.get(ds.to_arrow_refs()))


def _print_training_summary(cfg: ProjectConfig, table: Any) -> None:
    label = cfg.data.labels.column
    summary = Table(title=f"training set: {table.num_rows:,} rows", title_justify="left")
    for col in ("column", "type", "null", "example"):
        summary.add_column(col)
    for name in table.column_names:
        col = table.column(name)
        example = next((v for v in col.to_pylist()[:50] if v is not None), None)
        summary.add_row(
            name + (" (label)" if name == label else ""),
            str(col.type),
            f"{col.null_count / max(table.num_rows, 1):.1%}",
            _fmt(example),
        )
    out.print(summary)


# --------------------------------------------------------------------------- training and registry


@app.command("train")
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
    from raylane.train import REPRODUCE_TOLERANCE, train
    from raylane.train import reproduce as do_reproduce

    cfg = _load(config, set_)
    if reproduce is not None:
        with _steps() as step, _ray(cfg):
            rep = do_reproduce(cfg, reproduce, step=step)
        table = Table(title=f"reproducing {rep.ref} (tolerance ±{REPRODUCE_TOLERANCE})", title_justify="left")
        for col in ("holdout metric", "recorded", "retrained", "difference"):
            table.add_column(col)
        for k, v in rep.recorded.items():
            new_v = rep.retrained.get(k, float("nan"))
            table.add_row(k, f"{v:.4f}", f"{new_v:.4f}", f"{new_v - v:+.4f}")
        out.print(table)
        out.print(
            f"code: {'same commit' if rep.same_code else 'different commit'} "
            f"({rep.lineage_then.get('git_sha', '?')[:12]} → {rep.lineage_now.get('git_sha', '?')[:12]}); "
            f"data: {'same' if rep.same_data else 'changed'} (hash {rep.lineage_then.get('data_hash')} → "
            f"{rep.lineage_now.get('data_hash')})",
            soft_wrap=True,
        )
        if not rep.matches:
            raise UserError(
                f"{rep.ref} did not reproduce within ±{REPRODUCE_TOLERANCE}",
                fix="compare the code and data lines above: a changed commit or data explains a difference",
            )
        out.print(f"[green]✓[/] {rep.ref} reproduced")
        return
    with _steps() as step, _ray(cfg):
        result = train(cfg, register=not no_register, step=step)
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
        verdict = "[green]promoted to champion[/]" if result.promoted else "[yellow]stays challenger[/]"
        out.print(f"version {result.version}: {verdict}: {escape(result.decision.reason)}", soft_wrap=True)


@app.command("sweep")
def sweep_cmd(
    config: ConfigArg,
    set_: SetOpt = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted sweep (the latest, or --name).")
    ] = False,
    name: Annotated[str | None, typer.Option(help="Sweep name (default: a new unique one).")] = None,
    no_register: Annotated[bool, typer.Option("--no-register", help="Do not register the best model.")] = False,
) -> None:
    """Search hyperparameters with Ray Tune (each trial a Ray Train run, ASHA early stopping), track every
    trial as a nested MLflow run, and register the best model through the promotion gate."""
    from raylane.sweep import SweepProgress, sweep

    cfg = _load(config, set_)

    def show(p: SweepProgress) -> None:
        best = f"best {p.metric} {p.best:.4f} ({p.best_trial})" if p.best is not None else "no result yet"
        err.print(
            f"[dim]{time.strftime('%H:%M:%S')}[/] {escape(p.event)} · running {p.running}, done {p.completed},"
            f" stopped early {p.stopped_early}, failed {p.failed}, pending {p.pending} of {p.total} · {best}",
            highlight=False,
            soft_wrap=True,
        )

    with _steps() as step, _ray(cfg):
        result = sweep(
            cfg, name=name, resume=resume, register=not no_register, step=step, on_progress=show, verbose=state.verbose
        )
    table = Table(
        title=f"sweep {result.name}: {len(result.trials)} trials in {result.seconds:.0f}s, {result.concurrency} at a"
        f" time; {result.trial_epochs} trial-epochs",
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
            *(_fmt(t.params.get(k)) for k in cfg.tune.space),
            _fmt(t.best),
            str(t.epochs),
            t.outcome.replace("_", " "),
            f"{t.seconds:.0f}",
        )
    out.print(table)
    params = ", ".join(f"{k}={_fmt(v)}" for k, v in result.best.params.items())
    out.print(f"best trial {result.best.trial_id}: val_{result.metric} {_fmt(result.best.best)} with {params}")
    out.print(f"MLflow parent run {result.parent_run_id} ({cfg.mlflow_tracking_uri})", soft_wrap=True)
    trained = result.train
    if trained is not None:
        scores = ", ".join(f"{k} {v:.4f}" for k, v in trained.metrics.items())
        out.print(f"holdout: {scores}")
        if trained.version is not None and trained.decision is not None:
            verdict = "[green]promoted to champion[/]" if trained.promoted else "[yellow]stays challenger[/]"
            out.print(f"version {trained.version}: {verdict}: {escape(trained.decision.reason)}", soft_wrap=True)


@registry_app.command("list")
def registry_list(config: ConfigArg, set_: SetOpt = None) -> None:
    """List the versions of the project's model with aliases, metrics and gate decisions."""
    from raylane.registry import Registry

    cfg = _load(config, set_)
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

    cfg = _load(config, set_)
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

    cfg = _load(config, set_)
    reg = Registry(cfg)
    mv = reg.version(version)
    if force:
        reg.promote(str(mv.version), "promoted by hand with --force (gate skipped)")
        out.print(f"version {mv.version} is champion (gate skipped)")
        return
    from raylane.model import metrics
    from raylane.train import holdout_frame

    with _steps() as step, _ray(cfg):
        step("building the holdout")
        holdout = holdout_frame(cfg)
        step("evaluating challenger and champion")
        bundle = reg.load_bundle(str(mv.version))
        scores = metrics(cfg.model.task, bundle.target(holdout), bundle.predict(holdout))
        decision = reg.gate(str(mv.version), holdout, scores)
        reg.record(decision)
        if decision.passed:
            reg.promote(str(mv.version), decision.reason)
    verdict = "[green]promoted[/]" if decision.passed else "[yellow]not promoted[/]"
    out.print(f"version {mv.version}: {verdict}: {escape(decision.reason)}", soft_wrap=True)
    if not decision.passed:
        raise typer.Exit(1)


@registry_app.command("rollback")
def registry_rollback(config: ConfigArg, set_: SetOpt = None) -> None:
    """Move champion back to the previous champion."""
    from raylane.registry import Registry

    cfg = _load(config, set_)
    before, after = Registry(cfg).rollback()
    out.print(f"champion: version {before} → version {after}")


@serve_app.command("deploy")
def serve_deploy(config: ConfigArg, set_: SetOpt = None) -> None:
    """Deploy the project's prediction service (the registry's champion) on Ray Serve.

    On a Ray cluster (backends.ray.address) it returns once the application is running; with the
    embedded Ray it serves in the foreground until Ctrl-C or `raylane serve shutdown CONFIG`.
    Run it again after changing the config to roll the replicas over without downtime."""
    import signal

    from raylane.serving import deploy, preflight, undeploy

    cfg = _load(config, set_)
    embedded = cfg.backends.ray.address == "local" and not os.environ.get("RAY_ADDRESS")
    preflight(cfg)  # a missing model, Feast repo or API key is reported before Ray starts
    with _steps() as step, _ray(cfg):
        step(f"deploying {cfg.project} ({cfg.model_name}@{cfg.serve.model_alias}) on Ray Serve")
        record = deploy(cfg, embedded=embedded)
        out.print(
            f"[green]✓[/] serving {record.model_name} version {record.model_version} at {record.url}"
            f" (API docs: {record.url}/docs)",
            soft_wrap=True,
        )
        if not embedded:
            return

        def stop(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, stop)
        err.print("serving in the foreground (embedded Ray): Ctrl-C or `raylane serve shutdown CONFIG` stops it")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            step("stopping: replicas write their buffered inference log")
            undeploy(cfg)
    out.print(f"stopped {cfg.project}")


@serve_app.command("status")
def serve_status(config: ConfigArg, set_: SetOpt = None) -> None:
    """Where the service runs, whether it answers, the model version it serves, and its replicas."""
    from raylane.serving import status

    cfg = _load(config, set_)
    info = status(cfg)
    health, record = info["health"], info["record"]
    if record is None:
        out.print(f"{cfg.project}: no deployment recorded")
    else:
        where = f"embedded Ray in pid {record['pid']}" if record["embedded"] else f"Ray at {record['ray_address']}"
        out.print(f"{cfg.project}: deployed {record['deployed_at']} on {where}")
    if health.get("status") != "ok":
        out.print(f"[red]✗[/] {info['url']} does not answer: {escape(str(health.get('error', '')))}", soft_wrap=True)
        raise typer.Exit(1)
    meta = info["metadata"]
    m = meta["model"]
    out.print(f"[green]✓[/] {info['url']} answers: {m['name']} version {m['version']} (@{m['alias']})", soft_wrap=True)
    lineage = meta.get("lineage", {})
    out.print(
        f"  run {m['run_id']}, git {lineage.get('git_sha', '?')[:12]}, data {lineage.get('data_hash', '?')},"
        f" {len(meta['features'])} features, auth {'on' if meta['auth'] else 'off'}",
        soft_wrap=True,
    )
    for name, d in (info.get("serve") or {}).get("deployments", {}).items():
        replicas = ", ".join(f"{n} {k.lower()}" for k, n in d["replicas"].items())
        out.print(f"  deployment {name}: {d['status']}, replicas: {replicas}")


@serve_app.command("predict")
def serve_predict(
    config: ConfigArg,
    entity: Annotated[
        list[str] | None, typer.Option("--entity", "-e", help="A join key value (repeatable).", show_default=False)
    ] = None,
    body: Annotated[
        str | None, typer.Option("--json", help="A whole request body: JSON text, or @FILE.", show_default=False)
    ] = None,
    set_: SetOpt = None,
) -> None:
    """Ask the running service for predictions (uses the configured API key)."""
    from raylane.serving import Client

    cfg = _load(config, set_)
    key = cfg.entity.join_key
    if body is not None:
        text = Path(body[1:]).read_text() if body.startswith("@") else body
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"--json is not valid JSON: {exc}", fix="quote it for the shell, or pass @file") from None
        entities = doc["entities"] if isinstance(doc, dict) and "entities" in doc else [doc]
    elif entity:
        dtype = cfg.data.source(cfg.features.views[0].source).columns[key].dtype

        def typed(v: str) -> Any:
            if dtype != "int64":
                return v
            try:
                return int(v)
            except ValueError:
                raise UserError(f"--entity {v!r}: {key} is an integer", fix="--entity 42") from None

        entities = [{key: typed(v)} for v in entity]
    else:
        raise UserError("nothing to predict", fix=f"--entity <{key}> (repeatable) or --json '{{\"{key}\": …}}'")
    client = Client(cfg)
    try:
        answer = client.predict(entities)
    finally:
        client.close()
    m = answer["model"]
    table = Table(title=f"{m['name']} version {m['version']} · request {answer['request_id']}", title_justify="left")
    table.add_column(key)
    table.add_column("prediction", justify="right")
    for p in answer["predictions"]:
        table.add_row(str(p[key]), _fmt(p["prediction"]) + (" (imputed)" if p.get("imputed") else ""))
    out.print(table)


@serve_app.command("shutdown")
def serve_shutdown(config: ConfigArg, set_: SetOpt = None) -> None:
    """Stop the project's service (its replicas flush the inference log first)."""
    from raylane.serving import shutdown

    cfg = _load(config, set_)
    out.print(shutdown(cfg))


@app.command("retrain")
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

    cfg = _load(config, set_)
    with _steps() as step, _ray(cfg):
        outcome = retrain(cfg, reason, step=step)
    if result is not None:
        write_result(outcome, result)
    verdict = "[green]promoted to champion[/]" if outcome.promoted else "[yellow]stays challenger[/]"
    out.print(
        f"retrained ({escape(reason)}) in {outcome.seconds:.0f}s with {outcome.feedback_labels} feedback labels:"
        f" version {outcome.version}: {verdict}: {escape(outcome.gate or '')}",
        soft_wrap=True,
    )


def _foreground(what: str, on_stop: Callable[[], object]) -> None:
    """Keep an embedded Ray's work alive until Ctrl-C or SIGTERM, then run ``on_stop``."""
    import signal

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    err.print(f"{what} in the foreground (embedded Ray): Ctrl-C stops it")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        on_stop()


@monitor_app.command("start")
def monitor_start(config: ConfigArg, set_: SetOpt = None) -> None:
    """Start the project's monitor actor (detached, restartable); `serve deploy` also starts it.

    On a Ray cluster it returns at once; with the embedded Ray it runs in the foreground."""
    from raylane.monitoring import monitor_dir, start

    cfg = _load(config, set_)
    embedded = cfg.backends.ray.address == "local" and not os.environ.get("RAY_ADDRESS")
    with _ray(cfg):
        start(cfg)
        out.print(f"[green]✓[/] monitor of {cfg.project} running; state and reports in {monitor_dir(cfg)}")
        if embedded:
            _foreground("monitoring", lambda: None)


@monitor_app.command("stop")
def monitor_stop(config: ConfigArg, set_: SetOpt = None) -> None:
    """Stop the project's monitor on its Ray cluster (its state and reports stay on disk)."""
    from raylane.monitoring import stop

    cfg = _load(config, set_)
    if cfg.backends.ray.address == "local" and not os.environ.get("RAY_ADDRESS"):
        raise UserError(
            "with the embedded Ray the monitor lives in the process that started it",
            fix="stop that process (Ctrl-C, or `raylane serve shutdown CONFIG` for a deployment)",
        )
    with _ray(cfg):
        stopped = stop(cfg)
    out.print(f"stopped the monitor of {cfg.project}" if stopped else f"no monitor of {cfg.project} was running")


def _decision_text(d: dict[str, Any]) -> str:
    if d.get("action") == "retrain_ended":
        res = d.get("result") or {}
        made = f": version {res.get('version')} {'promoted' if res.get('promoted') else 'not promoted'}" if res else ""
        return f"retrain job {d['job_id']} {d['status']}{made}"
    if d.get("action") == "retrain":
        return f"retrain submitted as job {d.get('job_id')} ({d.get('status')}) — {'; '.join(d.get('reasons', []))}"
    if d.get("action") == "skipped":
        return f"trigger skipped ({d.get('why')}) — {'; '.join(d.get('reasons', []))}"
    return str(d.get("action"))


@monitor_app.command("status")
def monitor_status(
    config: ConfigArg,
    set_: SetOpt = None,
    last: Annotated[int, typer.Option(help="How many recent windows and decisions to show.")] = 10,
) -> None:
    """Recent windows (rows, drifted features, failed checks, live metric), decisions and a running job."""
    from raylane.monitoring import monitor_dir, read_decisions, read_windows

    cfg = _load(config, set_)
    windows = read_windows(cfg, last)
    if not windows and not (monitor_dir(cfg) / "inbox").is_dir():
        out.print(f"{cfg.project}: the monitor has not run yet (`raylane monitor start CONFIG` or `serve deploy`)")
        return
    open_rows = sum(1 for _ in (monitor_dir(cfg) / "inbox").glob("*.bin"))
    table = Table(title=f"{cfg.project}: monitor windows ({open_rows} profiles in the open one)", title_justify="left")
    for col in ("window", "closed", "rows", "model", "drifted features", "failed checks", "live metric", "decision"):
        table.add_column(col)
    for w in windows:
        live = w.get("live") or {}
        table.add_row(
            str(w["window"]),
            w["closed_at"],
            str(w["rows"]),
            f"v{w['reference_version']}" if w.get("reference_version") else "—",
            ", ".join(w["drifted_features"]) or "none",
            str(len(w["failed_checks"])),
            f"{live['metric']} {live['value']:.4f} (n={live['labelled']})" if live.get("value") is not None else "—",
            w["decision"].get("action", "none"),
        )
    out.print(table)
    state_file = monitor_dir(cfg) / "state.json"
    state = json.loads(state_file.read_text()) if state_file.is_file() else {}
    if state.get("in_flight"):
        out.print(f"retrain running: job {state['in_flight']['job_id']} since {state['in_flight']['submitted_at']}")
    for d in read_decisions(cfg, last):
        out.print(f"{d['at']}  {escape(_decision_text(d))}", soft_wrap=True)


@monitor_app.command("report")
def monitor_report(
    config: ConfigArg,
    set_: SetOpt = None,
    window: Annotated[int | None, typer.Option(help="The window (the latest when omitted).")] = None,
) -> None:
    """One window's report: drift per column, quality checks, live metric, decision, HTML path."""
    from raylane.monitoring import read_windows

    cfg = _load(config, set_)
    windows = read_windows(cfg)
    if not windows:
        raise UserError(f"{cfg.project}: no monitor window has closed yet", fix="send traffic to the service first")
    chosen = windows[-1] if window is None else next((w for w in windows if w["window"] == window), None)
    if chosen is None:
        raise UserError(f"no window {window}", fix=f"windows are 1 to {windows[-1]['window']}")
    w = chosen
    out.print(
        f"window {w['window']} of {w['project']}: {w['rows']} rows, {w['opened_at']} → {w['closed_at']},"
        f" against champion v{w['reference_version']}",
        soft_wrap=True,
    )
    table = Table(title="drift", title_justify="left")
    for col in ("column", "algorithm", "p-value", "statistic", "drifted"):
        table.add_column(col)
    for d in w["drift"]:
        drifted = "[red]yes[/]" if d["drifted"] else "no"
        table.add_row(d["column"], d["algorithm"], _fmt(d["pvalue"]), _fmt(d["statistic"]), drifted)
    out.print(table)
    for q in w["quality"]:
        if not q["passed"]:
            out.print(f"[yellow]quality check failed:[/] {escape(q['name'])}", soft_wrap=True)
    live = w.get("live") or {}
    if live:
        value = "—" if live.get("value") is None else f"{live['value']:.4f}"
        out.print(f"live {live['metric']}: {value} on {live['labelled']} labelled predictions")
    out.print(f"decision: {escape(_decision_text(w['decision']))}", soft_wrap=True)
    if w.get("html"):
        out.print(f"HTML report: {w['html']}", soft_wrap=True)


# --------------------------------------------------------------------------- pipeline


@app.command("run")
def run_cmd(
    config: ConfigArg,
    set_: SetOpt = None,
    start: Annotated[
        str | None, typer.Option("--from", help="First step: ingest, features, train, deploy or monitor.")
    ] = None,
    until: Annotated[str | None, typer.Option("--until", help="Last step (the same names).")] = None,
    sweep: Annotated[bool, typer.Option("--sweep", help="The train step runs a Ray Tune sweep.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Run every step, even with unchanged inputs.")] = False,
) -> None:
    """Run the loop as one pipeline: ingest → features → train (or sweep; register and gate) → deploy
    → monitor. Steps whose inputs are unchanged since their last success are skipped; a failing
    step stops the run and leaves the registry and serving as they were. Recorded as an MLflow run.

    With the embedded Ray a run that deploys keeps serving in the foreground (Ctrl-C stops it)."""
    from raylane.pipeline import STEPS, PipelineFailed, PipelineResult, run_pipeline

    cfg = _load(config, set_)
    embedded = cfg.backends.ray.address == "local" and not os.environ.get("RAY_ADDRESS")

    def show(result: PipelineResult) -> None:
        table = Table(title=f"pipeline of {cfg.project} (MLflow run {result.run_id})", title_justify="left")
        for col in ("step", "status", "fingerprint", "seconds", "why / outputs"):
            table.add_column(col)
        colours = {"ran": "green", "skipped": "cyan", "failed": "red"}
        for r in result.steps:
            detail = r.why if r.status != "ran" else ", ".join(f"{k}={_fmt(v)}" for k, v in r.outputs.items())
            colour = colours.get(r.status, "dim")
            table.add_row(r.name, f"[{colour}]{r.status}[/]", r.fingerprint, f"{r.seconds:.1f}", escape(detail[:160]))
        out.print(table)

    with _steps() as step, _ray(cfg):
        try:
            result = run_pipeline(cfg, start=start, until=until, sweep=sweep, force=force, embedded=embedded, step=step)
        except PipelineFailed as exc:
            show(exc.result)
            raise
        show(result)
        if embedded and STEPS.index(start or STEPS[0]) <= STEPS.index("deploy") <= STEPS.index(until or STEPS[-1]):
            from raylane.serving import undeploy

            _foreground("serving", lambda: undeploy(cfg))


# --------------------------------------------------------------------------- jobs

AddressOpt = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="The cluster's job API (http://host:8265); backends.ray.address, the local cluster or RAY_ADDRESS"
        " when omitted.",
        show_default=False,
    ),
]


def _follow(job_client: Any, job_id: str, *, poll_s: float = 1.0) -> str:
    """Print the job's log as it grows until it ends; returns its final status."""
    from raylane.jobs import TERMINAL

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


@job_app.command(
    "submit", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}, no_args_is_help=True
)
def job_submit(
    ctx: typer.Context,
    config: ConfigArg,
    name: Annotated[str, typer.Argument(metavar="ENTRYPOINT", help=f"One of: {', '.join(ENTRYPOINTS)}.")],
    set_: SetOpt = None,
    address: AddressOpt = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Stream the job's log until it ends; exit 1 if it fails.")
    ] = False,
    pip: Annotated[
        list[str] | None,
        typer.Option("--pip", help="A requirement the cluster installs for this job (repeatable).", show_default=False),
    ] = None,
    job_id: Annotated[str | None, typer.Option("--job-id", help="The submission id; Ray's when omitted.")] = None,
) -> None:
    """Submit an allow-listed entrypoint as a Ray job, with this config (resolved here, --set applied).

    Arguments after `--` go to the job's script, e.g. `raylane job submit CONFIG sweep -- --resume`."""
    from raylane.jobs import project_client, submit_project_job

    cfg = _load(config, set_)
    url, submitted = submit_project_job(cfg, name, address=address, extra=list(ctx.args), pip=pip, submission_id=job_id)
    out.print(f"[green]✓[/] submitted {name} as job [bold]{submitted}[/] to {url}")
    if wait:
        _, job_client = project_client(cfg, url)
        status = _follow(job_client, submitted)
        out.print(f"job {submitted}: {status}")
        if status != "SUCCEEDED":
            raise typer.Exit(1)
    else:
        out.print(f"follow it with `raylane job logs {config} {submitted} --follow`")


@job_app.command("status")
def job_status(
    config: ConfigArg, job_id: Annotated[str, typer.Argument(help="Submission id.")], address: AddressOpt = None
) -> None:
    """A job's status, entrypoint, times and message."""
    from raylane.jobs import project_client

    _, job_client = project_client(_load(config, None), address)
    info = _job_info(job_client, job_id)
    out.print(f"{job_id}: [bold]{info.status.value}[/]")
    meta = info.metadata or {}
    out.print(f"  entrypoint: {meta.get('raylane.entrypoint', '—')} ({escape(info.entrypoint)})", soft_wrap=True)
    for label, ms in (("started", info.start_time), ("ended", info.end_time)):
        if ms:
            out.print(f"  {label}: {datetime.fromtimestamp(ms / 1000):%Y-%m-%d %H:%M:%S}")
    if info.message:
        out.print(f"  message: {escape(info.message)}", soft_wrap=True)


def _job_info(job_client: Any, job_id: str) -> Any:
    try:
        return job_client.get_job_info(job_id)
    except RuntimeError as exc:
        if "does not exist" in str(exc):
            raise UserError(f"no job {job_id!r} on this cluster", fix="`raylane job list CONFIG` shows them") from None
        raise


@job_app.command("logs")
def job_logs(
    config: ConfigArg,
    job_id: Annotated[str, typer.Argument(help="Submission id.")],
    address: AddressOpt = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the job ends.")] = False,
) -> None:
    """A job's log (driver output)."""
    from raylane.jobs import project_client

    _, job_client = project_client(_load(config, None), address)
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

    _, job_client = project_client(_load(config, None), address)
    status = _job_info(job_client, job_id).status.value
    if status in ("SUCCEEDED", "FAILED", "STOPPED"):
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

    cfg = _load(config, None)
    url, job_client = project_client(cfg, address)
    jobs = [j for j in job_client.list_jobs() if all_ or (j.metadata or {}).get("raylane.project") == cfg.project]
    jobs.sort(key=lambda j: j.start_time or 0, reverse=True)
    table = Table(title=f"jobs of {'every project' if all_ else cfg.project} on {url}", title_justify="left")
    table.add_column("submission id", no_wrap=True)
    for col in ("entrypoint", "status", "started", "ended"):
        table.add_column(col)
    for j in jobs:
        table.add_row(
            j.submission_id or j.job_id or "—",
            (j.metadata or {}).get("raylane.entrypoint", escape(j.entrypoint)[:40]),
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

    cfg = _load(config, set_)
    with _steps() as step:
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

    c = cluster.down(_load(config, set_))
    out.print(f"stopped the local cluster ({len(c.nodes)} nodes)" if c else "no local cluster is recorded")


@cluster_app.command("status")
def cluster_status(config: ConfigArg, set_: SetOpt = None) -> None:
    """The local cluster's nodes: processes, and the nodes Ray reports alive."""
    from raylane import cluster

    st = cluster.status(_load(config, set_))
    if st is None:
        out.print("no local cluster is recorded; `raylane cluster up CONFIG` starts one")
        raise typer.Exit(1)
    c = st["cluster"]
    alive = "unreachable" if st["alive_nodes"] is None else f"{st['alive_nodes']} nodes alive, {st['cpus']:g} CPUs"
    out.print(f"local cluster since {c.started_at}: {alive}; drivers {c.address}; job API {c.dashboard_url}")
    for node in c.nodes:
        up_ = "[green]running[/]" if st["processes"][node.pid] else "[red]gone[/]"
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
    cfg = _load(config, None)
    for path in render(kind, cfg, config, out_dir / kind):
        out.print(f"wrote {path}")


@app.command("lineage")
def lineage_cmd(
    config: ConfigArg,
    ref: Annotated[str, typer.Argument(help="MODEL@alias, MODEL/VERSION, @alias or VERSION.")] = "@champion",
    set_: SetOpt = None,
) -> None:
    """What a model was made from: code, data, config, metrics and its parent version."""
    from raylane.train import recorded_config

    cfg = _load(config, set_)
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


# --------------------------------------------------------------------------- demo


@demo_app.command("data")
def demo_data(
    output: Annotated[Path, typer.Option("--out", "-o", help="Folder for the raw files.")] = Path("data/churn"),
    size: Annotated[str, typer.Option(help="tiny | small | medium | large.")] = "small",
    seed: Annotated[int | None, typer.Option(help="Random seed (the size's default when omitted).")] = None,
    drift_start_day: Annotated[
        int | None, typer.Option(help="Day from which features and labels drift; none when omitted.")
    ] = None,
    drift_strength: Annotated[float, typer.Option(help="How strong the drift is.")] = 1.0,
    customers: Annotated[int | None, typer.Option(help="Override the size's customer count.")] = None,
    labels: Annotated[int | None, typer.Option(help="Override the size's label count.")] = None,
) -> None:
    """Generate the churn example's raw sources (deterministic for a given seed)."""
    from dataclasses import replace

    from raylane.examples.churn import SIZES, write

    if size not in SIZES:
        raise UserError(f"--size {size!r} is not a size", fix=f"use one of {', '.join(SIZES)}")
    spec = SIZES[size]
    changes: dict[str, Any] = {"drift_start_day": drift_start_day, "drift_strength": drift_strength}
    for name, value in (("seed", seed), ("customers", customers), ("labels", labels)):
        if value is not None:
            changes[name] = value
    spec = replace(spec, **changes)
    started = time.perf_counter()
    paths = write(spec, output)
    table = Table(
        title=f"churn data ({size}, seed {spec.seed}) in {time.perf_counter() - started:.1f}s", title_justify="left"
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

    cfg = _load(config, set_)
    with _steps() as step, _ray(cfg):
        summary = run_demo(cfg, size=size, step=step)
    table = Table(title=f"raylane demo: project {cfg.project}", title_justify="left")
    table.add_column("step")
    table.add_column("result")
    table.add_column("seconds", justify="right")
    for name, result, seconds in summary:
        table.add_row(name, result, f"{seconds:.1f}")
    out.print(table)


# --------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (2 user error, 1 internal error)."""
    args = sys.argv[1:] if argv is None else argv
    state.debug = "--debug" in args or os.environ.get("RAYLANE_DEBUG") == "1"
    try:
        code = app(args=args, prog_name="raylane", standalone_mode=False)
        if isinstance(code, int):  # click returns a `typer.Exit`'s code when not standalone
            return code
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except typer.Abort:
        err.print("aborted")
        return 130
    except typer.TyperException as exc:  # usage errors: unknown command, bad option…
        show = getattr(exc, "show", None)
        if show is not None:
            show(file=sys.stderr)
        else:
            err.print(str(exc))
        return int(getattr(exc, "exit_code", 2))
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    except RaylaneError as exc:
        if state.debug:
            err.print_exception()
        kind = "error" if isinstance(exc, UserError) else "internal error"
        err.print(f"[bold red]{kind}:[/] {escape(exc.message)}", highlight=False, soft_wrap=True)
        if exc.fix:
            err.print(f"[bold]fix:[/] {escape(exc.fix)}", highlight=False, soft_wrap=True)
        return exc.exit_code
    except Exception as exc:  # an internal error: a bug to report
        if state.debug:
            traceback.print_exc()
        err.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {escape(str(exc))}", highlight=False, soft_wrap=True
        )
        err.print("rerun with --debug for the traceback, and please report it")
        return 1
    return 0


def entrypoint() -> None:
    """Console-script entry point."""
    sys.exit(main())
