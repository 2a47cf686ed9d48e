"""``raylane rollout``: start a rollout, see where it stands, end it by hand (promote or abort)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from raylane.cli._common import ConfigArg, SetOpt, load, out

__all__ = ["rollout_app"]

rollout_app = typer.Typer(
    help="Rollouts (serve.rollout): the challenger beside the champion, shadowed or as a canary,"
    " judged on live labels.",
    no_args_is_help=True,
)

ReasonOpt = Annotated[str, typer.Option(help="Why (recorded on the challenger's version as rollout.reason).")]


@rollout_app.command("start")
def rollout_start(
    config: ConfigArg,
    version: Annotated[str, typer.Argument(help="The registered version to roll out beside the champion.")],
    mode: Annotated[str | None, typer.Option(help="shadow or canary (default: serve.rollout.mode).")] = None,
    set_: SetOpt = None,
) -> None:
    """Roll VERSION out beside the champion, shadowed or as a canary.

    Training does this itself for a version that passes the gate when serve.rollout.mode is
    shadow or canary."""
    from raylane.registry import Registry

    cfg = load(config, set_)
    r = Registry(cfg).start_rollout(version, mode)
    split = f" answering {r.percent:g}% of entities" if r.mode == "canary" else " scoring every request off the path"
    out.print(f"{r.mode} rollout of version {r.challenger} started beside champion {r.champion}:{split}")


@rollout_app.command("status")
def rollout_status(
    config: ConfigArg,
    set_: SetOpt = None,
    last: Annotated[int, typer.Option(help="Windows and decisions to show.")] = 10,
) -> None:
    """The rollout in progress, the monitor's judgement and decisions, both live metrics.

    Shows the mode, step and split, the monitor's latest judgement of a canary, the rollout
    decisions with their evidence, and both models' live metric per monitor window."""
    from raylane.monitoring import MonitorStore
    from raylane.registry import Registry

    cfg = load(config, set_)
    reg = Registry(cfg)
    champion, challenger = reg.rollout()
    r = reg.current_rollout()
    if r is None:
        ended = reg.version(challenger).tags.get("rollout", "none") if challenger else "none"
        shown = f"v{challenger} (rollout: {ended})" if challenger else "none (challenger is the champion)"
        out.print(f"{cfg.project}: no rollout in progress; champion v{champion or '—'}; challenger {shown}")
    else:
        split = ""
        if r.mode == "canary":
            steps = ", ".join(f"{s:g}%" for s in cfg.serve.rollout.steps)
            split = (
                f" at step {r.step + 1} of {len(cfg.serve.rollout.steps)} ({steps}):"
                f" {r.percent:g}% since {r.step_since:%Y-%m-%d %H:%M:%S}"
            )
        out.print(
            f"{cfg.project}: {r.mode} rollout of v{r.challenger} beside champion v{r.champion}{split}"
            f" (began {r.since:%Y-%m-%d %H:%M:%S})"
        )
    store = MonitorStore(cfg)
    if r is not None and r.mode == "canary" and (judged := store.judgement()):
        out.print(
            f"monitor's judgement at {judged['at']}: {judged['action']} — {escape(judged['reason'])}", soft_wrap=True
        )
    for d in [d for d in store.decisions(None) if d.action == "rollout"][-last:]:
        out.print(f"{d.at}: {escape(d.text())}", soft_wrap=True)
    table = Table(title="live metric per window", title_justify="left")
    for col in ("window", "closed", "champion", "challenger"):
        table.add_column(col)
    for w in store.windows(last):
        if w.source != "live":
            continue
        cells = []
        for live in (w.live, w.challenger):
            value = "—" if live is None or live.value is None else f"{live.metric} {live.value:.4f}"
            source = f", {live.source}" if live and live.source else ""
            cells.append(f"{value} (v{live.version}, n={live.labelled}{source})" if live and live.version else value)
        table.add_row(str(w.window), w.closed_at, *cells)
    out.print(table)


@rollout_app.command("promote")
def rollout_promote(config: ConfigArg, reason: ReasonOpt, set_: SetOpt = None) -> None:
    """Make the challenger champion now; the old champion is the rollback target.

    No gate runs: the live evidence is the reason."""
    from raylane.registry import Registry

    cfg = load(config, set_)
    r = Registry(cfg).end_rollout("promote", reason)
    out.print(f"champion: version {r.champion} → version {r.challenger} ({escape(reason)})")


@rollout_app.command("abort")
def rollout_abort(config: ConfigArg, reason: ReasonOpt, set_: SetOpt = None) -> None:
    """Stop the rollout: all traffic to the champion within serve.model_poll_s.

    The challenger keeps its alias, tagged aborted."""
    from raylane.registry import Registry

    cfg = load(config, set_)
    r = Registry(cfg).end_rollout("abort", reason)
    out.print(f"rollout of version {r.challenger} aborted; champion stays version {r.champion} ({escape(reason)})")
