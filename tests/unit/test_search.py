"""tune.search / tune.scheduler / warm starts: each bad combination is refused with its fix, and the
good ones build Ray Tune's own search algorithms and schedulers (real objects, nothing started)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from raylane.cli import main
from raylane.config import load_config
from raylane.sweep.results import TrialSummary, rung_epochs, rungs
from raylane.sweep.search import initial_trials, scheduler, search_settings, searcher
from raylane.sweep.space import decode_params, encode_point, planned_trials, search_space, trial_config
from raylane.testing import example_config_path

PBT_SPACE = json.dumps(
    {
        "train.learning_rate": {"type": "loguniform", "low": 0.0003, "high": 0.03},
        "model.dropout": {"type": "uniform", "low": 0.0, "high": 0.3},
    }
)

POINT = (
    'tune.points_to_evaluate=[{{"train.learning_rate": {lr}, "model.dropout": 0.1, "model.hidden_layers": {layers}}}]'
)


def _cfg(*sets: str) -> Any:
    return load_config(example_config_path(), overrides=list(sets))


@pytest.mark.parametrize(
    ("sets", "says"),
    [
        (["tune.search.type=bohb"], "tune.search.type: Input should be 'random', 'grid', 'optuna' or 'hyperopt'"),
        (["tune.search.type=optuna", 'tune.space.model.dropout={"type": "grid", "values": [0.1, 0.2]}'], "make it"),
        (["tune.search.type=grid"], "`space.train.learning_rate` is loguniform: give it `type: choice`"),
        (["tune.scheduler.type=pbt"], "`space.model.hidden_layers` cannot change mid-run"),
        (["tune.scheduler.type=pbt", "tune.search.type=optuna", f"tune.space={PBT_SPACE}"], "`search.type: random`"),
        (["tune.scheduler.type=pbt", "tune.num_samples=1", f"tune.space={PBT_SPACE}"], "needs a population"),
        (["tune.scheduler.type=pbt", "tune.scheduler.perturbation_interval=8"], "must be below `max_t`"),
        (["tune.search.type=annealing"], "tune.search.type: Input should be"),
        (["tune.warm_start=latest"], "tune.warm_start: Input should be 'champion'"),
        (['tune.points_to_evaluate=[{"train.learning_rate": 0.001}]'], "misses 'model.dropout'"),
        (['tune.points_to_evaluate=[{"train.lr": 0.001}]'], "'train.lr' is not in `space`"),
        (
            [POINT.format(lr=0.5, layers=[32])],
            "tune.points_to_evaluate.0.train.learning_rate: 0.5 is outside [0.0003, 0.01]",
        ),
        (
            [POINT.format(lr=0.001, layers=[7])],
            "[7] is not one of `values`",
        ),
    ],
)
def test_a_bad_search_combination_exits_2_with_the_fix(
    capsys: pytest.CaptureFixture[str], sets: list[str], says: str
) -> None:
    code = main(["config", "validate", str(example_config_path()), *[a for s in sets for a in ("--set", s)]])
    err = capsys.readouterr().err
    assert code == 2, err
    assert says in " ".join(err.split()) and "fix:" in err


def test_random_and_grid_use_tunes_seeded_variant_generator() -> None:
    from ray.tune.search.basic_variant import BasicVariantGenerator

    for kind in ("random", "grid"):
        space = '{"model.dropout": {"type": "choice", "values": [0.1, 0.2]}}'
        algo = searcher(_cfg(f"tune.search.type={kind}", f"tune.space={space}"), 2, [])
        assert isinstance(algo, BasicVariantGenerator)


@pytest.mark.parametrize("kind", ["optuna", "hyperopt"])
def test_every_model_based_search_builds_a_seeded_tune_searcher_that_proposes_points_of_the_space(kind: str) -> None:
    cfg = _cfg(f"tune.search.type={kind}", "tune.num_samples=6")
    first = {"train.learning_rate": 0.002, "model.dropout": 0.05, "model.hidden_layers": [128, 64]}
    points = [encode_point(cfg, first)]

    def proposals() -> list[dict[str, Any]]:
        algo = searcher(cfg, 2, [dict(p) for p in points])
        algo.set_search_properties("val_roc_auc", "max", search_space(cfg))
        return [decode_params(cfg, algo.suggest(f"t{i}")) for i in range(2)]

    got = proposals()
    assert got[0] == first  # the warm point runs first
    for point in got:
        for key, value in point.items():
            assert cfg.tune.space[key].outside(value) is None, (key, value)
        trial_config(cfg, point)  # every proposal is a valid trial config
    assert proposals() == got  # seeded


def test_non_scalar_choices_are_searched_as_json_text_and_decoded() -> None:
    cfg = _cfg("tune.search.type=optuna")
    space = search_space(cfg)
    assert set(space["model.hidden_layers"].categories) == {"[32]", "[64, 32]", "[128, 64]"}
    assert decode_params(cfg, {"model.hidden_layers": "[64, 32]", "other": 1}) == {"model.hidden_layers": [64, 32]}
    assert trial_config(cfg, {"model.hidden_layers": "[128, 64]"}).model.hidden_layers == [128, 64]


def test_schedulers_are_tunes_own_on_epochs_completed() -> None:
    from ray.tune import schedulers

    assert isinstance(scheduler(_cfg()), schedulers.ASHAScheduler)
    assert isinstance(scheduler(_cfg("tune.scheduler.type=fifo")), schedulers.FIFOScheduler)
    pbt = scheduler(_cfg("tune.scheduler.type=pbt", f"tune.space={PBT_SPACE}"))
    assert isinstance(pbt, schedulers.PopulationBasedTraining)
    assert pbt._time_attr == "epochs_completed" and set(pbt._hyperparam_mutations) == set(json.loads(PBT_SPACE))


def test_pbt_mutations_stay_inside_the_space() -> None:
    space = {**json.loads(PBT_SPACE), "train.batch_size": {"type": "randint", "low": 32, "high": 257}}
    cfg = _cfg("tune.scheduler.type=pbt", f"tune.space={json.dumps(space)}")
    explore = scheduler(cfg)._custom_explore_fn
    config = {"train.learning_rate": 0.05, "model.dropout": 1.3, "train.batch_size": 300.4}
    assert explore(config) == {"train.learning_rate": 0.03, "model.dropout": 0.3, "train.batch_size": 256}
    assert (
        explore({"train.learning_rate": 0.001, "model.dropout": 0.2, "train.batch_size": 64.6})["train.batch_size"]
        == 65
    )


def test_grid_search_runs_every_combination_of_the_choices() -> None:
    cfg = _cfg(
        "tune.search.type=grid",
        "tune.num_samples=2",
        'tune.space={"train.learning_rate": {"type": "choice", "values": [0.001, 0.003]},'
        ' "model.hidden_layers": {"type": "choice", "values": [[32], [64, 32], [128, 64]]}}',
    )
    assert planned_trials(cfg) == 2 * 2 * 3
    assert all("grid_search" in v for v in search_space(cfg).values())


def test_search_settings_and_initial_trials() -> None:
    assert initial_trials(_cfg("tune.search.type=optuna", "tune.num_samples=40")) == 10
    assert initial_trials(_cfg("tune.search.type=optuna", "tune.num_samples=6")) == 2
    assert initial_trials(_cfg("tune.search.type=hyperopt", "tune.search.initial_trials=5")) == 5
    settings = search_settings(_cfg("tune.search.type=optuna", "tune.search.seed=7"))
    assert settings["search"] == "optuna" and settings["seed"] == 7 and settings["scheduler"] == "asha"
    assert settings["initial_trials"] == 2 and settings["grace_period"] == 2


def test_rungs_name_the_best_trial_at_each_milestone() -> None:
    cfg = _cfg("tune.scheduler.max_t=8", "tune.scheduler.grace_period=1", "tune.scheduler.reduction_factor=2")
    assert rung_epochs(cfg) == [1, 2, 4, 8]
    assert rung_epochs(_cfg("tune.scheduler.type=pbt", f"tune.space={PBT_SPACE}")) == [2, 4, 6, 8]

    def trial(tid: str, history: dict[int, float]) -> TrialSummary:
        return TrialSummary(tid, {}, "completed", max(history), max(history.values()), 1.0, history=history)

    trials = [trial("a", {1: 0.6, 2: 0.7}), trial("b", {1: 0.65, 2: 0.66, 3: 0.7, 4: 0.71}), trial("c", {1: 0.5})]
    got = [(r.epoch, r.reached, r.best_trial, r.best) for r in rungs(cfg, trials, "max")]
    assert got == [(1, 3, "b", 0.65), (2, 2, "a", 0.7), (4, 1, "b", 0.71), (8, 0, None, None)]


def test_trained_epochs_count_the_epochs_tune_never_saw_except_under_pbt() -> None:
    """A trial whose driver died saw epochs 1–3; resumed, its Ray Train run went on from a checkpoint
    of epoch 4 it had reached meanwhile (Tune never saw 4), then restarted once from epoch 5: 1, 2,
    3, 5, 6, 6 and its final word. It trained 7 epochs. A PBT copy jumps to its donor's epoch untrained."""
    import pandas as pd

    from raylane.sweep.results import _history
    from raylane.sweep.trial import BEST_SCORE

    class Result:  # what `_history` reads of a ray.tune.Result
        metrics_dataframe = pd.DataFrame(
            {
                "epochs_completed": [1, 2, 3, 5, 6, 6, 6],
                "val_roc_auc": [0.6, 0.7, 0.72, 0.75, 0.74, 0.76, 0.76],
                BEST_SCORE: [None] * 6 + [0.76],
            }
        )

    history, trained = _history(Result(), "val_roc_auc", "max", copies=False)
    assert history == {1: 0.6, 2: 0.7, 3: 0.72, 5: 0.75, 6: 0.76} and trained == 7
    assert _history(Result(), "val_roc_auc", "max", copies=True)[1] == 6
