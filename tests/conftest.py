"""Shared fixtures: one real Ray cluster per test session, and a check that none of it leaks."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from raylane.testing import ray_processes

_before: dict[int, str] = {}


def pytest_sessionstart(session: pytest.Session) -> None:
    _before.update(ray_processes())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if a Ray process started during it is still alive at the end."""
    import psutil

    deadline = time.monotonic() + 20
    leaked: dict[int, str] = {}
    while time.monotonic() < deadline:
        leaked = {p: c for p, c in ray_processes().items() if p not in _before}
        if not leaked:
            return
        time.sleep(0.5)
    for pid in leaked:
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).kill()
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = "\n".join(f"  {pid}: {cmd}" for pid, cmd in leaked.items())
    if reporter is not None:
        reporter.write_line(f"FAILED: Ray processes left behind by the tests (killed now):\n{lines}", red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


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
