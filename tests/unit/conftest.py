"""Unit tests run without Ray: starting it here is a bug."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _no_ray(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import ray

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("unit tests must not start Ray; move the test to tests/integration")

    if not ray.is_initialized():
        monkeypatch.setattr(ray, "init", forbidden)
    yield
