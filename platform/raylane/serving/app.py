"""The replica: the Ray Serve deployment that loads the model, scores, logs and profiles.

``POST /predict`` → API key → content type, body size, UTF-8 → pydantic models generated from the
feature schema → `@serve.batch` across concurrent requests → one Feast online lookup per batch →
the model's saved preprocessing and weights → the answer, while the rows go to the inference log
off the request path. ``POST /feedback`` appends a label to the log; ``GET /healthz`` and
``GET /metadata`` describe the replica and its model; OpenAPI is at ``/docs``.

Model swaps: every replica checks where ``serve.model_alias`` (``champion``) points every
``serve.model_poll_s`` seconds; when it moved, the replica loads the new version beside the old one
and switches the reference. A request is scored by the model it started with, so none is dropped
or answered by two versions. A version that cannot be loaded (missing features, broken artifact)
is logged and the replica keeps serving the one it has.

Every answer to bad input is a 4xx whose message names the field and the fix; nothing a client
sends makes the replica raise. Scoring is isolated per entity: when a batch of concurrent requests
fails, each entity is scored alone, so one entity's failure answers only its own request (a 5xx of
its own, counted in ``raylane_scoring_failures_total``), never its neighbours'. A prediction that is
not finite is never returned or logged: 422 naming the fields out of the model's range.

The HTTP side (routes, API key, body checks, error answers) is `raylane.serving.api`, which this
module builds its FastAPI ingress with.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ray import serve

from raylane.monitoring.analysis import AUTHENTICATED
from raylane.serving.api import ApiKeyCheck, build_api
from raylane.serving.ids import RequestIds
from raylane.serving.rollout import RolloutFollower
from raylane.serving.scoring import Failed, Scored, failure, isolated, non_finite
from raylane.serving.shadow import Shadow

if TYPE_CHECKING:
    from raylane.bundle import ModelBundle
    from raylane.registry import Rollout

__all__ = ["Failed", "LoadedModel", "Predictor", "Scored", "isolated"]

log = logging.getLogger("ray.serve")


@dataclass(frozen=True)
class LoadedModel:
    """A model version a replica serves (`raylane.serving.api.ServedModel`)."""

    name: str
    version: str
    run_id: str
    tags: dict[str, str]
    bundle: ModelBundle
    loaded_at: str
    alias: str = "champion"  # the alias it answers as: serve.model_alias, or challenger in a canary


@serve.deployment
@serve.ingress()
class Predictor:
    """One replica of a project's prediction service."""

    async def __init__(  # type: ignore[misc]
        self, config: dict[str, Any], api_key_sha256: str | None, request_id_secret: str
    ) -> None:
        import torch
        from ray.serve.metrics import Counter, Histogram

        from raylane.config import ProjectConfig
        from raylane.features import FeatureRepo
        from raylane.inference_log import LogWriter, failure_schema, feedback_schema, log_dir, prediction_schema
        from raylane.monitoring.sink import ProfileSink
        from raylane.registry import Registry
        from raylane.serving.schemas import Schemas

        torch.set_num_threads(1)  # a small MLP per batch: threads cost more than they give
        self.cfg = cfg = ProjectConfig.model_validate(config)
        self.serve_cfg = cfg.serve
        self.key = cfg.entity.join_key
        self.schemas = Schemas(cfg)
        self.feature_names = list(self.schemas.feature_dtypes)
        self.online = FeatureRepo(cfg).online()
        self.registry = Registry(cfg)
        self.auth = ApiKeyCheck(api_key_sha256, allow_anonymous=cfg.serve.auth.allow_anonymous)
        self.request_ids = RequestIds(request_id_secret)
        self.failures = Counter(
            "raylane_scoring_failures_total",
            "Entities a model version could not score, by reason.",
            tag_keys=("reason", "version"),  # type: ignore[arg-type]  # Ray annotates one key
        )
        self.scored_count = Counter(
            "raylane_scored_entities_total", "Entities a model version answered.", tag_keys=("version",)
        )
        self.latency = Histogram(
            "raylane_scoring_latency_ms",
            "How long a request took to be scored (features and model), by the version that answered.",
            boundaries=[1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000],
            tag_keys=("version",),
        )
        # Scoring (Feast's connection included) runs on the event loop; MLflow and log writes on
        # one I/O thread.
        self._io_pool = ThreadPoolExecutor(1, thread_name_prefix="raylane-io")
        self.replica = serve.get_replica_context().replica_tag if _in_serve() else "local"
        rollout = self.registry.current_rollout()  # read before the alias: see _follow_alias
        self.model = self._load(self.registry.version(f"@{cfg.serve.model_alias}"), cfg.serve.model_alias)
        writer_id = hashlib.sha1(f"{self.replica}{uuid.uuid4()}".encode()).hexdigest()[:10]
        rows = cfg.serve.inference_log.flush_rows
        self.predictions = LogWriter(log_dir(cfg), "predictions", prediction_schema(cfg), rows, writer_id)
        self.feedback = LogWriter(log_dir(cfg), "feedback", feedback_schema(cfg), rows, writer_id)
        self.profiles = ProfileSink(cfg, writer_id) if cfg.monitor.enabled else None
        self.shadow_log = LogWriter(log_dir(cfg), "shadow", prediction_schema(cfg), rows, writer_id)
        self.failure_log = LogWriter(log_dir(cfg), "failures", failure_schema(cfg), rows, writer_id)
        self.shadow = Shadow(cfg, self.key, self.feature_names, self._shadow_rows)
        self.follower = RolloutFollower(self.shadow)
        self._follow_rollout(rollout)  # ready only once it follows the rollout: a canary stays sticky
        self._flush_due = asyncio.Event()
        every = [cfg.serve.inference_log.flush_seconds, *([cfg.monitor.flush_seconds] if self.profiles else [])]
        self._flush_every = min(every)
        batcher: Any = self._infer
        batcher.set_max_batch_size(cfg.serve.batching.max_batch_size)
        batcher.set_batch_wait_timeout_s(cfg.serve.batching.batch_wait_timeout_s)
        self._loop = loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._follow_alias()), loop.create_task(self._flush_loop())]
        self.started = datetime.now(UTC).isoformat(timespec="seconds")
        self.served = 0

    def __serve_build_asgi_app__(self) -> Any:
        return build_api(self)

    # ----- the model

    def _shadow_rows(self, rows: list[dict[str, Any]]) -> bool:
        due = self.shadow_log.append(rows)  # on the shadow's thread: the event is the loop's
        if due:
            self._loop.call_soon_threadsafe(self._flush_due.set)
        return due

    def _follow_rollout(self, rollout: Rollout | None) -> None:
        self.follower.follow(rollout, self.model.version, lambda v: self._load(self.registry.version(v), "challenger"))

    def _load(self, mv: Any, alias: str) -> LoadedModel:
        bundle = self.registry.load_bundle(str(mv.version))
        bundle.to_best_device()  # the replica's GPU when serve.resources.num_gpus gave it one
        missing = sorted(set(bundle.features) - set(self.feature_names))
        if missing:
            raise RuntimeError(f"model version {mv.version} needs features the project no longer serves: {missing}")
        return LoadedModel(
            name=self.registry.name,
            version=str(mv.version),
            run_id=str(mv.run_id),
            tags=dict(mv.tags),
            bundle=bundle,
            loaded_at=datetime.now(UTC).isoformat(timespec="seconds"),
            alias=alias,
        )

    async def _follow_alias(self) -> None:
        """Switch to the version the alias points at, whenever it moves, and follow the rollout.

        The rollout is read before the alias: a promotion moves the alias first and then ends the
        rollout, so a poll that straddles it sees either the old pair, or the new champion beside a
        rollout whose challenger it now is (nothing to route); never the old champion alone."""
        loop = asyncio.get_running_loop()
        alias = self.serve_cfg.model_alias
        while True:
            await asyncio.sleep(self.serve_cfg.model_poll_s)
            try:
                rollout = await loop.run_in_executor(self._io_pool, self.registry.current_rollout)
                mv = await loop.run_in_executor(self._io_pool, self.registry.version, f"@{alias}")
                if str(mv.version) != self.model.version:
                    new = await loop.run_in_executor(self._io_pool, self._load, mv, alias)
                    old, self.model = self.model.version, new
                    log.info("raylane: %s moved, serving version %s (was %s)", alias, new.version, old)
                await loop.run_in_executor(self._io_pool, self._follow_rollout, rollout)
            except asyncio.CancelledError:
                raise
            except Exception:  # the registry is unreachable or the version broken: keep the current model
                log.warning(
                    "raylane: cannot follow alias %s; still serving version %s",
                    alias,
                    self.model.version,
                    exc_info=True,
                )

    # ----- scoring

    async def score(self, rows: list[Any]) -> tuple[LoadedModel, list[Scored]]:
        """Score validated entities with the model current at the call: the champion, or the
        challenger when the (first) entity is in a canary's share.

        Raises:
            ApiError: an entity could not be scored (422 out of the model's range, 500 otherwise).
        """
        start = time.perf_counter()
        model = self.follower.route(getattr(rows[0], self.key)) or self.model
        if self.serve_cfg.batching.enabled:
            results = list(await asyncio.gather(*(self._infer((model, row)) for row in rows)))
        else:
            results = self._score_isolated(model, rows)
        failed = [(i, r) for i, r in enumerate(results) if isinstance(r, Failed)]
        if failed:
            raise failure(failed, many=len(rows) > 1)
        ms = (time.perf_counter() - start) * 1000
        self.served += len(rows)
        self.scored_count.inc(len(rows), {"version": model.version})
        self.latency.observe(ms, {"version": model.version})
        scored = [r for r in results if isinstance(r, Scored)]
        for r in scored:
            r.latency_ms = ms
        return model, scored

    @serve.batch(max_batch_size=32, batch_wait_timeout_s=0.0)
    async def _infer(self, items: list[tuple[LoadedModel, Any]]) -> list[Scored | Failed]:
        # Scored on the replica's event loop, not in a thread: a batch takes a few milliseconds,
        # requests that arrive meanwhile queue up and form the next batch, and no thread hand-off
        # (which costs a GIL switch interval on a busy machine) is added to each request.
        out: list[Scored | Failed | None] = [None] * len(items)
        groups: dict[str, list[int]] = {}
        for i, (m, _) in enumerate(items):
            groups.setdefault(m.version, []).append(i)
        for indices in groups.values():  # one group, unless the model swapped mid-batch
            model = items[indices[0]][0]
            for i, s in zip(indices, self._score_isolated(model, [items[i][1] for i in indices]), strict=True):
                out[i] = s
        return [s for s in out if s is not None]

    def _score_isolated(self, model: LoadedModel, rows: list[Any]) -> list[Scored | Failed]:
        results = isolated(lambda part: self._score(model, part), rows)
        failed = [(row, r) for row, r in zip(rows, results, strict=True) if isinstance(r, Failed)]
        if failed:
            at = datetime.now(UTC)
            for _, r in failed:
                self.failures.inc(1, {"reason": r.reason, "version": model.version})
            if self.serve_cfg.inference_log.enabled:  # a canary's guard counts the challenger's
                base = {"ts": at, "model_name": model.name, "model_version": model.version}
                rows_out = [{**base, self.key: getattr(row, self.key), "reason": r.reason} for row, r in failed]
                if self.failure_log.append(rows_out):
                    self._flush_due.set()
        return results

    def _score(self, model: LoadedModel, rows: list[Any]) -> list[Scored | Failed]:
        """One online lookup for the rows' entities, request-time values on top, then the model."""
        import numpy as np
        import pandas as pd

        keys = [getattr(r, self.key) for r in rows]
        looked = self.online.get(keys)
        given = [r.model_dump(exclude_none=True, exclude={self.key}) for r in rows]
        names = self.feature_names
        known = [any(looked[f][i] is not None for f in names) or len(given[i]) == len(names) for i in range(len(rows))]
        columns = {f: list(looked[f]) for f in names}
        for i, values in enumerate(given):
            for name, value in values.items():
                columns[name][i] = value
        records = [{f: columns[f][i] for f in names} for i in range(len(rows))]
        frame = pd.DataFrame(columns, dtype=object)
        pred = model.bundle.predict(frame)
        finite = np.isfinite(pred.reshape(len(rows), -1)).all(axis=1)
        pre = model.bundle.pre
        out: list[Scored | Failed] = []
        for i in range(len(rows)):
            if not finite[i]:
                out.append(non_finite(pre.out_of_range(frame.iloc[[i]])[0], given[i], self.schemas.feature_dtypes))
            elif pre.task != "multiclass":
                out.append(Scored(float(pred[i]), None, records[i], known[i]))
            else:
                probs = [float(p) for p in pred[i]]
                best = max(range(len(probs)), key=probs.__getitem__)
                out.append(Scored(str(pre.classes[best]), probs, records[i], known[i], class_index=best))
        return out

    # ----- the inference log

    @property
    def log_rows_pending(self) -> int:
        """Rows buffered for the inference log, not yet written."""
        return sum(w.pending for w in self._writers.values())

    @property
    def _writers(self) -> dict[str, Any]:
        return {
            "predictions": self.predictions,
            "feedback": self.feedback,
            "shadow": self.shadow_log,
            "failures": self.failure_log,
        }

    def rollout(self) -> dict[str, Any]:
        """The configured mode and the rollout this replica follows (/metadata)."""
        return {"mode": self.serve_cfg.rollout.mode, **self.follower.state()}

    def log_health(self) -> dict[str, Any]:
        """The log writers' state for /healthz: rows written and quarantined, and for a writer whose
        last flush failed (``stuck``) its error and since when."""
        writers = self._writers
        errors = {k: {"error": w.error, "failing_since": w.failing_since} for k, w in writers.items() if w.error}
        return {
            "stuck": bool(errors),
            **({"errors": errors} if errors else {}),
            "rows_written": sum(w.written for w in writers.values()),
            "rows_rejected": sum(w.rejected for w in writers.values()),
        }

    def log_predictions(
        self, request_id: str, model: LoadedModel, rows: list[Any], scored: list[Scored], *, authenticated: bool
    ) -> None:
        if self.profiles is not None:  # the monitor's profile: features, a numeric prediction, the caller
            due = self.profiles.add(
                [
                    {
                        **s.features,
                        "prediction": s.prediction if s.class_index is None else s.class_index,
                        AUTHENTICATED: int(authenticated),
                    }
                    for s in scored
                ]
            )
            if due:
                self._flush_due.set()
        if not self.serve_cfg.inference_log.enabled:
            return
        now = datetime.now(UTC)
        due = self.predictions.append(
            [
                {
                    "request_id": request_id,
                    "ts": now,
                    "model_name": model.name,
                    "model_version": model.version,
                    self.key: getattr(row, self.key),
                    **s.features,
                    "prediction": s.prediction,
                    **({"probabilities": s.probabilities} if s.probabilities is not None else {}),
                    "latency_ms": s.latency_ms,
                }
                for row, s in zip(rows, scored, strict=True)
            ]
        )
        if due:
            self._flush_due.set()
        if self.shadow.model is not None:  # after the answer is made: the challenger scores the same rows
            self.shadow.submit(request_id, [getattr(r, self.key) for r in rows], [s.features for s in scored])

    def log_feedback(self, item: Any) -> None:
        row = {
            "request_id": item.request_id,
            "ts": datetime.now(UTC),
            self.key: getattr(item, self.key),
            "label": item.label,
        }
        if self.feedback.append([row]):
            self._flush_due.set()

    def flush(self, *, force: bool = False) -> int:
        """Write the inference log's buffers and send the monitor's profile when due (or ``force``).

        Each writer and the profile is tried even when another fails (the first failure is raised after)."""
        written, failure = 0, None
        for writer in self._writers.values():
            try:
                written += writer.flush()
            except Exception as exc:
                failure = failure or exc
        if self.profiles is not None:
            try:
                self.profiles.flush(force=force)
            except Exception as exc:
                failure = failure or exc
        if failure is not None:
            raise failure
        return written

    async def _flush_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._flush_due.wait(), self._flush_every)
            self._flush_due.clear()
            try:
                await loop.run_in_executor(self._io_pool, self.flush)
            except asyncio.CancelledError:
                raise
            except Exception:  # a full disk must not take serving down; the rows stay buffered
                log.exception("raylane: cannot write the inference log")

    # ----- Serve hooks

    async def check_health(self) -> None:
        for task in self._tasks:
            if task.done():
                raise RuntimeError(f"a background task of the replica ended: {task}")

    async def __del__(self) -> None:
        for task in getattr(self, "_tasks", []):
            task.cancel()
        if (shadow := getattr(self, "shadow", None)) is not None:
            shadow.drain()
        if hasattr(self, "predictions"):
            written = self.flush(force=True)  # graceful shutdown: nothing buffered is lost
            log.info("raylane: wrote %d buffered log rows at shutdown", written)


def _in_serve() -> bool:
    try:
        serve.get_replica_context()
    except Exception:
        return False
    return True
