"""``raylane predict``: batch inference of a registered model over many entities (Ray Data)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from raylane.cli._common import ConfigArg, SetOpt, err, load, on_ray, out, steps
from raylane.errors import UserError

__all__ = ["predict_cmd"]


def _when(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f"--as-of {text!r} is not an ISO time", fix="write e.g. 2025-03-01T12:00:00+00:00") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def predict_cmd(
    config: ConfigArg,
    entities: Annotated[
        str,
        typer.Option(
            help="A parquet or csv file or folder with the entity key (and optionally the time column and"
            " request-time feature values), or `all`: every entity in the offline tables."
        ),
    ],
    out_path: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Output folder (parquet files and _summary.json); <storage_root>/scores/<model>-v<version>-<time>"
            " when omitted.",
        ),
    ] = None,
    model: Annotated[str, typer.Option(help="`name@alias`, `name/version`, `@alias` or `alias`.")] = "@champion",
    as_of: Annotated[
        str | None, typer.Option(help="Features as of this time for rows without their own time (default: now).")
    ] = None,
    features: Annotated[
        str, typer.Option(help="`offline` (point-in-time, the training set's join) or `online`.")
    ] = "offline",
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out.")] = False,
    set_: SetOpt = None,
) -> None:
    """Score many entities with a registered model on Ray Data: Feast features (offline as of each
    row's time, or online) → the model, in a pool of actors → parquet, tracked as an MLflow run."""
    from raylane.batch import predict, time_column

    if features not in ("offline", "online"):
        raise UserError(f"--features {features!r} is not offline or online", fix="pass --features offline or online")
    when = _when(as_of)
    cfg = load(config, set_)
    with steps() as step, on_ray(cfg):
        report = predict(
            cfg,
            entities=entities,
            out=out_path,
            model=model,
            as_of=when,
            features="online" if features == "online" else "offline",
            overwrite=overwrite,
            step=step,
        )
    out.print(
        f"scored {report.rows_out} of {report.rows_in} row(s) with {report.model_name} v{report.model_version}"
        f" ({report.features} features; {report.rows_missing_features} without stored features) in"
        f" {report.seconds:.0f}s → {report.out}",
        soft_wrap=True,
    )
    out.print(f"MLflow run {report.run_id}", soft_wrap=True)
    expected = time_column(cfg)
    if report.ignored_columns:
        err.print(
            f"[yellow]note[/]: --entities columns {', '.join(report.ignored_columns)} were not read: each is"
            f" neither the key `{cfg.entity.join_key}`, the time column `{expected}` (batch.time_column)"
            " nor a feature",
            soft_wrap=True,
        )
    if report.features == "offline" and report.time_column is None and when is None:
        where = "--entities all has no time column" if entities == "all" else f"--entities has no `{expected}` column"
        err.print(
            f"[yellow]note[/]: {where}: every row's features are as of now (pass --as-of"
            + (")" if entities == "all" else ", or name your time column in batch.time_column)"),
            soft_wrap=True,
        )
