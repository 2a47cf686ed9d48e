"""The ``raylane`` command line. Thin: parse arguments, load the config, call a stage, print.

The root app lives here with the error handling every command shares; each command group has its own
module (`config`, `features`, `train` for train/sweep/registry/lineage, `serve`, `rollout`, `monitor` for monitor
and retrain, `jobs` for job and cluster, `run` for run and demo) over the shared options and output
helpers in `_common`. Commands and groups are registered here, in the order ``--help`` lists them.

Errors: a `UserError` prints its message and fix and exits 2; any other error is internal and
exits 1. Neither prints a traceback unless ``--debug`` is given.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Annotated

import typer
from rich.markup import escape

from raylane._version import __version__
from raylane.cli._common import err, out, state
from raylane.cli.config import config_app
from raylane.cli.features import features_app
from raylane.cli.jobs import cluster_app, job_app
from raylane.cli.monitor import monitor_app, retrain_cmd
from raylane.cli.predict import predict_cmd
from raylane.cli.rollout import rollout_app
from raylane.cli.run import demo_app, run_cmd
from raylane.cli.serve import serve_app
from raylane.cli.train import lineage_cmd, registry_app, sweep_cmd, train_cmd
from raylane.errors import RaylaneError, UserError

__all__ = ["app", "entrypoint", "main"]

app = typer.Typer(
    name="raylane",
    help="raylane: an MLOps platform on Ray. Features (Feast) → training (Ray Train/Tune, MLflow) → "
    "serving (Ray Serve) → monitoring (whylogs), from one project config.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# `--help` lists the top-level commands, then the groups, each in the order registered here.
app.command("train")(train_cmd)
app.command("sweep")(sweep_cmd)
app.command("retrain")(retrain_cmd)
app.command("run")(run_cmd)
app.command("predict")(predict_cmd)
app.command("lineage")(lineage_cmd)
app.add_typer(config_app, name="config")
app.add_typer(features_app, name="features")
app.add_typer(demo_app, name="demo")
app.add_typer(registry_app, name="registry")
app.add_typer(serve_app, name="serve")
app.add_typer(rollout_app, name="rollout")
app.add_typer(monitor_app, name="monitor")
app.add_typer(job_app, name="job")
app.add_typer(cluster_app, name="cluster")


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


def _usage_error(exc: typer.TyperException) -> int:
    """Click's own message for a usage error (unknown command, bad option…), and its exit code."""
    show = getattr(exc, "show", None)
    if show is not None:
        show(file=sys.stderr)
    else:
        err.print(str(exc))
    return int(getattr(exc, "exit_code", 2))


def _raylane_error(exc: RaylaneError) -> int:
    """A raylane error's message and fix; a `UserError` is the user's to fix, any other one is ours."""
    if state.debug:
        err.print_exception()
    kind = "error" if isinstance(exc, UserError) else "internal error"
    err.print(f"[bold red]{kind}:[/] {escape(exc.message)}", highlight=False, soft_wrap=True)
    if exc.fix:
        err.print(f"[bold]fix:[/] {escape(exc.fix)}", highlight=False, soft_wrap=True)
    return exc.exit_code


def _internal_error(exc: Exception) -> int:
    """Any other exception is a bug to report."""
    if state.debug:
        traceback.print_exc()
    err.print(f"[bold red]internal error:[/] {type(exc).__name__}: {escape(str(exc))}", highlight=False, soft_wrap=True)
    err.print("rerun with --debug for the traceback, and please report it")
    return 1


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
    except typer.TyperException as exc:
        return _usage_error(exc)
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    except RaylaneError as exc:
        return _raylane_error(exc)
    except Exception as exc:
        return _internal_error(exc)
    return 0


def entrypoint() -> None:
    """Console-script entry point."""
    sys.exit(main())
