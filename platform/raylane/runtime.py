"""The Ray runtime: the one place raylane starts Ray or joins a cluster.

``backends.ray.address`` picks how:

- ``local`` (default) starts an embedded Ray for this process, sized to the machine, with token
  authentication on and every listener (GCS, raylet, agents, dashboard, metrics) bound to
  127.0.0.1. `shutdown` stops exactly what it started.
- ``auto``, ``host:port`` or ``ray://host:10001`` join an existing cluster, carrying the token.
- ``http://host:8265`` names a cluster's job API: drivers do not connect there, they are submitted
  as Ray jobs (``raylane job submit``), where Ray sets ``RAY_ADDRESS`` and this module joins it.

If Ray is already initialised in this process (a Ray job, a test session, a notebook) it is reused.

Token auth: Ray would create ``~/.ray/auth_token`` world-readable (0644) on first use; raylane
creates it first, 0600, and tightens an existing one that others can read.

Example::

    with ray_session(cfg.backends.ray):
        ray.data.range(10).count()
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raylane.config import RayBackend
from raylane.errors import ClusterError

__all__ = ["RuntimeInfo", "ensure_token", "init", "ray_session", "shutdown", "token_path"]

log = logging.getLogger(__name__)

_started_here = False


@dataclass(frozen=True)
class RuntimeInfo:
    """What `init` connected to."""

    address: str
    started_here: bool
    dashboard_url: str | None
    resources: dict[str, float]


def token_path(cfg: RayBackend) -> Path:
    """The token file raylane uses: the config's, ``RAY_AUTH_TOKEN_PATH``, or ``~/.ray/auth_token``."""
    if cfg.auth_token_file is not None:
        return cfg.auth_token_file
    if env := os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return Path(env).expanduser()
    return Path.home() / ".ray" / "auth_token"


def ensure_token(path: Path, *, create: bool = True) -> Path:
    """Make sure the token file exists and only its owner can read it.

    Args:
        path: The token file.
        create: Create a new random token when the file is missing (a new local cluster).

    Raises:
        ClusterError: the file is missing and ``create`` is false.
    """
    if not path.exists():
        if not create:
            raise ClusterError(
                f"Ray auth token not found at {path}",
                fix="copy the cluster's token there, set RAY_AUTH_TOKEN, or set backends.ray.auth_token_file",
            )
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process won the race; use its token
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        path.chmod(0o600)
        log.warning("tightened %s from %o to 600: the Ray token must not be readable by others", path, mode)
    return path


def _quiet_ray(verbose: bool) -> None:
    level = logging.INFO if verbose else logging.ERROR
    # Ray Data re-reads its log level from this variable whenever it reconfigures its logger.
    # Quiet means CRITICAL: a failed task's ERROR log repeats what raylane reports as an error.
    # Set, not defaulted: Feast's Ray store exports RAY_DATA_LOG_LEVEL=ERROR into the environment.
    os.environ["RAY_DATA_LOG_LEVEL"] = "INFO" if verbose else "CRITICAL"
    for name in ("ray", "ray.train", "ray.tune", "ray.serve"):
        logging.getLogger(name).setLevel(level)
    logging.getLogger("ray.data").setLevel(logging.INFO if verbose else logging.CRITICAL)
    logging.getLogger("mlflow").setLevel(logging.INFO if verbose else logging.ERROR)
    if not verbose:
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")  # read when mlflow is first imported
        warnings.filterwarnings("ignore", module=r"mlflow(\.|$)")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"sqlalchemy(\.|$)")
        # Before the first DataContext is made: making it warns about Ray Data's deprecated fields.
        warnings.filterwarnings("ignore", module=r"ray(\.|$)")
        # Ray Data's own progress bars and start banners; raylane shows its own progress.
        import ray.data

        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False


SHUFFLE_ENV = "RAY_DATA_DEFAULT_SHUFFLE_STRATEGY"
PREEMPTION_WATCHER_ENV = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"


def _data_defaults() -> None:
    """Ray Data's classic pull-based sort for raylane's shuffles (the time-ordered split, the
    random split, the distinct keys of ``predict --entities all``), or the strategy that
    ``SHUFFLE_ENV`` names. Ray 2.60's default (``shuffle_v2``) took 3.1 s to split a 2,000-row
    training set, the pull-based sort 0.03-0.2 s, with the same rows on each side."""
    import ray.data
    from ray.data.context import ShuffleStrategy

    chosen = os.environ.get(SHUFFLE_ENV, ShuffleStrategy.SORT_SHUFFLE_PULL_BASED.value)
    ray.data.DataContext.get_current().shuffle_strategy = ShuffleStrategy(chosen)


def token_mode_before_import() -> None:
    """``RAY_AUTH_MODE=token`` unless set, while Ray is not imported yet: Ray reads it at import,
    and joining a token-protected cluster with ``backends.ray.auth_token_file`` needs it then.
    ``RAY_AUTH_MODE=disabled`` in the environment turns token auth off."""
    if "ray" not in sys.modules:
        os.environ.setdefault("RAY_AUTH_MODE", "token")


def init(cfg: RayBackend | None = None, *, verbose: bool = False) -> RuntimeInfo:
    """Start or join Ray as ``cfg`` says; reuse Ray if this process already has it.

    Raises:
        ClusterError: Ray cannot start, the cluster cannot be reached, or the address is a job API.
    """
    global _started_here
    token_mode_before_import()
    import ray

    cfg = cfg or RayBackend()
    if ray.is_initialized():
        _quiet_ray(verbose)
        _data_defaults()
        return _info(started_here=_started_here)

    address = cfg.address.strip()
    in_job = os.environ.get("RAY_ADDRESS") and address == "local"
    tok = token_path(cfg)
    if os.environ.get("RAY_AUTH_MODE", "token").lower() != "disabled" and not os.environ.get("RAY_AUTH_TOKEN"):
        # A new local cluster gets a fresh private token; joining needs the cluster's own.
        ensure_token(tok, create=address == "local" and not in_job)
        # Ray turns token mode on by itself once a token is found (and refreshes its config then);
        # setting RAY_AUTH_MODE here would be too late for a process that imported ray already.
        os.environ["RAY_AUTH_TOKEN_PATH"] = str(tok)

    common: dict[str, Any] = {
        "namespace": cfg.namespace,
        "logging_level": logging.INFO if verbose else logging.ERROR,
        "log_to_driver": verbose,
    }
    try:
        if address == "local" and not in_job:
            _loopback_only(True)
            # Ray Train starts an actor per run that watches for nodes being drained (spot
            # preemption). The embedded Ray is this one machine, which nothing drains. Set before
            # the start so that every Ray process (Tune's trials too) inherits it.
            os.environ.setdefault(PREEMPTION_WATCHER_ENV, "0")
            ray.init(
                # "local", not None: None would join whatever /tmp/ray/ray_current_cluster names
                # (the last `ray start` on this machine, e.g. a `raylane cluster up`)
                address="local",
                num_cpus=cfg.num_cpus or os.cpu_count() or 1,
                num_gpus=cfg.num_gpus,
                include_dashboard=cfg.dashboard,
                dashboard_host="127.0.0.1",
                _node_ip_address="127.0.0.1",
                **common,
            )
            _started_here = True
        elif address.startswith(("http://", "https://")):
            raise ClusterError(
                f"backends.ray.address is {address!r}, a job API address: drivers cannot connect to it",
                fix="submit the work as a job (`raylane job submit`), or use `auto`, `host:6379` or `ray://host:10001`",
            )
        else:
            ray.init(address=None if in_job else address, **common)
    except ClusterError:
        raise
    except Exception as exc:  # Ray raises bare Exceptions too ("Timed out waiting for file …")
        _loopback_only(False)
        local = address == "local"
        raise ClusterError(
            f"cannot {'start' if local else 'join'} Ray at {address!r}: {exc}",
            fix="see Ray's reason above: Ray's temp folder (RAY_TMPDIR, /tmp/ray) must be writable, and"
            " another Ray on this machine can be joined instead (backends.ray.address: auto)"
            if local
            else "check backends.ray.address, that the cluster is up, and that this machine has its token",
        ) from exc
    _quiet_ray(verbose)
    _data_defaults()
    return _info(started_here=_started_here)


# Ray on Linux rewrites a node IP of 127.0.0.1 to the host's address, and then binds GCS, raylet,
# agents and Prometheus endpoints to it or to every interface. Its switch for desktop machines
# (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``: no multi-node cluster) keeps the node on loopback, so
# every listener of an embedded Ray is on 127.0.0.1. It is read at ``import ray``; the module
# constant is set too, for a process that imported Ray already, and both are restored at shutdown
# (a later join of a real cluster needs the host's address).
_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_saved: list[tuple[str | None, bool]] = []  # the variable and Ray's constant before `_loopback_only(True)`


def _loopback_only(on: bool) -> None:
    from ray._private import ray_constants

    if on and not _saved:
        _saved.append((os.environ.get(_LOOPBACK_ENV), ray_constants.ENABLE_RAY_CLUSTER))
        os.environ[_LOOPBACK_ENV] = "0"
        ray_constants.ENABLE_RAY_CLUSTER = False
    elif not on and _saved:
        old, constant = _saved.pop()
        if old is None:
            os.environ.pop(_LOOPBACK_ENV, None)
        else:
            os.environ[_LOOPBACK_ENV] = old
        ray_constants.ENABLE_RAY_CLUSTER = constant


def _info(*, started_here: bool) -> RuntimeInfo:
    import ray

    ctx = ray.get_runtime_context()
    dash = getattr(ray.worker.global_worker.node, "address_info", {}).get("webui_url") if started_here else None
    return RuntimeInfo(
        address=ctx.gcs_address,
        started_here=started_here,
        dashboard_url=f"http://{dash}" if dash else None,
        resources={k: float(v) for k, v in ray.cluster_resources().items() if not k.startswith("node:")},
    )


def shutdown() -> None:
    """Stop Ray if this module started it; disconnect otherwise. Never touches other Ray processes."""
    global _started_here
    import ray

    if ray.is_initialized():
        ray.shutdown()
    _started_here = False
    _loopback_only(False)


@contextmanager
def ray_session(cfg: RayBackend | None = None, *, verbose: bool = False) -> Iterator[RuntimeInfo]:
    """`init` on entry; on exit, `shutdown` only if this call started Ray."""
    import ray

    owned = not ray.is_initialized()
    info = init(cfg, verbose=verbose)
    try:
        yield info
    finally:
        if owned:
            shutdown()
