"""Shared fixtures: one real Ray cluster per test session, and a check that none of it leaks."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from raylane.testing import ray_processes

# Every process this test session starts (its Ray, local clusters, job drivers) inherits this
# mark; the leak check only looks at marked processes, so a second test session or a demo running
# beside this one is never taken for a leak, or killed.
_MARK = "RAYLANE_TEST_SESSION"


def _ours(pids: dict[int, str]) -> dict[int, str]:
    import psutil

    mark = os.environ[_MARK]
    found = {}
    for pid, cmd in pids.items():
        with contextlib.suppress(psutil.Error):
            if psutil.Process(pid).environ().get(_MARK) == mark:
                found[pid] = cmd
    return found


def pytest_sessionstart(session: pytest.Session) -> None:
    os.environ[_MARK] = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if a Ray process this session started is still alive at the end."""
    import psutil

    deadline = time.monotonic() + 20
    leaked: dict[int, str] = {}
    while time.monotonic() < deadline:
        leaked = _ours(ray_processes())
        if not leaked:
            return
        time.sleep(0.5)
    stacks = {pid: _stack(pid) for pid in leaked}  # where each one is stuck, for the report
    for pid in leaked:
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).kill()
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = "\n".join(f"  {pid}: {cmd}\n{stacks[pid]}" for pid, cmd in leaked.items())
    if reporter is not None:
        reporter.write_line(f"FAILED: Ray processes left behind by the tests (killed now):\n{lines}", red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _stack(pid: int) -> str:
    """The Python stack of a process (py-spy, which Ray's `default` extra installs), indented."""
    import shutil
    import subprocess
    import sys

    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    try:
        out = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30)
        text = (out.stdout or out.stderr).strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        text = f"(no stack: {exc})"
    return "\n".join("      " + line for line in text.splitlines())


@pytest.fixture(scope="session")
def ray_runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """The session's one local Ray (2 CPUs, token auth with a throwaway token)."""
    from raylane import runtime
    from raylane.config import RayBackend

    token = tmp_path_factory.mktemp("ray") / "auth_token"
    info = runtime.init(RayBackend(num_cpus=2, auth_token_file=token))
    yield info
    runtime.shutdown()


@pytest.fixture
def example_dir() -> Path:
    return Path(__file__).resolve().parents[1] / "configs"
