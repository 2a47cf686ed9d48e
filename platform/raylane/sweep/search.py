"""How a sweep picks its trials: the search algorithm, the scheduler and the points tried first.

`searcher` builds Ray Tune's own search algorithms (``tune.search.type``): a seeded
`BasicVariantGenerator` for ``random`` and ``grid``, and `OptunaSearch` (TPE) and `HyperOptSearch`
behind a `ConcurrencyLimiter`. Tune saves a searcher's state with the experiment, so ``raylane
sweep --resume`` restores the searcher's history with the trials. `scheduler` builds ASHA, PBT or
FIFO, all on ``epochs_completed`` (true across resumes and PBT's copies). `first_points` is what
runs first: the champion's params (``tune.warm_start: champion``), then ``tune.points_to_evaluate``.
"""

from __future__ import annotations

import json
import math
from typing import Any

from raylane.config import ProjectConfig
from raylane.errors import UserError
from raylane.sweep.space import encode_point, search_space

__all__ = [
    "WithinSpace",
    "champion_point",
    "first_points",
    "initial_trials",
    "scheduler",
    "search_settings",
    "searcher",
]


def initial_trials(cfg: ProjectConfig) -> int:
    """Random trials a model-based searcher runs before its model proposes."""
    given = cfg.tune.search.initial_trials
    return given if given is not None else max(2, min(10, cfg.tune.num_samples // 4))


def search_settings(cfg: ProjectConfig) -> dict[str, Any]:
    """What the sweep's parent run records about its search (the algorithm and its settings)."""
    search, sched = cfg.tune.search, cfg.tune.scheduler
    out: dict[str, Any] = {
        "search": search.type,
        "seed": search.seed if search.seed is not None else cfg.train.seed,
        "scheduler": sched.type,
        "max_t": sched.max_t,
        "warm_start": cfg.tune.warm_start,
        "points_to_evaluate": len(cfg.tune.points_to_evaluate),
    }
    if search.type in ("optuna", "hyperopt"):
        out["initial_trials"] = initial_trials(cfg)
    if sched.type == "asha":
        out |= {"grace_period": sched.grace_period, "reduction_factor": sched.reduction_factor}
    elif sched.type == "pbt":
        out |= {
            "perturbation_interval": sched.perturbation_interval,
            "quantile_fraction": sched.quantile_fraction,
            "resample_probability": sched.resample_probability,
        }
    return out


def searcher(cfg: ProjectConfig, slots: int, points: list[dict[str, Any]]) -> Any:
    """Ray Tune's search algorithm for ``tune.search``, seeded, at most ``slots`` trials at once."""
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.basic_variant import BasicVariantGenerator

    kind = cfg.tune.search.type
    seed = cfg.tune.search.seed if cfg.tune.search.seed is not None else cfg.train.seed
    if kind in ("random", "grid"):
        return BasicVariantGenerator(max_concurrent=slots, random_state=seed, points_to_evaluate=points or None)
    initial = initial_trials(cfg)
    if kind == "optuna":
        import optuna
        from ray.tune.search.optuna import OptunaSearch

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        algo: Any = OptunaSearch(
            sampler=optuna.samplers.TPESampler(n_startup_trials=initial, seed=seed), points_to_evaluate=points
        )
    else:
        from ray.tune.search.hyperopt import HyperOptSearch

        algo = HyperOptSearch(n_initial_points=initial, random_state_seed=seed, points_to_evaluate=points)
    return ConcurrencyLimiter(algo, max_concurrent=slots)


def scheduler(cfg: ProjectConfig) -> Any:
    """ASHA, PBT or FIFO, with ``epochs_completed`` as the clock."""
    from ray import tune

    sched = cfg.tune.scheduler
    if sched.type == "asha":
        return tune.schedulers.ASHAScheduler(
            time_attr="epochs_completed",
            max_t=sched.max_t,
            grace_period=sched.grace_period,
            reduction_factor=sched.reduction_factor,
        )
    if sched.type == "pbt":
        return tune.schedulers.PopulationBasedTraining(
            time_attr="epochs_completed",
            perturbation_interval=sched.perturbation_interval,
            hyperparam_mutations=search_space(cfg),
            quantile_fraction=sched.quantile_fraction,
            resample_probability=sched.resample_probability,
            custom_explore_fn=WithinSpace(cfg),
            synch=False,
        )
    return tune.schedulers.FIFOScheduler()


class WithinSpace:
    """PBT's explore step, then each numeric param clipped into its dimension (PBT multiplies by
    0.8 or 1.2 without bounds: a dropout could leave [0, 1))."""

    def __init__(self, cfg: ProjectConfig) -> None:
        self.bounds = {
            key: (dim.low or 0.0, (dim.high or 0.0) - (1 if dim.type == "randint" else 0), dim.type == "randint")
            for key, dim in cfg.tune.space.items()
            if dim.type in ("uniform", "loguniform", "randint")
        }

    def __call__(self, config: dict[str, Any]) -> dict[str, Any]:
        for key, (low, high, integer) in self.bounds.items():
            if key in config:
                value = min(max(config[key], low), high)
                config[key] = round(value) if integer else float(value)
        return config


def first_points(cfg: ProjectConfig, *, step: Any = lambda _: None) -> list[dict[str, Any]]:
    """The points the sweep tries first, encoded for the searcher: the champion's (``warm_start``),
    then ``points_to_evaluate``."""
    points = [dict(p) for p in cfg.tune.points_to_evaluate]
    if cfg.tune.warm_start == "champion":
        found = champion_point(cfg)
        if found is None:
            step("warm start: no champion yet, the search starts cold")
        else:
            version, point = found
            step(f"warm start: the first trial runs champion v{version}'s params")
            points.insert(0, point)
    return [encode_point(cfg, p) for p in points]


def champion_point(cfg: ProjectConfig) -> tuple[str, dict[str, Any]] | None:
    """The champion's version and its value of every ``tune.space`` param (from the config its run
    recorded), or None without a champion. A value the space cannot hold is refused with the fix."""
    import mlflow

    from raylane.registry import Registry

    champion = Registry(cfg).champion()
    if champion is None:
        return None
    recorded = mlflow.artifacts.load_dict(f"runs:/{champion.run_id}/config/project.json")
    point: dict[str, Any] = {}
    for key, dim in cfg.tune.space.items():
        node: Any = recorded
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            raise UserError(
                f"tune.warm_start: champion v{champion.version}'s run records no `{key}`",
                fix="drop tune.warm_start, or give the point in tune.points_to_evaluate",
            )
        problem = dim.outside(node)
        if problem:
            raise UserError(
                f"tune.warm_start: champion v{champion.version}'s `{key}` = {json.dumps(node)} {problem}",
                fix=f"widen tune.space.{key} to include it, or drop tune.warm_start",
            )
        point[key] = int(node) if dim.type == "randint" and not math.isnan(node) else node
    return str(champion.version), point
