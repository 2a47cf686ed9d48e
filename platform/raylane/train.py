"""Training: the Feast training set → preprocessing → Ray Train (TorchTrainer) → MLflow → registry.

One code path for every task (binary, multiclass, regression):

1. The point-in-time training set (`FeatureRepo.training_set`) is split by time (newest rows
   validate) or at random, and fingerprinted (views, label time range, rows, content hash).
2. Preprocessing is fitted on the training split only and applied with Ray Data.
3. A `TorchTrainer` runs `train_loop` on ``train.num_workers`` workers (DDP over gloo or NCCL),
   with a checkpoint every epoch (weights, optimizer, preprocessing) and early stopping; a killed
   worker resumes from the last checkpoint up to ``train.max_failures`` times.
4. The driver evaluates the best checkpoint on the holdout, logs the model (a bundle, no pickles),
   the resolved config, lineage tags and whylogs reference profiles to MLflow, registers a version
   with alias ``challenger`` and runs the promotion gate.

Before anything starts, the request is checked against the cluster: ``use_gpu`` on a cluster
without GPUs, or more CPUs per worker than any node has, is a `ClusterError` at once instead of
Ray's endless wait.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from raylane.bundle import ModelBundle
from raylane.config import ProjectConfig
from raylane.errors import ClusterError, RaylaneError
from raylane.features import FeatureRepo
from raylane.lineage import code_version, data_fingerprint, ray_ids
from raylane.model import metrics, primary_metric
from raylane.preprocess import Preprocessor, fit_preprocessor
from raylane.registry import GateDecision, Registry

__all__ = ["Prepared", "TrainResult", "check_resources", "finish", "make_trainer", "prepare", "train"]

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a training run produced."""

    run_id: str
    metrics: dict[str, float]
    epochs: int
    version: str | None = None
    decision: GateDecision | None = None
    promoted: bool = False
    lineage: dict[str, str] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def check_resources(cfg: ProjectConfig) -> None:
    """Fail at once when the cluster can never place the requested workers.

    Raises:
        ClusterError: ``use_gpu`` without GPUs, or a worker larger than every node.
    """
    import ray

    t = cfg.train
    per_worker = dict(t.resources_per_worker)
    if t.use_gpu:
        per_worker.setdefault("GPU", 1.0)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    total: dict[str, float] = {}
    for n in nodes:
        for k, v in n.get("Resources", {}).items():
            total[k] = total.get(k, 0.0) + v
    if t.use_gpu and total.get("GPU", 0.0) < per_worker["GPU"] * t.num_workers:
        raise ClusterError(
            f"train.use_gpu is true for {t.num_workers} worker(s), but the cluster has {total.get('GPU', 0):g} GPU(s)",
            fix="set train.use_gpu=false, or run on a cluster with GPU nodes (backends.ray.address)",
        )
    for res, amount in per_worker.items():
        biggest = max((n.get("Resources", {}).get(res, 0.0) for n in nodes), default=0.0)
        if amount > biggest:
            raise ClusterError(
                f"each training worker asks for {amount:g} {res}, but no node has more than {biggest:g}",
                fix="lower train.resources_per_worker or add bigger nodes",
            )
        if amount * t.num_workers > total.get(res, 0.0):
            raise ClusterError(
                f"{t.num_workers} training workers need {amount * t.num_workers:g} {res}; the cluster has"
                f" {total.get(res, 0.0):g}",
                fix="lower train.num_workers or train.resources_per_worker",
            )


# --------------------------------------------------------------------------- worker side


def train_loop(config: dict[str, Any]) -> None:
    """The per-worker training loop (Ray Train V2). Everything it needs comes in ``config``."""
    import ray.train
    import torch
    import torch.distributed as dist
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    from raylane.config import ModelConfig
    from raylane.model import loss_fn, predict_output, prepare_target

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    seed = int(config["seed"])
    torch.manual_seed(seed + rank)
    np.random.seed(seed + rank)
    pre = Preprocessor.from_json(config["pre"])
    model_cfg = ModelConfig.model_validate(config["model"])
    bundle = ModelBundle.create(model_cfg, pre, config["features"])
    opt_cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}[config["optimizer"]]
    opt = opt_cls(bundle.model.parameters(), lr=config["lr"], weight_decay=config["weight_decay"])
    start, best, bad = 0, None, 0
    resumed_from = -1
    if ckpt := ray.train.get_checkpoint():
        with ckpt.as_directory() as d:
            state = torch.load(Path(d) / "state.pt", map_location="cpu", weights_only=True)
        bundle.model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start, best, bad = state["epoch"] + 1, state["best"], state["bad"]
        resumed_from = state["epoch"]
    model: Any = ray.train.torch.prepare_model(bundle.model)
    device = ray.train.torch.get_device()
    task, metric, mode = config["task"], config["metric"], config["mode"]
    criterion = loss_fn(task)
    train_shard = ray.train.get_dataset_shard("train")
    val_shard = ray.train.get_dataset_shard("val")
    client = MlflowClient(tracking_uri=config["tracking_uri"]) if rank == 0 and config["run_id"] else None
    faults = config.get("faults") or {}
    patience = config["patience"]
    mlflow_seconds = 0.0
    pending: list[Any] = []
    cache: dict[str, dict[str, torch.Tensor]] = {}
    shuffler = torch.Generator().manual_seed(seed + rank)

    def shard_tensors(name: str, shard: Any) -> dict[str, torch.Tensor]:
        # Read the shard once and keep it as tensors on the device: later epochs then cost what a
        # plain torch loop costs instead of a Ray Data pass each (train.cache_data).
        if name not in cache:
            parts = list(shard.iter_torch_batches(batch_size=8192, device=device))
            keys = ("x_num", "x_cat", "y")
            cache[name] = {k: torch.cat([p[k] for p in parts]) for k in keys} if parts else {}
        return cache[name]

    def train_batches(epoch: int) -> Any:
        bs = config["batch_size"]
        if not config["cache_data"]:
            yield from train_shard.iter_torch_batches(
                batch_size=bs, device=device, local_shuffle_buffer_size=4 * bs, local_shuffle_seed=seed + epoch
            )
            return
        data = shard_tensors("train", train_shard)
        if not data:
            return
        order = torch.randperm(len(data["y"]), generator=shuffler).to(data["y"].device)
        for i in range(0, len(order), bs):
            idx = order[i : i + bs]
            yield {k: v[idx] for k, v in data.items()}

    def val_batches() -> Any:
        if not config["cache_data"]:
            yield from val_shard.iter_torch_batches(batch_size=4096, device=device)
            return
        data = shard_tensors("val", val_shard)
        for i in range(0, len(data.get("y", ())), 4096):
            yield {k: v[i : i + 4096] for k, v in data.items()}

    for epoch in range(start, config["epochs"]):
        if faults and epoch == faults["epoch"] and rank == world - 1 and not Path(faults["marker"]).exists():
            Path(faults["marker"]).write_text(str(epoch))
            os._exit(1)  # a worker dies mid-run (fault-tolerance test)
        t0 = time.perf_counter()
        model.train()
        total, count = 0.0, 0
        for batch in train_batches(epoch):
            logits = model(batch["x_num"], batch["x_cat"])
            out, y = prepare_target(task, logits, batch["y"])
            loss = criterion(out, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(y)
            count += len(y)
        train_seconds = time.perf_counter() - t0
        model.eval()
        preds, ys = [], []
        with torch.no_grad():
            for batch in val_batches():
                preds.append(predict_output(task, model(batch["x_num"], batch["x_cat"])).cpu().numpy())
                ys.append(batch["y"].cpu().numpy())
        local = (np.concatenate(preds) if preds else np.zeros(0), np.concatenate(ys) if ys else np.zeros(0))
        if world > 1:
            gathered: list[Any] = [None] * world
            dist.all_gather_object(gathered, local)
            pred_all = np.concatenate([g[0] for g in gathered if len(g[0])])
            y_all = np.concatenate([g[1] for g in gathered if len(g[1])])
        else:
            pred_all, y_all = local
        if task == "regression":
            pred_all = pred_all * pre.target_std + pre.target_mean
            y_all = y_all * pre.target_std + pre.target_mean
        val = metrics(task, y_all, pred_all)
        score = val[metric]
        improved = best is None or (
            score > best + config["min_delta"] if mode == "max" else score < best - config["min_delta"]
        )
        if improved:
            best, bad = score, 0
        else:
            bad += 1
        report = {
            "epoch": epoch,
            "epochs_completed": epoch + 1,
            "train_loss": total / max(count, 1),
            **{f"val_{k}": v for k, v in val.items()},
            "epoch_seconds": train_seconds,
            "resumed_from": resumed_from,
        }
        if client is not None:
            t_log = time.perf_counter()
            now = int(time.time() * 1000)
            batch = [
                Metric(k, float(v), now, epoch) for k, v in report.items() if k not in ("epoch", "epochs_completed")
            ]
            batch.append(Metric("mlflow_log_seconds", mlflow_seconds, now, epoch))  # the logging before this one
            # Asynchronous: MLflow writes on its own thread while the next epoch trains.
            pending.append(client.log_batch(config["run_id"], metrics=batch, synchronous=False))
            mlflow_seconds += time.perf_counter() - t_log
        with tempfile.TemporaryDirectory() as d:
            checkpoint = None
            if rank == 0:
                raw = getattr(model, "module", model)
                torch.save(
                    {
                        "model": raw.state_dict(),
                        "optimizer": opt.state_dict(),
                        "epoch": epoch,
                        "best": best,
                        "bad": bad,
                    },
                    Path(d) / "state.pt",
                )
                bundle.model = raw
                bundle.save(Path(d) / "bundle")
                checkpoint = ray.train.Checkpoint.from_directory(d)
            ray.train.report(report, checkpoint=checkpoint)
        if patience and bad >= patience:
            break
    for op in pending:  # every metric is written before the run ends
        op.wait()


# --------------------------------------------------------------------------- driver side


def _split(cfg: ProjectConfig, ds: Any) -> tuple[Any, Any]:
    v = cfg.train.validation
    if v.split == "random":
        return ds.train_test_split(test_size=v.fraction, shuffle=True, seed=cfg.train.seed)
    label_time = cfg.data.source(cfg.data.labels.source).timestamp_column
    train, val = ds.sort(label_time).split_proportionately([1 - v.fraction])
    return train, val


def ensure_experiment(cfg: ProjectConfig) -> Any:
    """The project's MLflow experiment; with the embedded SQLite store its artifacts live under the
    storage root (MLflow's default would be ``./mlruns`` in whatever folder the process runs in)."""
    import mlflow

    mlflow.set_tracking_uri(cfg.mlflow_tracking_uri)
    mlflow.set_registry_uri(cfg.mlflow_tracking_uri)
    with warnings.catch_warnings():  # SQLAlchemy deprecation noise from MLflow's SQL store import
        warnings.simplefilter("ignore", DeprecationWarning)
        found = mlflow.get_experiment_by_name(cfg.mlflow_experiment)
    if found is None:
        location = (cfg.storage_root / "mlartifacts").as_uri() if cfg.backends.mlflow.tracking_uri is None else None
        mlflow.create_experiment(cfg.mlflow_experiment, artifact_location=location)
    return mlflow.set_experiment(cfg.mlflow_experiment)


def holdout_frame(cfg: ProjectConfig) -> pd.DataFrame:
    """The current holdout (raw features and label), split exactly as training splits it."""
    import ray

    ray.data.DataContext.get_current().execution_options.preserve_order = True
    _, val = _split(cfg, FeatureRepo(cfg).training_set().materialize())
    return val.to_pandas()


@dataclass
class Prepared:
    """The data side of a training run, computed once by the driver and shared by every trial of a sweep."""

    train_raw: Any
    val_raw: Any
    train_ds: Any
    val_ds: Any
    pre: Preprocessor
    features: list[str]
    lineage: dict[str, str]
    metric: str
    mode: str


def prepare(cfg: ProjectConfig, *, step: Callable[[str], object] = lambda _: None) -> Prepared:
    """Build the point-in-time training set, split it, fit preprocessing on the training split and
    apply it with Ray Data. Deterministic for a given config and data (a resumed sweep gets the same)."""
    import ray

    check_resources(cfg)
    ray.data.DataContext.get_current().execution_options.preserve_order = True  # reproducible splits
    step("building the training set (Feast, point-in-time)")
    ds = FeatureRepo(cfg).training_set().materialize()
    label = cfg.data.labels.column
    label_time = cfg.data.source(cfg.data.labels.source).timestamp_column
    views = [v.name for v in cfg.features.views]
    lineage = {
        **code_version(),
        "config_hash": cfg.fingerprint(),
        **data_fingerprint(ds, label_time=label_time, views=views),
        **ray_ids(),
        "project": cfg.project,
    }
    train_raw, val_raw = _split(cfg, ds)
    dtypes = cfg.feature_dtypes()
    step("fitting preprocessing on the training split")
    pre = fit_preprocessor(
        train_raw, dtypes=dtypes, label=label, task=cfg.model.task, max_categories=cfg.model.max_categories
    )
    train_ds = train_raw.map_batches(pre.batch, batch_format="pandas").materialize()
    val_ds = val_raw.map_batches(pre.batch, batch_format="pandas").materialize()
    metric, mode = primary_metric(cfg.model.task, cfg.registry.promotion.metric)
    return Prepared(train_raw, val_raw, train_ds, val_ds, pre, list(dtypes), lineage, metric, mode)


def make_trainer(
    cfg: ProjectConfig,
    prep: Prepared,
    *,
    name: str,
    storage_path: Path,
    run_id: str | None,
    callbacks: list[Any] | None = None,
    faults: dict[str, Any] | None = None,
) -> Any:
    """The `TorchTrainer` for one training run of ``cfg`` (a plain run or one sweep trial).

    Args:
        name: Ray Train run name. A name already used under ``storage_path`` resumes that run from
            its last checkpoint (or returns its result when it had finished).
        run_id: MLflow run the workers log per-epoch metrics to; ``None`` when a Tune callback does.
    """
    import ray.train
    from ray.train.torch import TorchTrainer

    stopping = cfg.train.early_stopping
    loop_config = {
        "seed": cfg.train.seed,
        "pre": prep.pre.to_json(),
        "model": cfg.model.model_dump(mode="json"),
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
    return TorchTrainer(
        train_loop,
        train_loop_config=loop_config,
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.train.num_workers,
            use_gpu=cfg.train.use_gpu,
            resources_per_worker=dict(cfg.train.resources_per_worker),
        ),
        datasets={"train": prep.train_ds, "val": prep.val_ds},
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
) -> TrainResult:
    """Evaluate a checkpoint on the holdout, log the model to the active MLflow run ``run_id``,
    and (``register``) register it as ``challenger`` and run the promotion gate."""
    import mlflow

    step("evaluating the best checkpoint on the holdout")
    with checkpoint.as_directory() as d:
        bundle = ModelBundle.load(Path(d) / "bundle")
    holdout = prep.val_raw.to_pandas()
    scores = metrics(cfg.model.task, bundle.target(holdout), bundle.predict(holdout))
    mlflow.log_metrics({f"holdout_{k}": v for k, v in scores.items()})
    mlflow.log_metric("epochs_run", epochs)
    step("logging the model and reference profiles")
    model_uri = _log_model(cfg, bundle, prep.train_raw, prep.features)
    result = TrainResult(run_id, scores, epochs, lineage=prep.lineage, history=history)
    if register:
        step("registering and gating")
        _register_and_gate(cfg, result, model_uri, holdout)
    return result


def log_run_header(
    cfg: ProjectConfig, lineage: dict[str, str], extra_tags: dict[str, str] | None = None, *, params: bool = True
) -> None:
    """Lineage tags, flat parameters (unless already logged) and the resolved config of the active MLflow run."""
    import mlflow

    mlflow.set_tags({**{f"raylane.{k}": v for k, v in lineage.items()}, **(extra_tags or {})})
    if params:
        mlflow.log_params(_flat_params(cfg))
    mlflow.log_dict(json.loads(cfg.model_dump_json()), "config/project.json")
    mlflow.log_text(cfg.to_yaml(), "config/project.yaml")


def train(
    cfg: ProjectConfig,
    *,
    register: bool = True,
    run_name: str | None = None,
    step: Callable[[str], object] = lambda _: None,
    extra_tags: dict[str, str] | None = None,
    _faults: dict[str, Any] | None = None,
) -> TrainResult:
    """Train, track, register and gate one model. Needs Ray (see `raylane.runtime`).

    Args:
        cfg: The project.
        register: Register a version and run the gate (``False`` only trains and logs the run).
        run_name: MLflow run name; a unique one when omitted.
        step: Called with a short text at each stage (progress display).
        extra_tags: More MLflow run tags (e.g. the version being reproduced).

    Raises:
        ClusterError: the cluster can never satisfy ``train.*`` resources.
        FeatureStoreError: the feature repo is not applied.
    """
    import mlflow
    import ray.train

    started = time.perf_counter()
    prep = prepare(cfg, step=step)
    experiment = ensure_experiment(cfg)
    name = run_name or f"{cfg.project}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    with mlflow.start_run(experiment_id=experiment.experiment_id, run_name=name) as run:
        run_id = run.info.run_id
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
        try:
            result = trainer.fit()
        except ray.train.TrainingFailedError as exc:
            mlflow.set_tag("raylane.status", "failed")
            raise RaylaneError(
                f"training failed after {cfg.train.max_failures} allowed worker failure(s): {_first_line(exc)}",
                fix="see the worker error above; raise train.max_failures to survive more worker losses",
            ) from exc
        best = result.get_best_checkpoint(metric=f"val_{prep.metric}", mode=prep.mode) or result.checkpoint
        if best is None:
            raise RaylaneError("training reported no checkpoint", fix="check train.epochs and the worker logs")
        kept = result.best_checkpoints or []
        history = [dict(m) for _, m in sorted(kept, key=lambda cm: cm[1]["epoch"])]
        epochs = int(result.metrics["epoch"]) + 1 if result.metrics else 0
        result_obj = finish(cfg, prep, best, run_id, epochs=epochs, history=history, register=register, step=step)
    result_obj.seconds = time.perf_counter() - started
    return result_obj


def _register_and_gate(cfg: ProjectConfig, result: TrainResult, model_uri: str, holdout: pd.DataFrame) -> None:
    reg = Registry(cfg)
    champion = reg.champion()
    tags = {**result.lineage, "parent_version": str(champion.version) if champion else ""}
    version = reg.register(model_uri, result.run_id, tags)
    result.version = version
    try:
        decision = reg.gate(version, holdout, result.metrics)
    except Exception as exc:  # the gate errored: record it, move nothing
        reg.record(None, error=f"{type(exc).__name__}: {exc}", version=version)
        raise
    reg.record(decision)
    result.decision = decision
    if decision.passed:
        reg.promote(version, decision.reason)
        result.promoted = True


def _log_model(cfg: ProjectConfig, bundle: ModelBundle, train_raw: Any, features: list[str]) -> str:
    """Log the bundle as an MLflow pyfunc (model from code) with signature, input example and
    whylogs reference profiles of the training features and of the predictions on them."""
    import mlflow
    from mlflow.models import infer_signature

    from raylane.profiling import profile

    sample = train_raw.limit(20_000).to_pandas()
    frame = sample[features]
    pred = bundle.predict(frame)
    with tempfile.TemporaryDirectory(prefix="raylane-bundle-") as tmp:
        folder = bundle.save(Path(tmp) / "bundle")
        reference = frame.copy()
        if pred.ndim == 2:
            reference["prediction"] = pred.argmax(1)
        else:
            reference["prediction"] = pred
        (Path(tmp) / "reference_profile.bin").write_bytes(profile(reference).serialize())
        mlflow.log_artifact(str(Path(tmp) / "reference_profile.bin"), artifact_path="monitoring")
        example = _plain_dtypes(frame.head(5))
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(Path(__file__).with_name("mlflow_model.py")),
            artifacts={"bundle": str(folder)},
            signature=infer_signature(example, bundle.predict(example)),
            input_example=example,
            pip_requirements=["raylane", "torch", "pandas"],
        )
    return str(info.model_uri)


def _plain_dtypes(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with numpy dtypes for MLflow's signature: integers as float64 (a feature may be
    null at inference, which an integer column cannot hold), strings as optional objects."""
    out = {}
    for name in frame.columns:
        col = frame[name]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            out[name] = col.astype("float64")
        else:
            out[name] = col.astype(object).where(col.notna(), None)
    return pd.DataFrame(out, index=frame.index)


def _flat_params(cfg: ProjectConfig) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for section in ("model", "train"):
        for k, v in getattr(cfg, section).model_dump(mode="json").items():
            if isinstance(v, dict):
                for k2, v2 in v.items():
                    out[f"{section}.{k}.{k2}"] = v2
            else:
                out[f"{section}.{k}"] = v
    return out


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[-1][:300] if text else type(exc).__name__


# --------------------------------------------------------------------------- reproduction

REPRODUCE_TOLERANCE = 0.01
"""Largest absolute difference of a holdout metric for a retrained model to count as reproduced."""


@dataclass
class Reproduction:
    """A retraining from a registered version's recorded config, compared with the record."""

    ref: str
    recorded: dict[str, float]
    retrained: dict[str, float]
    lineage_then: dict[str, str]
    lineage_now: dict[str, str]

    @property
    def same_data(self) -> bool:
        return self.lineage_then.get("data_hash") == self.lineage_now.get("data_hash")

    @property
    def same_code(self) -> bool:
        return self.lineage_then.get("git_sha") == self.lineage_now.get("git_sha")

    @property
    def matches(self) -> bool:
        return all(
            abs(self.recorded[k] - self.retrained.get(k, float("nan"))) <= REPRODUCE_TOLERANCE for k in self.recorded
        )


def recorded_config(cfg: ProjectConfig, ref: str) -> tuple[ProjectConfig, Any, Any]:
    """The exact config a registered version was trained with, its version and its MLflow run."""
    reg = Registry(cfg)
    mv = reg.version(ref)
    run = reg.client.get_run(mv.run_id)
    with tempfile.TemporaryDirectory(prefix="raylane-config-") as tmp:
        local = reg.client.download_artifacts(mv.run_id, "config/project.json", tmp)
        doc = json.loads(Path(local).read_text())
    return ProjectConfig.model_validate(doc), mv, run


def reproduce(cfg: ProjectConfig, ref: str, *, step: Callable[[str], object] = lambda _: None) -> Reproduction:
    """Retrain ``ref`` from its recorded config (same seed, same data window) without registering."""
    then_cfg, mv, run = recorded_config(cfg, ref)
    recorded = {k.removeprefix("holdout_"): v for k, v in run.data.metrics.items() if k.startswith("holdout_")}
    then = {k.removeprefix("raylane."): v for k, v in run.data.tags.items() if k.startswith("raylane.")}
    result = train(then_cfg, register=False, step=step, extra_tags={"raylane.reproduces": f"{mv.name}/{mv.version}"})
    return Reproduction(f"{mv.name}/{mv.version}", recorded, result.metrics, then, result.lineage)
