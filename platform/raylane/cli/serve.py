"""``raylane serve``: deploy the project's prediction service on Ray Serve, inspect it, query it, stop it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from raylane.cli._common import ConfigArg, SetOpt, embedded, fmt, foreground, load, on_ray, out, steps
from raylane.config import ProjectConfig
from raylane.errors import UserError

__all__ = ["serve_app"]

serve_app = typer.Typer(help="Online inference on Ray Serve: deploy, inspect, query, stop.", no_args_is_help=True)


@serve_app.command("deploy")
def serve_deploy(config: ConfigArg, set_: SetOpt = None) -> None:
    """Deploy the project's prediction service (the registry's champion) on Ray Serve.

    On a Ray cluster (backends.ray.address) it returns once the application is running; with the
    embedded Ray it serves in the foreground until Ctrl-C or `raylane serve shutdown CONFIG`.
    Run it again after changing the config to roll the replicas over without downtime."""
    from raylane.serving import deploy, preflight, undeploy

    cfg = load(config, set_)
    local = embedded(cfg)
    preflight(cfg)  # a missing model, Feast repo or API key is reported before Ray starts
    with steps() as step, on_ray(cfg):
        step(f"deploying {cfg.project} ({cfg.model_name}@{cfg.serve.model_alias}) on Ray Serve")
        record = deploy(cfg, embedded=local)
        out.print(
            f"[green]✓[/] serving {record.model_name} version {record.model_version} at {record.url}"
            f" (API docs: {record.url}/docs)",
            soft_wrap=True,
        )
        if not local:
            return

        def stop() -> None:
            step("stopping: replicas write their buffered inference log")
            undeploy(cfg)

        foreground("serving", stop, hint="Ctrl-C or `raylane serve shutdown CONFIG` stops it")
    out.print(f"stopped {cfg.project}")


@serve_app.command("status")
def serve_status(config: ConfigArg, set_: SetOpt = None) -> None:
    """Where the service runs, whether it answers, the model version it serves, and its replicas."""
    from raylane.serving import status

    cfg = load(config, set_)
    info = status(cfg)
    record = info.record
    if record is None:
        out.print(f"{cfg.project}: no deployment recorded")
    else:
        where = f"embedded Ray in pid {record.pid}" if record.embedded else f"Ray at {record.ray_address}"
        out.print(f"{cfg.project}: deployed {record.deployed_at} on {where}")
    if not info.answers or info.metadata is None:
        error = escape(str(info.health.get("error", "")))
        out.print(f"[red]✗[/] {info.url} does not answer: {error}", soft_wrap=True)
        raise typer.Exit(1)
    meta = info.metadata
    m = meta["model"]
    out.print(f"[green]✓[/] {info.url} answers: {m['name']} version {m['version']} (@{m['alias']})", soft_wrap=True)
    if active := (meta.get("rollout") or {}).get("active"):
        split = (
            f" answering {active['percent']:g}% of entities (step {active['step'] + 1})" if "percent" in active else ""
        )
        out.print(f"  rollout: {active['mode']} of version {active['challenger']}{split}, since {active['since']}")
    lineage = meta.get("lineage", {})
    out.print(
        f"  run {m['run_id']}, git {lineage.get('git_sha', '?')[:12]}, data {lineage.get('data_hash', '?')},"
        f" {len(meta['features'])} features, auth {'on' if meta['auth'] else 'off'}",
        soft_wrap=True,
    )
    for name, d in (info.serve.deployments if info.serve else {}).items():
        replicas = ", ".join(f"{n} {k.lower()}" for k, n in d.replicas.items())
        out.print(f"  deployment {name}: {d.status}, replicas: {replicas}")


def _entities(cfg: ProjectConfig, entity: list[str] | None, body: str | None) -> list[dict[str, Any]]:
    """The request's entities: from a whole JSON body (text or @FILE), or one per ``--entity`` key."""
    key = cfg.entity.join_key
    if body is not None:
        text = Path(body[1:]).read_text() if body.startswith("@") else body
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"--json is not valid JSON: {exc}", fix="quote it for the shell, or pass @file") from None
        return doc["entities"] if isinstance(doc, dict) and "entities" in doc else [doc]
    if not entity:
        raise UserError("nothing to predict", fix=f"--entity <{key}> (repeatable) or --json '{{\"{key}\": …}}'")
    dtype = cfg.data.source(cfg.features.views[0].source).columns[key].dtype

    def typed(v: str) -> Any:
        if dtype != "int64":
            return v
        try:
            return int(v)
        except ValueError:
            raise UserError(f"--entity {v!r}: {key} is an integer", fix="--entity 42") from None

    return [{key: typed(v)} for v in entity]


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

    cfg = load(config, set_)
    entities = _entities(cfg, entity, body)
    client = Client(cfg)
    try:
        answer = client.predict(entities)
    finally:
        client.close()
    key = cfg.entity.join_key
    m = answer["model"]
    table = Table(title=f"{m['name']} version {m['version']} · request {answer['request_id']}", title_justify="left")
    table.add_column(key)
    table.add_column("prediction", justify="right")
    for p in answer["predictions"]:
        table.add_row(str(p[key]), fmt(p["prediction"]) + (" (imputed)" if p.get("imputed") else ""))
    out.print(table)


@serve_app.command("shutdown")
def serve_shutdown(config: ConfigArg, set_: SetOpt = None) -> None:
    """Stop the project's service (its replicas flush the inference log first)."""
    from raylane.serving import shutdown

    cfg = load(config, set_)
    out.print(shutdown(cfg))
