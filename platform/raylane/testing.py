"""Helpers for testing raylane projects and jobs: small real services, never mocks.

- `example_project` generates the churn example's data into a folder and loads its config there.
- `RedisServer` runs a throwaway ``redis-server`` on a free loopback port.
- `ray_processes` lists Ray's processes on this machine, to check that a test left none behind.

Job authors can use these in their own tests.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any

from raylane.config import ProjectConfig, load_config

__all__ = [
    "RedisServer",
    "as_of_by_definition",
    "example_config_path",
    "example_project",
    "free_port",
    "headless_browser",
    "headless_dom",
    "listening_sockets",
    "offline_table",
    "ray_processes",
]

# Processes a Ray node runs; matched against the executable name and the command line.
_RAY_PROCESS_NAMES = (
    "gcs_server",
    "raylet",
    "dashboard.py",
    "agent_manager",
    "log_monitor.py",
    "monitor.py",
    "runtime_env/agent/main.py",
    "dashboard/agent.py",
    "ray::",
)


def example_config_path() -> Path:
    """``configs/churn.yaml`` of a source checkout."""
    return Path(__file__).resolve().parents[2] / "configs" / "churn.yaml"


def example_project(
    root: Path,
    *,
    size: str = "tiny",
    overrides: list[str] | None = None,
    config: Path | None = None,
    example: str = "churn",
    **spec: Any,
) -> ProjectConfig:
    """Generate an example's raw data under ``root/data`` and load its config with storage under
    ``root/store``. The tickets example's config and model code are copied to ``root/project``
    first (a test may edit the model file without touching the checkout).

    Args:
        root: An empty folder (a pytest ``tmp_path``).
        size: A size of the example's ``SIZES``.
        overrides: ``a.b=c`` config overrides.
        config: The config to load; the example's when omitted.
        example: ``churn`` or ``tickets``.
        **spec: Fields of the example's data spec to change (``seed``, ``drift_start_day``…).
    """
    from raylane.examples import churn, tickets

    module: Any = {"churn": churn, "tickets": tickets}[example]
    data = root / "data"
    module.write(replace(module.SIZES[size], **spec), data)
    env = {**os.environ, f"{example.upper()}_DATA": str(data), "RAYLANE_STORAGE": str(root / "store")}
    source = example_config_path().with_name(f"{example}.yaml")
    if config is None and example == "tickets":
        project = root / "project"
        shutil.copytree(source.parent / "models", project / "models")
        config = project / "tickets.yaml"
        shutil.copy(source, config)
    return load_config(config or source, overrides or [], env=env)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A ``redis-server`` on 127.0.0.1, in memory only, stopped by its own pid on exit.

    Raises:
        FileNotFoundError: ``redis-server`` is not installed (tests skip on this).
    """

    def __init__(self, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not installed (Debian: apt-get install redis-server)")
        self.binary = binary
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def connection_string(self) -> str:
        """The address in Feast's ``host:port`` form."""
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [
                self.binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        self.__exit__(None, None, None)
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


def ray_processes() -> dict[int, str]:
    """Ray's processes on this machine: pid → command line."""
    import psutil

    found: dict[int, str] = {}
    for proc in psutil.process_iter(["pid", "name", "cmdline"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            name = proc.info["name"] or ""
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if name.startswith("ray::") or any(n in name or f"/{n}" in cmd for n in _RAY_PROCESS_NAMES):
            found[proc.info["pid"]] = cmd[:200] or name
    return found


def listening_sockets(root: int | None = None) -> list[tuple[str, int, str]]:
    """The TCP sockets that ``root`` (this process by default) and its descendants listen on:
    ``(address, port, process name)``; IPv4-mapped IPv6 addresses are given as IPv4."""
    import psutil

    top = psutil.Process(root)
    names = {top.pid: top.name()}
    for child in top.children(recursive=True):
        with contextlib.suppress(psutil.Error):
            names[child.pid] = child.name()
    found = []
    for c in psutil.net_connections("inet"):
        if c.status == psutil.CONN_LISTEN and c.pid in names:
            found.append((c.laddr.ip.removeprefix("::ffff:"), c.laddr.port, names[c.pid]))
    return sorted(found)


def headless_browser() -> str | None:
    """The path of a Chromium (or Chrome) on this machine, or None (Debian: ``apt-get install chromium``)."""
    return next((b for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


def headless_dom(page: Path, *, seconds: float = 5.0) -> str:
    """The DOM of ``page`` after a headless browser ran its scripts for ``seconds`` (of virtual time)."""
    browser = headless_browser()
    if browser is None:
        raise FileNotFoundError("no Chromium on this machine: apt-get install chromium")
    flags = [
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        f"--virtual-time-budget={int(seconds * 1000)}",
        "--dump-dom",
    ]
    done = subprocess.run([browser, *flags, page.as_uri()], capture_output=True, text=True, timeout=120, check=True)
    return done.stdout


def offline_table(cfg: ProjectConfig, source: str) -> Any:
    """A source's whole offline table as a pandas frame."""
    import pyarrow.dataset as pads

    from raylane.ingest import offline_path

    return pads.dataset(str(offline_path(cfg, source)), format="parquet").to_table().to_pandas()


def as_of_by_definition(cfg: ProjectConfig, labels: Any, time_column: str) -> Any:
    """The as-of join by definition, row by row (tests compare raylane's join with it): per row of
    ``labels`` and view, the latest feature row with time - ttl <= event_time <= time, else nulls."""
    key = cfg.entity.join_key
    out = labels.copy()
    for view in cfg.features.views:
        src = cfg.data.source(view.source)
        feats = offline_table(cfg, view.source)
        names = cfg.view_features(view)
        by_key = {k: g.sort_values(src.timestamp_column) for k, g in feats.groupby(key)}
        values: dict[str, list[object]] = {n: [] for n in names}
        for k, t in zip(out[key], out[time_column], strict=True):
            g = by_key.get(k)
            row = None
            if g is not None:
                ts = g[src.timestamp_column]
                ok = g[(ts <= t) & (ts >= t - view.ttl)]
                if len(ok):
                    row = ok.iloc[-1]
            for n in names:
                values[n].append(None if row is None else row[n])
        for n in names:
            out[n] = values[n]
    return out
