"""What a sweep searches and how many trials it runs at once.

`search_space` turns ``tune.space`` (validated with the config: unknown parameters, distributions,
empty choices and bad bounds fail before anything starts) into Ray Tune distributions;
`trial_config` applies one trial's sampled parameters to the project config; `planned_trials`
counts the trials; `concurrency` sizes the trials running at once to the cluster.
"""

from __future__ import annotations

import math
from typing import Any

from raylane.config import ProjectConfig

__all__ = ["concurrency", "planned_trials", "search_space", "trial_config"]


def search_space(cfg: ProjectConfig) -> dict[str, Any]:
    """``tune.space`` as Ray Tune distributions (keys stay dotted: ``train.learning_rate``)."""
    from ray import tune

    out: dict[str, Any] = {}
    for key, dim in cfg.tune.space.items():
        low, high = dim.low or 0.0, dim.high or 0.0  # set for these types (checked by the config)
        if dim.type == "uniform":
            out[key] = tune.uniform(low, high)
        elif dim.type == "loguniform":
            out[key] = tune.loguniform(low, high)
        elif dim.type == "randint":
            out[key] = tune.randint(int(low), int(high))
        elif dim.type == "choice":
            out[key] = tune.choice(list(dim.values or []))
        else:
            out[key] = tune.grid_search(list(dim.values or []))
    return out


def trial_config(cfg: ProjectConfig, params: dict[str, Any]) -> ProjectConfig:
    """The project config of one trial: the sampled parameters applied, ``scheduler.max_t`` epochs."""
    doc = cfg.model_dump(mode="json")
    for key, value in params.items():
        *parents, name = key.split(".")  # train.learning_rate, model.params.hidden
        node = doc
        for part in parents:
            node = node[part]
        node[name] = value
    doc["train"]["epochs"] = cfg.tune.scheduler.max_t
    return ProjectConfig.model_validate(doc).with_base_dir(cfg.base_dir)


def planned_trials(cfg: ProjectConfig) -> int:
    """How many trials the sweep runs: ``num_samples`` for every point of the grid dimensions."""
    return cfg.tune.num_samples * math.prod(len(d.values or []) for d in cfg.tune.space.values() if d.type == "grid")


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
