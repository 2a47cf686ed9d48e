"""Where a run's time goes: named stages' wall-clock seconds, in the order they ran.

`Stopwatch` is what ``raylane train`` prints at its end and logs to MLflow (``time_<stage>_s``):
small runs are dominated by fixed costs (starting Ray, building the training set, starting the
worker group, logging the model), and a table of them says which one to look at.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["Stopwatch"]


class Stopwatch:
    """Seconds per named stage; a stage timed twice adds up."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the ``with`` block as ``name`` (also when it raises)."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, time.perf_counter() - started)

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + max(seconds, 0.0)

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    def rows(self, total: float | None = None) -> list[tuple[str, float]]:
        """The stages in order, then ``other`` (what ``total`` holds beyond them) when there is any."""
        rows = list(self.seconds.items())
        rest = (total if total is not None else self.total) - self.total
        if rest > 0.0005:
            rows.append(("other", rest))
        return rows

    def metrics(self) -> dict[str, float]:
        """The stages as MLflow metric names and values: ``time_<stage>_s``."""
        return {f"time_{_slug(name)}_s": value for name, value in self.seconds.items()}


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
