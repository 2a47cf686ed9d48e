"""Shadow scoring (``serve.rollout.mode: shadow``): the challenger scores what the champion served.

Every request is answered by the champion. After the answer is made, the replica hands the
request's feature rows (the exact values the champion scored: online features with the request's
own values on top) to `Shadow`, which scores them with the ``challenger`` version on a thread of
its own, off the response path (the requests of ``GATHER_S`` in one call of the model),
and logs the predictions with the challenger's version under the
inference log's ``shadow`` folder (the same schema as ``predictions``, the same request ids). The
monitor joins them with `/feedback` labels like the champion's, so each window shows both models'
live metric on the same labelled requests.

The challenger never slows serving: at most ``serve.rollout.max_pending`` requests wait for it;
beyond that a request is not shadowed (`raylane_shadow_dropped_total`). A challenger that fails
on a row is counted (`raylane_shadow_failures_total`), never answered. There is nothing to shadow
while no shadow rollout runs (`raylane.serving.rollout` follows it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from raylane.config import ProjectConfig

__all__ = ["Shadow"]

log = logging.getLogger(__name__)

GATHER_S = 0.05
"""How long the shadow waits before scoring what is queued. Requests that arrive meanwhile are
scored in the same call of the challenger: at low concurrency, one call per request would take the
replica's interpreter lock between every two requests, and its cost per call is mostly fixed."""


@dataclass(frozen=True)
class _Shadowed:
    """A served request waiting for the challenger."""

    model: Any
    request_id: str
    keys: list[Any]
    records: list[dict[str, Any]]
    at: datetime


class Shadow:
    """One replica's challenger: which version it is, and its scoring queue."""

    def __init__(
        self,
        cfg: ProjectConfig,
        key: str,
        feature_names: list[str],
        append: Callable[[list[dict[str, Any]]], bool],
    ) -> None:
        from ray.serve.metrics import Counter

        self.key = key
        self.feature_names = feature_names
        self._append = append  # the shadow log writer's append
        self.max_pending = cfg.serve.rollout.max_pending
        self.model: Any = None  # the challenger's LoadedModel, None when there is nothing to shadow
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="raylane-shadow")
        self._lock = threading.Lock()
        self._queue: list[_Shadowed] = []  # requests waiting for the challenger
        self._running = False  # a batch runner is scheduled
        self.pending = 0
        self.scored = self.dropped = self.failed = 0
        self._scored = Counter("raylane_shadow_predictions_total", "Entities the challenger scored in shadow.")
        self._dropped = Counter(
            "raylane_shadow_dropped_total", "Requests not shadowed: the challenger's queue was full."
        )
        self._failed = Counter("raylane_shadow_failures_total", "Entities the challenger could not score in shadow.")

    def use(self, model: Any) -> None:
        """Shadow ``model`` (the challenger's LoadedModel; None: shadow nothing)."""
        if (model and model.version) != (self.model and self.model.version):
            log.info("raylane: shadowing %s", "nothing" if model is None else f"challenger v{model.version}")
        self.model = model

    def submit(self, request_id: str, keys: list[Any], records: list[dict[str, Any]]) -> bool:
        """Queue a served request for the challenger; False when there is none, or no room."""
        model = self.model
        if model is None:
            return False
        with self._lock:
            if self.pending >= self.max_pending:
                self.dropped += 1
                self._dropped.inc(1)
                return False
            self.pending += 1
            self._queue.append(_Shadowed(model, request_id, keys, records, datetime.now(UTC)))
            start, self._running = not self._running, True
        if start:
            self._pool.submit(self._run)
        return True

    def _run(self) -> None:
        """Score what waits, as one batch per version (one call of the model for many requests),
        until nothing waits."""
        while True:
            time.sleep(GATHER_S)
            with self._lock:
                items, self._queue = self._queue, []
                if not items:
                    self._running = False
                    return
            by_version: dict[str, list[_Shadowed]] = {}
            for item in items:
                by_version.setdefault(item.model.version, []).append(item)
            for group in by_version.values():
                self._run_batch(group)
            with self._lock:
                self.pending -= len(items)

    def _run_batch(self, items: list[_Shadowed]) -> None:
        try:
            rows = self._score(items)
        except Exception:  # the challenger's failure is its own: counted, logged, never answered
            if len(items) > 1:  # each request alone, so one failure costs only its own rows
                for item in items:
                    self._run_batch([item])
                return
            self.failed += len(items[0].records)
            self._failed.inc(len(items[0].records))
            log.warning(
                "raylane: the challenger v%s failed on request %s",
                items[0].model.version,
                items[0].request_id,
                exc_info=True,
            )
            return
        self.scored += len(rows)
        self._scored.inc(len(rows))
        if rows:
            self._append(rows)

    def _score(self, items: list[_Shadowed]) -> list[dict[str, Any]]:
        import numpy as np
        import pandas as pd

        model = items[0].model
        records = [r for item in items for r in item.records]
        whose = [(item, key) for item in items for key in item.keys]
        frame = pd.DataFrame.from_records(records, columns=self.feature_names).astype(object)
        pred = model.bundle.predict(frame)
        finite = np.isfinite(pred.reshape(len(records), -1)).all(axis=1)
        pre = model.bundle.pre
        classes = [str(c) for c in pre.classes] if pre.task == "multiclass" else None
        out = []
        for i, record in enumerate(records):
            if not finite[i]:
                self.failed += 1
                self._failed.inc(1)
                continue
            item, key = whose[i]
            row = {
                "request_id": item.request_id,
                "ts": item.at,
                "model_name": model.name,
                "model_version": model.version,
                self.key: key,
                **record,
            }
            if classes is None:
                row["prediction"] = float(pred[i])
            else:
                row["prediction"] = classes[int(np.argmax(pred[i]))]
                row["probabilities"] = [float(p) for p in pred[i]]
            out.append(row)
        return out

    def drain(self) -> None:
        """Score what is queued (at most ``max_pending`` requests): a replica shutting down logs
        everything it shadowed."""
        self._pool.shutdown(wait=True)

    def state(self) -> dict[str, Any]:
        return {
            "scored": self.scored,
            "dropped": self.dropped,
            "failed": self.failed,
            "pending": self.pending,
        }
