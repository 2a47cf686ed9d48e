"""The driver side of a training run: the `TorchTrainer`, the run, and what follows the last epoch.

`train` is one plain run: prepare the data (`raylane.training.data`), open the MLflow run, fit a
`TorchTrainer` built by `make_trainer` (also used by every sweep trial), then `finish`: evaluate
the best checkpoint on the holdout, log the model, and register and gate it through
`Registry.gate_and_promote`, the one promotion path.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raylane.bundle import ModelBundle
from raylane.config import ProjectConfig
from raylane.contract import ModelCode, factory_params
from raylane.errors import RaylaneError
from raylane.lineage import Lineage, Tag
from raylane.model import metrics
from raylane.registry import GateDecision, Registry
from raylane.timing import Stopwatch
from raylane.training.data import Prepared, prepare
from raylane.training.loop import train_loop
from raylane.training.tracking import ensure_experiment, log_model, log_run_header

__all__ = ["TrainResult", "finish", "make_trainer", "train"]

log = logging.getLogger(__name__)

HEALTH_CHECK_INTERVAL_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
"""How often Ray Train's controller polls its workers (Ray's default: 2 s). Each phase change of a
run waits for a poll, which cost ~6 s between the last epoch and the end of every small run; 0.25 s
cuts that to ~1 s. A value already in the environment wins."""


@dataclass
class TrainResult:
    """What a training run produced."""

    run_id: str
    metrics: dict[str, float]
    epochs: int
    version: str | None = None
    decision: GateDecision | None = None
    promoted: bool = False
    lineage: Lineage = field(default_factory=Lineage)
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0
    timings: Stopwatch = field(default_factory=Stopwatch)  # where the seconds went, stage by stage


def make_trainer(
    cfg: ProjectConfig,
    prep: Prepared,
    *,
    name: str,
    storage_path: Path,
    run_id: str | None,
    callbacks: list[Any] | None = None,
    faults: dict[str, Any] | None = None,
    start_from: Any = None,
) -> Any:
    """The `TorchTrainer` for one training run of ``cfg`` (a plain run or one sweep trial).

    Args:
        name: Ray Train run name. A name already used under ``storage_path`` resumes that run from
            its last checkpoint (or returns its result when it had finished).
        run_id: MLflow run the workers log per-epoch metrics to; ``None`` when a Tune callback does.
        start_from: The path of a checkpoint a new run starts from (PBT's copy of a stronger trial's);
            the run's own checkpoints win once it has some.
    """
    import ray.train
    from ray.train.torch import TorchTrainer

    os.environ.setdefault(HEALTH_CHECK_INTERVAL_ENV, "0.25")  # Ray Train reads it at fit()
    # With train.cache_data each worker keeps its shard in memory: it takes it straight from the
    # prepared blocks in the object store. Ray Data's streaming split (a coordinator actor per
    # dataset, started with the worker group) is for data streamed through the epochs.
    cached = cfg.train.cache_data
    blocks = {"train": prep.train_ds.to_arrow_refs(), "val": prep.val_ds.to_arrow_refs()} if cached else None
    return TorchTrainer(
        train_loop,
        train_loop_config={
            **_loop_config(cfg, prep, run_id=run_id, faults=faults),
            "start_from": start_from,
            "blocks": blocks,
        },
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.train.num_workers,
            use_gpu=cfg.train.use_gpu,
            resources_per_worker=dict(cfg.train.resources_per_worker),
        ),
        datasets=None if cached else {"train": prep.train_ds, "val": prep.val_ds},
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=str(storage_path),
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=cfg.train.checkpoints_to_keep,
                checkpoint_score_attribute=f"val_{prep.metric}",
                checkpoint_score_order=prep.mode,
            ),
            failure_config=ray.train.FailureConfig(max_failures=cfg.train.max_failures),
            callbacks=callbacks,
        ),
    )


def _loop_config(
    cfg: ProjectConfig, prep: Prepared, *, run_id: str | None, faults: dict[str, Any] | None
) -> dict[str, Any]:
    """Everything `train_loop` needs, as plain values (it runs in the workers' processes)."""
    stopping = cfg.train.early_stopping
    return {
        "seed": cfg.train.seed,
        "pre": prep.pre.to_json(),
        "model": cfg.model.model_dump(mode="json"),
        "params": factory_params(cfg),  # a sweep trial's own
        "code": prep.code.to_dict() if prep.code is not None else None,
        "loop": prep.loop.to_dict() if prep.loop is not None else None,
        "features": prep.features,
        "optimizer": cfg.train.optimizer,
        "lr": cfg.train.learning_rate,
        "weight_decay": cfg.train.weight_decay,
        "epochs": cfg.train.epochs,
        "batch_size": cfg.train.batch_size,
        "task": cfg.model.task,
        "metric": prep.metric,
        "mode": prep.mode,
        "patience": stopping.patience if stopping else 0,
        "min_delta": stopping.min_delta if stopping else 0.0,
        "tracking_uri": cfg.mlflow_tracking_uri,
        "run_id": run_id,
        "faults": faults,
        "cache_data": cfg.train.cache_data,
    }


def finish(
    cfg: ProjectConfig,
    prep: Prepared,
    checkpoint: Any,
    run_id: str,
    *,
    epochs: int,
    history: list[dict[str, float]],
    register: bool,
    step: Callable[[str], object] = lambda _: None,
    timer: Stopwatch | None = None,
) -> TrainResult:
    """Evaluate a checkpoint on the holdout, log the model to the active MLflow run ``run_id``,
    and (``register``) register it as ``challenger`` and run the promotion gate."""
    import mlflow

    timer = timer or Stopwatch()
    step("evaluating the best checkpoint on the holdout")
    with timer.stage("evaluation"):
        with checkpoint.as_directory() as d:
            bundle = ModelBundle.load(Path(d) / "bundle")
        holdout = prep.val_raw.to_pandas()
        scores = metrics(cfg.model.task, bundle.target(holdout), bundle.predict(holdout))
    mlflow.log_metrics({f"holdout_{k}": v for k, v in scores.items()})
    mlflow.log_metric("epochs_run", epochs)
    step("logging the model and reference profiles")
    with timer.stage("model logging"):
        model_uri = log_model(bundle, prep.train_raw, prep.features, cfg.feature_specs())
    result = TrainResult(run_id, scores, epochs, lineage=prep.lineage, history=history, timings=timer)
    if register:
        step("registering and gating")
        with timer.stage("registration"):
            _register(cfg, result, model_uri, holdout)
    return result


def _register(cfg: ProjectConfig, result: TrainResult, model_uri: str, holdout: Any) -> None:
    """Register ``result``'s model as challenger and run it through the gate."""
    reg = Registry(cfg)
    champion = reg.champion()
    tags = {**result.lineage.to_tags(), "parent_version": str(champion.version) if champion else ""}
    result.version = reg.register(model_uri, result.run_id, tags)
    result.decision = reg.gate_and_promote(result.version, holdout, result.metrics, rollout=True)
    result.promoted = result.decision.promoted


def train(
    cfg: ProjectConfig,
    *,
    register: bool = True,
    run_name: str | None = None,
    step: Callable[[str], object] = lambda _: None,
    extra_tags: dict[str, str] | None = None,
    timer: Stopwatch | None = None,
    code: ModelCode | None = None,
    loop: ModelCode | None = None,
    _faults: dict[str, Any] | None = None,
) -> TrainResult:
    """Train, track, register and gate one model. Needs Ray (see `raylane.runtime`).

    Args:
        cfg: The project.
        register: Register a version and run the gate (``False`` only trains and logs the run).
        run_name: MLflow run name; a unique one when omitted.
        step: Called with a short text at each stage (progress display).
        extra_tags: More MLflow run tags (e.g. the version being reproduced).
        timer: Gets every stage's seconds (the caller may have timed its own, e.g. starting Ray);
            the result's ``timings``, also logged to the run as ``time_<stage>_s`` metrics.
        code: The model code to train (a registered version's, to reproduce it); the working
            tree's ``model.entrypoint`` when omitted.
        loop: The ``train.loop`` code to run (a registered version's, to reproduce it); likewise.

    Raises:
        ClusterError: the cluster can never satisfy ``train.*`` resources.
        FeatureStoreError: the feature repo is not applied.
    """
    import mlflow

    started = time.perf_counter()
    timer = timer or Stopwatch()
    prep = prepare(cfg, step=step, timer=timer, code=code, loop=loop)
    name = run_name or f"{cfg.project}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    with timer.stage("tracking setup"):
        experiment = ensure_experiment(cfg)
        run = mlflow.start_run(experiment_id=experiment.experiment_id, run_name=name)
    with run:
        run_id = run.info.run_id
        with timer.stage("tracking setup"):
            log_run_header(cfg, prep.lineage, extra_tags)
        step(f"training on {cfg.train.num_workers} Ray Train worker(s)")
        trainer = make_trainer(
            cfg,
            prep,
            name=name,  # unique: Ray Train silently resumes a run with a name it has seen
            storage_path=cfg.storage_root / "ray_results",
            run_id=run_id,
            faults=_faults,
        )
        fit_started = time.time()
        result = _fit(cfg, trainer)
        _time_fit(timer, fit_started, time.time(), result)
        best = result.get_best_checkpoint(metric=f"val_{prep.metric}", mode=prep.mode) or result.checkpoint
        if best is None:
            raise RaylaneError(
                "training reported no checkpoint",
                fix="call ctx.report(metrics, epoch) after each epoch of train.loop"
                if cfg.train.loop
                else "check train.epochs and the worker logs",
            )
        kept = result.best_checkpoints or []
        history = [dict(m) for _, m in sorted(kept, key=lambda cm: cm[1]["epoch"])]
        epochs = int(result.metrics["epoch"]) + 1 if result.metrics else 0
        result_obj = finish(
            cfg, prep, best, run_id, epochs=epochs, history=history, register=register, step=step, timer=timer
        )
        result_obj.seconds = time.perf_counter() - started
        mlflow.log_metrics(timer.metrics())
    return result_obj


def _time_fit(timer: Stopwatch, started: float, ended: float, result: Any) -> None:
    """Split the Ray Train run: worker-group start (until the first worker loop began), epochs
    (until the last report), worker-group stop (the rest). Wall clock: worker and driver clocks
    agree on one machine, and the split is clamped where a cluster's clocks do not."""
    total = max(ended - started, 0.0)
    reports = [m for _, m in (result.best_checkpoints or [])] + [result.metrics or {}]
    ready_at = [float(m["ready_at"]) for m in reports if "ready_at" in m]
    if not ready_at or "reported_at" not in (result.metrics or {}):
        timer.add("Ray Train run", total)
        return
    ready = min(max(min(ready_at) - started, 0.0), total)
    last = min(max(float(result.metrics["reported_at"]) - started, ready), total)
    timer.add("worker-group start", ready)
    timer.add("epochs", last - ready)
    timer.add("worker-group stop", total - last)


def _fit(cfg: ProjectConfig, trainer: Any) -> Any:
    """Run the trainer; a run that used up its allowed worker failures is a clear error (and a failed run)."""
    import signal

    import mlflow
    import ray.train

    # In the main thread Ray Train installs a Ctrl-C handler that holds the run's controller actor:
    # left installed, it keeps that actor alive after the run (until the next run or Ray's end).
    handler = signal.getsignal(signal.SIGINT) if threading.current_thread() is threading.main_thread() else None
    try:
        return trainer.fit()
    except ray.train.TrainingFailedError as exc:
        mlflow.set_tag(Tag.STATUS, "failed")
        raise RaylaneError(
            f"training failed after {cfg.train.max_failures} allowed worker failure(s): {_first_line(exc)}",
            fix="see the worker error above; raise train.max_failures to survive more worker losses",
        ) from exc
    finally:
        if handler is not None:
            signal.signal(signal.SIGINT, handler)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1][:300] if text else type(exc).__name__
