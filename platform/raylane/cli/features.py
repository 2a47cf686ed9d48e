"""``raylane features``: ingest raw data and serve features through Feast (offline tables, online store,
point-in-time training sets)."""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from raylane.cli._common import ConfigArg, SetOpt, err, fmt, load, on_ray, out, parse_time, state, steps
from raylane.config import ProjectConfig
from raylane.errors import UserError

__all__ = ["features_app"]

features_app = typer.Typer(help="Ingest raw data and serve features through Feast.", no_args_is_help=True)


@features_app.command("ingest")
def features_ingest(
    config: ConfigArg,
    set_: SetOpt = None,
    source: Annotated[list[str] | None, typer.Option("--source", help="Only this source (repeatable).")] = None,
) -> None:
    """Read, validate and write the raw sources as offline tables (Ray Data)."""
    from raylane.ingest import ingest

    cfg = load(config, set_)
    with steps() as step, on_ray(cfg):
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

    cfg = load(config, set_)
    with steps() as step:
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

    cfg = load(config, set_)
    if incremental and start:
        raise UserError("--start and --incremental exclude each other", fix="drop one of them")
    repo = FeatureRepo(cfg, verbose=state.verbose)
    # Only a Ray offline store needs a Ray session to read the offline tables.
    with steps() as step, on_ray(cfg) if cfg.backends.feast.offline_store.type == "ray" else nullcontext():
        step("materializing" + (" incrementally" if incremental else ""))
        reports = repo.materialize(
            parse_time(start, "--start"), parse_time(end, "--end"), views=view, incremental=incremental
        )
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


def _entity_keys(cfg: ProjectConfig, keys: list[str]) -> list[Any]:
    """The command line's keys typed as the entity's join key."""
    if cfg.entity.dtype != "int64":
        return list(keys)
    try:
        return [int(k) for k in keys]
    except ValueError:
        raise UserError(
            f"entity keys of {cfg.entity.name!r} are integers; got {keys}", fix="pass integer keys"
        ) from None


@features_app.command("online")
def features_online(
    config: ConfigArg,
    keys: Annotated[list[str], typer.Argument(help="Entity keys to look up.", show_default=False)],
    set_: SetOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of a table.")] = False,
) -> None:
    """Look up served features for entity keys in the online store."""
    from raylane.features import FeatureRepo

    cfg = load(config, set_)
    result = FeatureRepo(cfg, verbose=state.verbose).online().get(_entity_keys(cfg, keys))
    if as_json:
        print(json.dumps(result, default=str))
        return
    key = cfg.entity.join_key
    table = Table(title="online features", title_justify="left")
    table.add_column("feature")
    for k in result[key]:
        table.add_column(f"{key}={k}")
    for name in cfg.feature_dtypes():
        table.add_row(name, *(fmt(v) for v in result[name]))
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

    cfg = load(config, set_)
    repo = FeatureRepo(cfg, verbose=state.verbose)
    with steps() as step, on_ray(cfg):
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
            fmt(example),
        )
    out.print(summary)
