"""The data side of a training run: the point-in-time training set, split, fingerprinted and preprocessed.

The driver computes it once (`prepare`); a sweep shares the same `Prepared` with every trial
through the object store. Before anything starts, the request is checked against the cluster
(`check_resources`): ``use_gpu`` on a cluster without GPUs, or more CPUs per worker than any node
has, is a `ClusterError` at once instead of Ray's endless wait.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from raylane.config import ProjectConfig
from raylane.contract import ModelCode, check_entrypoint, check_loop
from raylane.errors import ClusterError
from raylane.features import FeatureRepo
from raylane.lineage import Lineage, data_fingerprint, project_version, ray_ids
from raylane.model import primary_metric
from raylane.preprocess import Preprocessor, fit_preprocessor
from raylane.timing import Stopwatch

__all__ = ["Prepared", "check_resources", "holdout_frame", "prepare", "split"]


@dataclass
class Prepared:
    """The data side of a training run, computed once by the driver and shared by every trial of a sweep."""

    train_raw: Any
    val_raw: Any
    train_ds: Any
    val_ds: Any
    pre: Preprocessor
    features: list[str]
    lineage: Lineage
    metric: str
    mode: str
    code: ModelCode | None = None  # the model's source, captured once (None: the built-in MLP)
    loop: ModelCode | None = None  # train.loop's source, likewise (None: raylane's epoch loop)


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


def split(cfg: ProjectConfig, ds: Any) -> tuple[Any, Any]:
    """The training and validation splits of a Ray Dataset: newest label times validate, or at random."""
    v = cfg.train.validation
    if v.split == "random":
        return ds.train_test_split(test_size=v.fraction, shuffle=True, seed=cfg.train.seed)
    label_time = cfg.data.source(cfg.data.labels.source).timestamp_column
    train, val = ds.sort(label_time).split_proportionately([1 - v.fraction])
    return train, val


def holdout_frame(cfg: ProjectConfig) -> pd.DataFrame:
    """The current holdout (raw features and label), split exactly as training splits it."""
    import ray

    ray.data.DataContext.get_current().execution_options.preserve_order = True
    _, val = split(cfg, FeatureRepo(cfg).training_set().materialize())
    return val.to_pandas()


def prepare(
    cfg: ProjectConfig,
    *,
    step: Callable[[str], object] = lambda _: None,
    timer: Stopwatch | None = None,
    code: ModelCode | None = None,
    loop: ModelCode | None = None,
) -> Prepared:
    """Build the point-in-time training set, split it, fit preprocessing on the training split and
    apply it with Ray Data. Deterministic for a given config and data (a resumed sweep gets the same).
    ``timer`` gets the stages: training set, fingerprint, preprocessing.

    Args:
        code: The model's code to train (a registered version's, to reproduce it); captured from
            ``model.entrypoint`` in the working tree when omitted.
        loop: The training loop's code (``train.loop``), likewise.
    """
    import ray

    timer = timer or Stopwatch()
    code = check_entrypoint(cfg, code)  # before any work: a broken model fails in a second
    loop = check_loop(cfg, loop)
    check_resources(cfg)
    ray.data.DataContext.get_current().execution_options.preserve_order = True  # reproducible splits
    step("building the training set (Feast, point-in-time)")
    with timer.stage("training set"):
        ds = FeatureRepo(cfg).training_set().materialize()
    label = cfg.data.labels.column
    label_time = cfg.data.source(cfg.data.labels.source).timestamp_column
    views = [v.name for v in cfg.features.views]
    with timer.stage("fingerprint"):
        lineage = Lineage(
            **project_version(cfg),
            model_code_hash=code.hash if code is not None else "",
            train_loop_hash=loop.hash if loop is not None else "",
            config_hash=cfg.fingerprint(),
            **data_fingerprint(ds, label_time=label_time, views=views),
            **ray_ids(),
            project=cfg.project,
        )
    step("fitting preprocessing on the training split")
    with timer.stage("preprocessing"):
        train_raw, val_raw = split(cfg, ds)
        dtypes = cfg.feature_dtypes()
        specs = cfg.feature_specs()
        pre = fit_preprocessor(
            train_raw,
            dtypes=dtypes,
            label=label,
            task=cfg.model.task,
            max_categories=cfg.model.max_categories,
            text={f: (s.text_vocab, s.text_length) for f, s in specs.items() if s.is_text},
        )
        train_ds = train_raw.map_batches(pre.batch, batch_format="pandas").materialize()
        val_ds = val_raw.map_batches(pre.batch, batch_format="pandas").materialize()
    metric, mode = primary_metric(cfg.model.task, cfg.registry.promotion.metric)
    return Prepared(train_raw, val_raw, train_ds, val_ds, pre, list(dtypes), lineage, metric, mode, code, loop)
