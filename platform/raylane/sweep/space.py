"""What a sweep searches and how many trials it runs at once.

`search_space` turns ``tune.space`` (validated with the config: unknown parameters, distributions,
empty choices and bad bounds fail before anything starts) into Ray Tune distributions;
`trial_config` applies one trial's sampled parameters to the project config; `planned_trials`
counts the trials; `concurrency` sizes the trials running at once to the cluster.

A `choice` whose candidates are not all scalars (``model.hidden_layers: [[32], [64, 32]]``) is
searched over the candidates' JSON text, which every search algorithm can hold (Optuna and
HyperOpt cannot hold lists); `decode_params` turns a trial's params back into values.
"""

from __future__ import annotations

import json
import math
from typing import Any

from raylane.config import ProjectConfig

__all__ = ["concurrency", "decode_params", "encode_point", "planned_trials", "search_space", "trial_config"]


def search_space(cfg: ProjectConfig) -> dict[str, Any]:
    """``tune.space`` as Ray Tune distributions (keys stay dotted: ``train.learning_rate``)."""
    from ray import tune

    out: dict[str, Any] = {}
    exhaustive = cfg.tune.search.type == "grid"  # every choice is a grid dimension
    for key, dim in cfg.tune.space.items():
        low, high = dim.low or 0.0, dim.high or 0.0  # set for these types (checked by the config)
        if dim.type == "uniform":
            out[key] = tune.uniform(low, high)
        elif dim.type == "loguniform":
            out[key] = tune.loguniform(low, high)
        elif dim.type == "randint":
            out[key] = tune.randint(int(low), int(high))
        else:
            values = [_encode(key, v, cfg) for v in dim.values or []]
            grid = dim.type == "grid" or exhaustive
            out[key] = tune.grid_search(values) if grid else tune.choice(values)
    return out


def _as_text(cfg: ProjectConfig, key: str) -> bool:
    """Whether the choice ``key`` is searched as JSON text (some candidate is not a scalar)."""
    dim = cfg.tune.space[key]
    scalar = (str, int, float, bool, type(None))
    return dim.type in ("choice", "grid") and not all(isinstance(v, scalar) for v in dim.values or [])


def _encode(key: str, value: Any, cfg: ProjectConfig) -> Any:
    return json.dumps(value) if _as_text(cfg, key) else value


def encode_point(cfg: ProjectConfig, point: dict[str, Any]) -> dict[str, Any]:
    """A ``{param: value}`` point as the searcher holds it."""
    return {k: _encode(k, v, cfg) for k, v in point.items()}


def decode_params(cfg: ProjectConfig, params: dict[str, Any]) -> dict[str, Any]:
    """A trial's searched params as values (the inverse of `encode_point`), ``tune.space``'s keys only."""
    out = {}
    for k, v in params.items():
        if k in cfg.tune.space:
            texts = {json.dumps(c): c for c in cfg.tune.space[k].values or []} if _as_text(cfg, k) else {}
            out[k] = texts.get(v, v) if isinstance(v, str) else v
    return out


def trial_config(cfg: ProjectConfig, params: dict[str, Any]) -> ProjectConfig:
    """The project config of one trial: the sampled parameters applied, ``scheduler.max_t`` epochs."""
    doc = cfg.model_dump(mode="json")
    for key, value in decode_params(cfg, params).items():
        *parents, name = key.split(".")  # train.learning_rate, model.params.hidden
        node = doc
        for part in parents:
            node = node[part]
        node[name] = value
    doc["train"]["epochs"] = cfg.tune.scheduler.max_t
    return ProjectConfig.model_validate(doc).with_base_dir(cfg.base_dir)


def planned_trials(cfg: ProjectConfig) -> int:
    """How many trials the sweep runs: ``num_samples`` for every point of the grid dimensions."""
    exhaustive = cfg.tune.search.type == "grid"
    dims = cfg.tune.space.values()
    return cfg.tune.num_samples * math.prod(len(d.values or []) for d in dims if d.type == "grid" or exhaustive)


def concurrency(cfg: ProjectConfig) -> int:
    """Trials at once: ``tune.max_concurrent_trials``, else as many as the cluster's resources hold."""
    import ray

    if cfg.tune.max_concurrent_trials is not None:
        return cfg.tune.max_concurrent_trials
    total = ray.cluster_resources()
    per_worker = dict(cfg.train.resources_per_worker)
    if cfg.train.use_gpu:
        per_worker.setdefault("GPU", 1.0)
    fits = [
        int(total.get(res, 0.0) // (amount * cfg.train.num_workers)) for res, amount in per_worker.items() if amount > 0
    ]
    return max(1, min(fits, default=1))
