"""The model, training, sweep and registry sections (what may be searched, and the promotion gate)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    ValidationInfo,
    model_validator,
)

from raylane.config._base import StrictModel

# --------------------------------------------------------------------------- model / train / tune


MAX_WIDTH = 16384  # a layer or embedding wider than this is a typo (or a hostile model artifact)
MAX_LAYERS = 64


BUILTIN_PARAMS = ("hidden_layers", "dropout", "activation", "embedding_dim")
"""The built-in MLP's params: ``model.<name>`` in the config, ``factory(inputs, **params)`` like any model."""


def _resolve_entrypoint(value: str | None, info: ValidationInfo) -> str | None:
    # A file entrypoint resolves against the config's folder, like every path in the config.
    if not value:
        return value
    target, sep, attr = value.rpartition(":")
    if sep and (target.endswith(".py") or "/" in target or "\\" in target):
        path = Path(target).expanduser()
        base = (info.context or {}).get("base_dir")
        if not path.is_absolute() and base is not None:
            path = Path(base) / path
        if path.is_absolute():
            return f"{os.path.normpath(path)}:{attr}"
    return value


class ModelConfig(StrictModel):
    """The model: the task, and the built-in tabular MLP's shape or your own torch module (`entrypoint`)."""

    task: Literal["binary", "multiclass", "regression"] = Field(description="Drives loss, output and metrics.")
    num_classes: int | None = Field(None, ge=2, description="Classes for `multiclass`; inferred when omitted.")
    entrypoint: Annotated[str | None, AfterValidator(_resolve_entrypoint)] = Field(
        None,
        description="Your own model: `path/to/file.py:Factory` (relative to the config's folder) or"
        " `package.module:Factory`, called as `Factory(inputs, **model.params)` (docs/models.md). The"
        " built-in MLP (`hidden_layers` …) when omitted.",
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="Keyword arguments for `entrypoint` (sweepable as `model.params.<name>`)."
    )
    hidden_layers: list[Annotated[int, Field(ge=1, le=MAX_WIDTH)]] = Field(
        default_factory=lambda: [64, 32], max_length=MAX_LAYERS, description="Hidden layer widths."
    )
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Dropout after each hidden layer.")
    activation: Literal["relu", "gelu", "tanh"] = Field("relu", description="Hidden activation.")
    embedding_dim: int = Field(4, ge=1, le=MAX_WIDTH, description="Embedding width per categorical feature.")
    max_categories: int = Field(
        50, ge=1, description="Most frequent categories kept per column; others share the unseen bucket."
    )

    @model_validator(mode="after")
    def _check_entrypoint(self) -> ModelConfig:
        if self.entrypoint is None:
            if self.params:
                raise ValueError(
                    "`params` is for `entrypoint` models; the built-in MLP takes"
                    f" {', '.join(BUILTIN_PARAMS)} as fields of `model`"
                )
            return self
        fields = type(self).model_fields
        builtin = [f for f in BUILTIN_PARAMS if getattr(self, f) != fields[f].get_default(call_default_factory=True)]
        if builtin:
            raise ValueError(
                f"`{builtin[0]}` shapes the built-in MLP, which `entrypoint` replaces;"
                f" put your model's arguments under `model.params`"
            )
        return self


class ValidationSplit(StrictModel):
    """How the holdout is cut from the training set."""

    split: Literal["time", "random"] = Field("time", description="`time`: newest rows validate; `random`.")
    fraction: float = Field(0.2, gt=0.0, lt=1.0, description="Fraction of rows held out.")


class EarlyStopping(StrictModel):
    """Stop when the validation metric stops improving."""

    patience: int = Field(3, ge=1, description="Epochs without improvement before stopping.")
    min_delta: float = Field(0.0, ge=0.0, description="Smallest change that counts as improvement.")


class TrainConfig(StrictModel):
    """Ray Train (TorchTrainer) settings."""

    num_workers: int = Field(1, ge=1, description="Data-parallel workers.")
    use_gpu: bool = Field(False, description="One GPU per worker. Fails fast when the cluster has none.")
    resources_per_worker: dict[str, float] = Field(
        default_factory=lambda: {"CPU": 1.0}, description="Ray resources each worker reserves."
    )
    epochs: int = Field(10, ge=1, description="Maximum epochs.")
    batch_size: int = Field(256, ge=1, description="Batch size per worker.")
    learning_rate: float = Field(1e-3, gt=0.0, description="Optimizer learning rate.")
    weight_decay: float = Field(0.0, ge=0.0, description="L2 weight decay.")
    optimizer: Literal["adam", "adamw", "sgd"] = Field("adamw", description="Optimizer.")
    seed: int = Field(0, description="Seed for data splits, initialisation and shuffling.")
    validation: ValidationSplit = Field(default_factory=ValidationSplit, description="Holdout split.")
    early_stopping: EarlyStopping | None = Field(
        default_factory=EarlyStopping, description="Early stopping; null disables it."
    )
    max_failures: int = Field(1, ge=0, description="Worker failures survived by resuming from a checkpoint.")
    cache_data: bool = Field(
        True,
        description="Keep each worker's data shard in memory as tensors, taken once from the prepared blocks in"
        " Ray's object store (fast start and epochs, reshuffled every epoch); turn off for shards larger than a"
        " worker's memory (streams from Ray Data through a streaming split).",
    )
    checkpoints_to_keep: int = Field(2, ge=1, description="Checkpoints kept per run.")
    loop: Annotated[str | None, AfterValidator(_resolve_entrypoint)] = Field(
        None,
        description="Your own training loop: `path/to/file.py:train_loop` (relative to the config's folder) or"
        " `package.module:train_loop`, called as `train_loop(ctx)` with a `raylane.training.TrainContext` inside"
        " the same Ray Train run (docs/models.md). raylane's epoch loop when omitted.",
    )


class ParamSpace(StrictModel):
    """One dimension of a search space."""

    type: Literal["uniform", "loguniform", "choice", "randint", "grid"] = Field(description="Distribution.")
    low: float | None = Field(None, description="Lower bound (`uniform`, `loguniform`, `randint`).")
    high: float | None = Field(None, description="Upper bound (exclusive for `randint`).")
    values: list[Any] | None = Field(None, description="Candidates (`choice`, `grid`).")

    @model_validator(mode="after")
    def _check(self) -> ParamSpace:
        if self.type in ("choice", "grid"):
            if not self.values:
                raise ValueError(f"`{self.type}` needs a non-empty `values` list")
        else:
            if self.low is None or self.high is None:
                raise ValueError(f"`{self.type}` needs both `low` and `high`")
            if self.low >= self.high:
                raise ValueError(f"`low` ({self.low}) must be below `high` ({self.high})")
            if self.type == "loguniform" and self.low <= 0:
                raise ValueError(f"`loguniform` needs `low` > 0, got {self.low}")
        return self

    def outside(self, value: Any) -> str | None:
        """Why ``value`` is not a point of this dimension (None when it is one)."""
        if self.type in ("choice", "grid"):
            return None if value in (self.values or []) else f"is not one of `values` {self.values}"
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "is not a number"
        low, high = self.low or 0.0, self.high or 0.0
        if self.type == "randint":
            ok = float(value).is_integer() and low <= value < high
            return None if ok else f"is not an integer in [{int(low)}, {int(high)})"
        return None if low <= value <= high else f"is outside [{low}, {high}]"


class SchedulerConfig(StrictModel):
    """Trial scheduler: which trials get more epochs."""

    type: Literal["asha", "fifo", "pbt"] = Field(
        "asha",
        description="`asha` stops weak trials early; `fifo` never; `pbt` (population-based training) copies"
        " strong trials' checkpoints into weak ones and mutates the copies' params (it may search only"
        " `train.learning_rate`, `train.weight_decay`, `train.batch_size` and `model.dropout`).",
    )
    max_t: int = Field(10, ge=1, description="Most epochs a trial may run.")
    grace_period: int = Field(2, ge=1, description="Epochs before a trial may be stopped (`asha`).")
    reduction_factor: float = Field(2.0, gt=1.0, description="ASHA's halving rate.")
    perturbation_interval: int = Field(2, ge=1, description="`pbt`: epochs between a trial's exploit/explore steps.")
    quantile_fraction: float = Field(
        0.25, gt=0.0, le=0.5, description="`pbt`: the bottom fraction of trials copies the top fraction."
    )
    resample_probability: float = Field(
        0.25, ge=0.0, le=1.0, description="`pbt`: chance a copied param is drawn anew from its space, not perturbed."
    )

    @model_validator(mode="after")
    def _check(self) -> SchedulerConfig:
        if self.grace_period > self.max_t:
            raise ValueError(f"`grace_period` ({self.grace_period}) must not exceed `max_t` ({self.max_t})")
        if self.type == "pbt" and self.perturbation_interval >= self.max_t:
            raise ValueError(
                f"`perturbation_interval` ({self.perturbation_interval}) must be below `max_t` ({self.max_t}):"
                " PBT would never exploit; lower it or raise max_t"
            )
        return self


class SearchConfig(StrictModel):
    """How the next trial's params are chosen."""

    type: Literal["random", "grid", "optuna", "hyperopt"] = Field(
        "random",
        description="`random` samples the space (its `grid` dims enumerated); `grid` runs every combination of"
        " `choice`/`grid` dims; `optuna` (Optuna's TPE) and `hyperopt` (HyperOpt's TPE) learn from the"
        " finished trials.",
    )
    initial_trials: int | None = Field(
        None,
        ge=1,
        description="Model-based searchers: random trials before the model proposes; when omitted a quarter of"
        " `num_samples` (at least 2, at most 10).",
    )
    seed: int | None = Field(None, description="The searcher's seed; `train.seed` when omitted.")


PBT_MUTABLE = ("train.learning_rate", "train.weight_decay", "train.batch_size", "model.dropout")
"""What PBT may change in a running trial: none of them changes the shapes of the weights it copies."""


class TuneConfig(StrictModel):
    """Ray Tune sweep settings; each trial is a Ray Train run."""

    num_samples: int = Field(8, ge=1, description="Trials (per grid point when `grid` is used).")
    max_concurrent_trials: int | None = Field(
        None, ge=1, description="Trials at once; sized to the cluster's CPUs when omitted."
    )
    search: SearchConfig = Field(default_factory=SearchConfig, description="Search algorithm.")
    scheduler: SchedulerConfig = Field(
        default_factory=SchedulerConfig, description="Which trials train on: ASHA, PBT or FIFO."
    )
    space: dict[str, ParamSpace] = Field(
        default_factory=dict,
        description="Search space: `model.<field>` or `train.<field>` → a distribution. Every trial trains"
        " `scheduler.max_t` epochs at most (not `train.epochs`).",
    )
    warm_start: Literal["champion"] | None = Field(
        None,
        description="`champion`: the first trial runs the current champion's params (from its MLflow run) on"
        " today's data; nothing when there is no champion yet.",
    )
    points_to_evaluate: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Trials to run first, each a `{param: value}` for every key of `space`; after the"
        " `warm_start` point.",
    )

    @model_validator(mode="after")
    def _check(self) -> TuneConfig:
        search, sched = self.search.type, self.scheduler.type
        grid = [k for k, d in self.space.items() if d.type == "grid"]
        if search == "grid":
            open_dims = [k for k, d in self.space.items() if d.type not in ("grid", "choice")]
            if open_dims:
                raise ValueError(
                    f"search.type `grid` needs finite candidates, but `space.{open_dims[0]}` is"
                    f" {self.space[open_dims[0]].type}: give it `type: choice` with `values`, or use"
                    " `search.type: random`"
                )
        if search in ("optuna", "hyperopt") and grid:
            raise ValueError(
                f"search.type `{search}` proposes every point itself, so `space.{grid[0]}` cannot be `grid`:"
                " make it `type: choice`"
            )
        if sched == "pbt":
            self._check_pbt(search, grid)
        for i, point in enumerate(self.points_to_evaluate):
            unknown, missing = sorted(set(point) - set(self.space)), sorted(set(self.space) - set(point))
            if unknown or missing:
                problem = f"{unknown[0]!r} is not in `space`" if unknown else f"misses {missing[0]!r}"
                raise ValueError(
                    f"points_to_evaluate.{i}: {problem}; a point gives a value to each key of `space`:"
                    f" {sorted(self.space)}"
                )
        return self

    def _check_pbt(self, search: str, grid: list[str]) -> None:
        if search != "random":
            raise ValueError(
                f"scheduler.type `pbt` explores by mutating running trials and cannot take search.type `{search}`:"
                " use `search.type: random`"
            )
        fixed = [k for k in self.space if k not in PBT_MUTABLE]
        if fixed:
            raise ValueError(
                f"scheduler.type `pbt` changes params while a trial trains, and `space.{fixed[0]}` cannot change"
                f" mid-run (PBT may mutate: {', '.join(PBT_MUTABLE)}): fix it outside `space`, or use"
                " `scheduler.type: asha`"
            )
        if grid:
            raise ValueError(
                f"scheduler.type `pbt` resamples params, so `space.{grid[0]}` cannot be `grid`: use `choice`"
            )
        if self.num_samples < 2:
            raise ValueError("scheduler.type `pbt` needs a population: set `num_samples` to 2 or more")


SEARCHABLE: dict[str, tuple[str, ...]] = {
    "model": BUILTIN_PARAMS,
    "train": ("learning_rate", "weight_decay", "optimizer", "batch_size", "seed"),
}
"""Parameters a sweep may vary. The others are fixed per sweep: the data and its preprocessing
(``model.max_categories``) are prepared once for all trials, the trial's resources
(``train.num_workers`` …) size the sweep's concurrency, and ``tune.scheduler.max_t`` bounds epochs."""


# --------------------------------------------------------------------------- registry / serve / monitor


class PromotionConfig(StrictModel):
    """The gate a challenger must pass to become champion."""

    metric: str | None = Field(None, description="Holdout metric; the task's default when omitted.")
    min_improvement: float = Field(0.0, ge=0.0, description="How much better than the champion the challenger must be.")
    floor: float | None = Field(None, description="The first model is promoted only if its metric clears this.")


class RegistryConfig(StrictModel):
    """MLflow model registry."""

    model_name: str | None = Field(None, description="Registered model name; the project name when omitted.")
    promotion: PromotionConfig = Field(default_factory=PromotionConfig, description="Promotion gate.")
