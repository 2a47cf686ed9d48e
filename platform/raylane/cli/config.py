"""``raylane config``: validate, show and describe project configs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from raylane.cli._common import ConfigArg, SetOpt, err, out
from raylane.config import config_schema, load_config

__all__ = ["config_app"]

config_app = typer.Typer(help="Validate, show and describe project configs.", no_args_is_help=True)


@config_app.command("validate")
def config_validate(config: ConfigArg, set_: SetOpt = None) -> None:
    """Check a config; print what it declares. A ``model.entrypoint`` is imported and its model built
    and run on a 2-row probe batch, a ``train.loop`` imported (no Ray started, nothing written)."""
    from raylane.contract import check_entrypoint, check_loop

    cfg = load_config(config, set_ or [])  # reads only: no storage root made
    code = check_entrypoint(cfg)
    loop = check_loop(cfg)
    model = f"model {code.origin} ({len(code.files)} file(s) logged)" if code else "the built-in MLP"
    if loop is not None:
        model += f", training loop {loop.origin}"
    out.print(
        f"[green]✓[/] {config}: project [bold]{cfg.project}[/], {len(cfg.data.sources)} sources, "
        f"{len(cfg.features.views)} feature views, {len(cfg.feature_dtypes())} features, task {cfg.model.task},"
        f" {model}",
        soft_wrap=True,
    )


@config_app.command("show")
def config_show(
    config: ConfigArg,
    set_: SetOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of YAML.")] = False,
) -> None:
    """Print the resolved config: overrides applied, paths absolute, every default filled in."""
    cfg = load_config(config, set_ or [])  # reads only: no storage root made
    if as_json:
        print(json.dumps(cfg.model_dump(mode="json"), indent=2))
    else:
        print(cfg.to_yaml(), end="")


def _write_or_print(text: str, output: Path | None) -> None:
    if output is None:
        print(text, end="")
    else:
        output.write_text(text)
        err.print(f"wrote {output}")


@config_app.command("schema")
def config_schema_cmd(
    output: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file.")] = None,
) -> None:
    """Print the JSON Schema of project configs (for editors: yaml-language-server)."""
    _write_or_print(json.dumps(config_schema(), indent=2) + "\n", output)


@config_app.command("reference")
def config_reference_cmd(
    output: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file.")] = None,
) -> None:
    """Print the config reference (Markdown) generated from the models: docs/config.md."""
    from raylane.config import config_reference

    _write_or_print(config_reference(), output)
