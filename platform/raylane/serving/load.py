"""A bounded HTTP load generator (asyncio + aiohttp) for tests, the demo and the benchmark.

Closed loop: ``concurrency`` workers each send a request, wait for its answer, and (with ``rate``)
pace themselves so that all together send ``rate`` requests per second. It stops after
``duration_s`` or ``requests``. Failed requests (connection errors, 5xx, timeouts) are retried up
to ``retries`` times; both the raw errors and the requests that failed after their retries are
counted. A 4xx answer fails its request at once (never retried): only 2xx and 3xx count as ok.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import aiohttp

__all__ = ["LoadReport", "run_load"]


@dataclass
class LoadReport:
    sent: int = 0
    ok: int = 0
    failed: int = 0  # after retries
    raw_errors: int = 0  # every failed attempt, retried or not
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    # (seconds since start, model version) of every answered /predict
    versions: list[tuple[float, str]] = field(default_factory=list)
    seconds: float = 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]

    @property
    def throughput(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        return (
            f"{self.ok}/{self.sent} ok, {self.failed} failed ({self.raw_errors} raw errors), "
            f"{self.throughput:.0f} req/s, p50 {self.percentile(50):.1f} ms, p99 {self.percentile(99):.1f} ms"
        )


def run_load(
    url: str,
    body: Callable[[int], Any],
    *,
    concurrency: int = 4,
    duration_s: float | None = None,
    requests: int | None = None,
    rate: float | None = None,
    retries: int = 0,
    headers: dict[str, str] | None = None,
    timeout_s: float = 10.0,
    on_answer: Callable[[float, dict[str, Any]], None] | None = None,
) -> LoadReport:
    """POST ``body(i)`` (JSON) to ``url``, bounded by ``duration_s`` and/or ``requests``."""
    return asyncio.run(
        _run(url, body, concurrency, duration_s, requests, rate, retries, headers or {}, timeout_s, on_answer)
    )


async def _run(
    url: str,
    body: Callable[[int], Any],
    concurrency: int,
    duration_s: float | None,
    requests: int | None,
    rate: float | None,
    retries: int,
    headers: dict[str, str],
    timeout_s: float,
    on_answer: Callable[[float, dict[str, Any]], None] | None,
) -> LoadReport:
    import aiohttp

    if duration_s is None and requests is None:
        raise ValueError("bound the load: give duration_s or requests")
    report = LoadReport()
    started = time.perf_counter()
    deadline = started + duration_s if duration_s is not None else float("inf")
    counter = iter(range(requests if requests is not None else 1 << 62))
    interval = concurrency / rate if rate else 0.0

    async def worker(session: aiohttp.ClientSession) -> None:
        next_at = time.perf_counter()
        while time.perf_counter() < deadline:
            i = next(counter, None)
            if i is None:
                return
            report.sent += 1
            await _send(session, url, body(i), headers, retries, report, started, on_answer)
            if interval:
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))

    timeout = aiohttp.ClientTimeout(total=timeout_s)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    report.seconds = time.perf_counter() - started
    return report


async def _send(
    session: aiohttp.ClientSession,
    url: str,
    payload: Any,
    headers: dict[str, str],
    retries: int,
    report: LoadReport,
    started: float,
    on_answer: Callable[[float, dict[str, Any]], None] | None,
) -> None:
    """One request: retried on connection errors, timeouts and 5xx; a 4xx fails it at once."""
    import aiohttp

    t0 = time.perf_counter()
    for attempt in range(retries + 1):
        try:
            async with session.post(url, json=payload, headers=headers) as r:
                report.statuses[r.status] += 1
                if r.status >= 500:
                    raise RuntimeError(f"HTTP {r.status}")
                data = await r.json(content_type=None) if r.status < 400 else None
            if r.status >= 400:  # the request itself was refused: a retry would be too
                report.raw_errors += 1
                report.errors[f"HTTP {r.status}"] += 1
                report.failed += 1
                return
            _answered(report, data, t0, started, on_answer)
            return
        except (aiohttp.ClientError, TimeoutError, RuntimeError) as exc:
            report.raw_errors += 1
            report.errors[type(exc).__name__ + (f" {exc}" if isinstance(exc, RuntimeError) else "")] += 1
            if attempt == retries:
                report.failed += 1
            else:
                await asyncio.sleep(0.05)


def _answered(
    report: LoadReport,
    data: Any,
    t0: float,
    started: float,
    on_answer: Callable[[float, dict[str, Any]], None] | None,
) -> None:
    report.ok += 1
    report.latencies_ms.append((time.perf_counter() - t0) * 1000)
    if isinstance(data, dict) and "model" in data:
        report.versions.append((time.perf_counter() - started, str(data["model"]["version"])))
    if on_answer is not None and isinstance(data, dict):
        on_answer(time.perf_counter() - started, data)
