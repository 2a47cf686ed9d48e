"""What every command group shares: the consoles, the global flags, the config options and the output helpers.

Nothing here knows a stage: these are the CLI's own tools (load a config with ``--set``, show progress,
open the Ray session, parse a time, format a value, keep an embedded Ray's work in the foreground).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from raylane.config import ProjectConfig, load_config
from raylane.errors import UserError

__all__ = [
    "ConfigArg",
    "SetOpt",
    "embedded",
    "err",
    "fmt",
    "foreground",
    "load",
    "on_ray",
    "out",
    "parse_time",
    "state",
    "steps",
    "verdict",
]


def _console(*, stderr: bool = False) -> Console:
    """A console. Piped (a log file, a Ray job's logs, CI) it is 120 columns wide unless ``COLUMNS``
    says otherwise: at Rich's 80, a sweep table cut its parameter names to `model.pa…`."""
    console = Console(stderr=stderr)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 120
    return console


out = _console()
err = _console(stderr=True)


class _State:
    """The root's global flags (``--debug``, ``--verbose``), set before any command runs."""

    debug = False
    verbose = False


state = _State()

ConfigArg = Annotated[Path, typer.Argument(help="Project config (YAML).", show_default=False)]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a field: a.b.c=value (repeatable).", show_default=False),
]


def load(config: Path, overrides: list[str] | None, *, model: bool = False) -> ProjectConfig:
    """The project config at ``config`` with the ``--set`` overrides applied; its storage root
    exists, private to its owner. ``model``: the command trains, so ``model.entrypoint`` is
    imported and probed first (a broken model fails before anything is written)."""
    cfg = load_config(config, overrides or [])
    if model:
        from raylane.contract import check_entrypoint, check_loop

        check_entrypoint(cfg)
        check_loop(cfg)
    cfg.private_storage()
    return cfg


@contextmanager
def steps() -> Iterator[Callable[[str], Any]]:
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


def on_ray(cfg: ProjectConfig) -> Any:
    """The project's Ray session (a context manager), quiet unless ``--verbose``."""
    from raylane.runtime import ray_session

    return ray_session(cfg.backends.ray, verbose=state.verbose)


def embedded(cfg: ProjectConfig) -> bool:
    """Whether this process starts its own Ray (no cluster address in the config or in RAY_ADDRESS).

    Work left on an embedded Ray dies with the process, so commands that start long-lived work keep
    it in the foreground instead of returning."""
    return cfg.backends.ray.address == "local" and not os.environ.get("RAY_ADDRESS")


def foreground(what: str, on_stop: Callable[[], object], *, hint: str = "Ctrl-C stops it") -> None:
    """Keep an embedded Ray's work alive until Ctrl-C or SIGTERM, then run ``on_stop``."""
    import signal

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    err.print(f"{what} in the foreground (embedded Ray): {hint}")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        on_stop()


def parse_time(value: str | None, option: str) -> datetime | None:
    """An ISO 8601 option value as a datetime (None stays None); a bad one is the user's error."""
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise UserError(
            f"{option} {value!r} is not a date or time", fix="write it as ISO 8601, e.g. 2025-03-01 or 2025-03-01T12:00"
        ) from None


def fmt(value: Any) -> str:
    """A table cell: a dash for nothing, four significant digits for a float."""
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def verdict(promoted: bool) -> str:
    """The gate's outcome for a newly registered version, as rich markup."""
    return "[green]promoted to champion[/]" if promoted else "[yellow]stays challenger[/]"
