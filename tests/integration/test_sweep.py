"""Sweeps on Ray Tune (each trial a Ray Train run), tracked in MLflow, gated into the registry.

One 6-trial Optuna (TPE) sweep serves most tests (trials are costly on a 2-core machine): its first
driver is killed midway and the CLI resumes it, searcher history included. A 4-trial PBT sweep,
warm-started from the champion the first sweep registered, checks population-based training.
Those two sweeps take about 5 minutes here: their tests are `slow` (`make test-slow`, and CI);
`make test` keeps the config checks and the placement-group test, and test_models.py's HyperOpt
sweep over a model's own params."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from raylane.config import ProjectConfig
from raylane.features import FeatureRepo
from raylane.ingest import ingest
from raylane.registry import Registry
from raylane.sweep import latest_sweep, sweep
from raylane.sweep.trial import trial_id_in
from raylane.testing import example_config_path, example_project

# Small and quick: 2 trials at a time on the 2-CPU test cluster; ASHA may stop trials after 1, 2 or
# 4 epochs of MAX_T (long enough that a trial past 2 epochs is surely still training when killed).
MAX_T = 6
SMALL = [
    "train.batch_size=128",
    "train.early_stopping=null",
    f"tune.scheduler.max_t={MAX_T}",
    "tune.scheduler.grace_period=1",
    "tune.max_concurrent_trials=2",
    "registry.promotion.floor=null",
]


def _children(cfg: ProjectConfig, parent_run_id: str, *, lost: bool = False) -> list[Any]:
    """The sweep's trial runs (``lost``: only the runs of trials lost with a dead driver)."""
    from mlflow import MlflowClient

    client = MlflowClient(cfg.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name(cfg.mlflow_experiment)
    found = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'", max_results=100
    )
    return [r for r in found if (r.data.tags.get("raylane.outcome") == "lost") == lost]


def _best_kept(cfg: ProjectConfig, trial_id: str) -> float:
    """The best score among the checkpoints Ray Train kept for a trial (read from its storage)."""
    import ray.train

    result = ray.train.Result.from_path(cfg.storage_root / "sweeps" / "six" / "trials" / f"trial-{trial_id}")
    return max(m["val_roc_auc"] for _, m in result.best_checkpoints)


def _tune_saw(cfg: ProjectConfig, sweep: str, epochs: int) -> set[str]:
    """Trials whose Ray Train run has registered exactly `epochs` reports (its checkpoint manager's
    snapshot, written to storage as each report is registered).

    Ray Train registers a trial's next report only after Tune took the previous one, so a trial
    with 3 registered reports has passed ASHA's rungs at 1 and 2 epochs and cannot be stopped
    before 4: it is alive, with checkpoints. (Its MLflow run is no judge: the workers run ahead.)"""
    import json

    seen = set()
    for path in (cfg.storage_root / "sweeps" / sweep / "trials").glob("trial-*/checkpoint_manager_snapshot.json"):
        try:
            state = json.loads(path.read_text())
        except (json.JSONDecodeError, OSError):  # being written
            continue
        if state.get("current_report_index") == epochs:
            seen.add(path.parent.name.removeprefix("trial-"))
    return seen


def _tune_finished(cfg: ProjectConfig, sweep: str) -> set[str]:
    """Trials Tune's saved experiment state records as ended (what a resume skips). Tune saves it
    every 10 s or so: a trial that ended since then is resumed, and that is Tune's contract."""
    import json

    ended = set()
    for path in (cfg.storage_root / "sweeps" / sweep / "tune").glob("experiment_state-*.json"):
        try:
            state = json.loads(path.read_text())
        except (json.JSONDecodeError, OSError):  # being written
            continue
        for data, _ in state.get("trial_data", []):
            trial = json.loads(data) if isinstance(data, str) else data
            if trial.get("status") == "TERMINATED":
                ended.add(trial["trial_id"])
    return ended


@pytest.fixture(scope="module")
def project(ray_runtime: object, tmp_path_factory: pytest.TempPathFactory) -> ProjectConfig:
    cfg = example_project(tmp_path_factory.mktemp("sweep"), size="tiny", overrides=SMALL)
    ingest(cfg)
    FeatureRepo(cfg).apply()
    return cfg


@pytest.fixture(scope="module")
def swept(project: ProjectConfig, ray_runtime: Any, tmp_path_factory: pytest.TempPathFactory) -> Swept:
    """A 6-trial Optuna sweep whose driver is SIGKILLed midway (once Tune's saved state records an ended
    trial, while Tune has seen another train 3 of its epochs), then resumed through the CLI."""
    import contextlib
    import io
    import json

    from mlflow import MlflowClient

    from raylane.cli import main

    cfg = project
    sets = [*SMALL, "tune.num_samples=6", "tune.search.type=optuna"]
    env = {"CHURN_DATA": str(cfg.data.sources[0].path.parent), "RAYLANE_STORAGE": str(cfg.storage_root)}
    # The first driver joins the test's Ray cluster, as a second process, so that it can be killed.
    cluster = [
        f"backends.ray.address={ray_runtime.address}",
        f"backends.ray.auth_token_file={os.environ['RAY_AUTH_TOKEN_PATH']}",
    ]
    cmd = [sys.executable, "-m", "raylane", "sweep", str(example_config_path()), "--name", "six"]
    cmd += [a for s in [*sets, *cluster] for a in ("--set", s)]
    logfile = tmp_path_factory.mktemp("driver") / "driver.log"
    state_file = cfg.storage_root / "sweeps" / "six" / "sweep.json"
    client = MlflowClient(cfg.mlflow_tracking_uri)
    finished: dict[str, int] = {}
    interrupted: set[str] = set()
    with logfile.open("w") as log:
        driver = subprocess.Popen(
            cmd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            deadline = time.monotonic() + 900
            while not finished and time.monotonic() < deadline:
                assert driver.poll() is None, logfile.read_text()[-3000:]
                midway = _tune_saw(cfg, "six", epochs=3)
                if midway and state_file.exists():
                    children = _children(cfg, json.loads(state_file.read_text())["parent_run_id"])
                    ended = _tune_finished(cfg, "six")
                    done = {
                        c.info.run_id: c.info.end_time
                        for c in children
                        if c.data.tags["raylane.trial_id"] in ended and c.info.status == "FINISHED"
                    }
                    running = {c.data.tags["raylane.trial_id"] for c in children if c.info.status == "RUNNING"}
                    if done and midway & running:
                        finished, interrupted = done, midway & running
                time.sleep(0.2)
            assert finished, "the sweep never reached a finished trial and a half-done one"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(driver.pid, signal.SIGKILL)  # the driver dies without any clean-up
            driver.wait()
    killed_ms = int(time.time() * 1000)
    time.sleep(3)  # Ray reaps the dead driver's trial actors
    killed_at = json.loads(state_file.read_text())
    # What a driver that dies just after starting a trial leaves when Tune had not saved it yet: a
    # RUNNING trial run that the resumed Tune does not know (it may or may not have happened above).
    experiment = client.get_experiment_by_name(cfg.mlflow_experiment)
    lost_tags = {"raylane.sweep": "six", "raylane.trial_id": "0000dead", "raylane.kind": "trial"}
    lost = client.create_run(
        experiment.experiment_id,
        run_name="six/0000dead",
        tags={**lost_tags, "mlflow.parentRunId": killed_at["parent_run_id"]},
    )

    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(printed):
        for k, v in env.items():
            mp.setenv(k, v)
        code = main(["sweep", str(example_config_path()), *[a for s in sets for a in ("--set", s)], "--resume"])
    assert code == 0, printed.getvalue()
    parent = client.get_run(killed_at["parent_run_id"])
    return Swept(cfg, parent, printed.getvalue(), finished, interrupted, killed_at, killed_ms, lost.info.run_id)


@dataclass
class Swept:
    cfg: ProjectConfig
    parent: Any
    printed: str
    finished_before_kill: dict[str, int]
    interrupted: set[str]  # trial ids 3 registered epochs into training when the driver died
    state_at_kill: dict[str, Any]
    killed_ms: int  # when the first driver was killed (epoch milliseconds, like MLflow's timestamps)
    lost_run_id: str  # a trial run the resumed Tune does not know


@pytest.mark.slow
def test_a_sweep_of_six_optuna_trials_registers_its_best_trial(swept: Swept) -> None:
    from mlflow import MlflowClient

    cfg, parent, printed = swept.cfg, swept.parent, swept.printed
    children = _children(cfg, parent.info.run_id)
    assert len(children) == 6
    client = MlflowClient(cfg.mlflow_tracking_uri)
    # The truth is what Ray Train kept: each trial's checkpoints and their scores. (MLflow may show
    # a trial stopped by ASHA an epoch or two past its stop: its workers ran ahead while Tune
    # decided; those epochs were never checkpointed, so they cannot be chosen.)
    best_of = {c.info.run_id: _best_kept(cfg, c.data.tags["raylane.trial_id"]) for c in children}
    best_run = max(best_of, key=lambda r: best_of[r])
    logged = [m.value for m in client.get_metric_history(best_run, "val_roc_auc")]
    assert any(v == pytest.approx(best_of[best_run]) for v in logged)  # an epoch its MLflow run shows
    # the registered challenger is the best trial's model, gated like `raylane train`
    challenger = Registry(cfg).version("@challenger")
    assert challenger.run_id == best_run
    assert challenger.tags["gate.decision"] in ("passed", "failed")
    assert parent.data.tags["raylane.best_run_id"] == best_run
    assert parent.data.metrics["best_val_roc_auc"] == pytest.approx(best_of[best_run])
    # the holdout is the validation split every trial reported on: same checkpoint, same metric
    best_child = client.get_run(best_run)
    assert best_child.data.metrics["holdout_roc_auc"] == pytest.approx(best_of[best_run], abs=1e-6)
    # printed: the summary table, the best config and metric
    assert "sweep six (optuna search, asha): 6 trials" in printed
    assert "best trial per rung" in printed
    # the parent run records the search algorithm and its settings, and the epochs ASHA saved
    assert parent.data.params["sweep.search"] == "optuna" and parent.data.params["sweep.initial_trials"] == "2"
    used = sum(int(c.data.tags["raylane.epochs"]) for c in children)
    assert parent.data.metrics["trial_epochs_saved"] == 6 * MAX_T - parent.data.metrics["trial_epochs"]
    assert parent.data.metrics["trial_epochs"] >= used
    assert f"val_roc_auc {best_of[best_run]:.4g}" in printed
    assert "train.learning_rate=" in printed and "model.hidden_layers=" in printed
    # ASHA's budget: no trial runs past max_t epochs
    epochs = [int(c.data.tags["raylane.epochs"]) for c in children]
    assert all(1 <= e <= MAX_T for e in epochs)


@pytest.mark.slow
def test_every_trial_is_a_finished_child_run_with_params_and_epoch_metrics(swept: Swept) -> None:
    from mlflow import MlflowClient

    cfg, parent = swept.cfg, swept.parent
    client = MlflowClient(cfg.mlflow_tracking_uri)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["raylane.kind"] == "sweep"
    children = _children(cfg, parent.info.run_id)
    assert {c.info.status for c in children} == {"FINISHED"}  # none RUNNING, none failed
    for c in children:
        outcome, epochs = c.data.tags["raylane.outcome"], int(c.data.tags["raylane.epochs"])
        assert outcome == ("completed" if epochs == MAX_T else "stopped_early")
        for key in ("train.learning_rate", "model.dropout", "model.hidden_layers", "train.epochs"):
            assert key in c.data.params, key
        assert c.data.params["train.epochs"] == str(MAX_T)  # tune.scheduler.max_t
        steps = {m.step for m in client.get_metric_history(c.info.run_id, "val_roc_auc")}
        # every epoch Tune saw is in MLflow; a trial stopped by ASHA may have logged one more epoch
        # before it was stopped, never more than max_t
        assert set(range(epochs)) <= steps <= set(range(MAX_T))
    # the proposed parameters differ between trials
    assert len({c.data.params["train.learning_rate"] for c in children}) == 6


@pytest.mark.slow
def test_resume_after_the_driver_was_killed(swept: Swept) -> None:
    """Finished trials were not run again; the interrupted one continued from its checkpoint."""
    from mlflow import MlflowClient

    cfg = swept.cfg
    client = MlflowClient(cfg.mlflow_tracking_uri)
    assert swept.state_at_kill["status"] == "running"
    assert "sweep six (optuna search, asha)" in swept.printed
    children = {c.info.run_id: c for c in _children(cfg, swept.parent.info.run_id)}
    assert len(children) == 6  # no trial was added or run twice
    best_run_id = swept.parent.data.tags["raylane.best_run_id"]
    for run_id, end_time in swept.finished_before_kill.items():
        # what Tune had saved as ended was not run again: not restarted, nothing logged after the kill
        run = children[run_id]
        assert run.info.status == "FINISHED"
        # (the best trial's run is reopened once at the end, for its holdout evaluation and model)
        assert run.info.end_time == end_time or run_id == best_run_id
        history = client.get_metric_history(run_id, "val_roc_auc")
        assert history and max(m.timestamp for m in history) < swept.killed_ms, run_id
        assert {m.value for m in client.get_metric_history(run_id, "resumed_from")} == {-1}  # never restored
    assert swept.interrupted
    for run in children.values():
        if run.data.tags["raylane.trial_id"] in swept.interrupted:
            # it went on from a checkpoint of its 2nd epoch or later (Ray Train may lose the last report)
            resumed_from = {m.value for m in client.get_metric_history(run.info.run_id, "resumed_from")}
            assert max(resumed_from) >= 1, (run.data.tags["raylane.trial_id"], resumed_from)
    assert latest_sweep(cfg, unfinished=True) is None


@pytest.mark.slow
def test_a_trial_lost_with_the_dead_driver_ends_killed_not_running(swept: Swept) -> None:
    """A trial run that Tune's saved state does not know is ended KILLED with outcome `lost` and a
    note; it is not one of the sweep's trials (not in its summary, not registered)."""
    from mlflow import MlflowClient

    client = MlflowClient(swept.cfg.mlflow_tracking_uri)
    lost = _children(swept.cfg, swept.parent.info.run_id, lost=True)
    assert swept.lost_run_id in {r.info.run_id for r in lost}
    import json

    summary = Path(client.download_artifacts(swept.parent.info.run_id, "sweep/trials.json"))
    trials = {t["trial_id"] for t in json.loads(summary.read_text())["trials"]}
    assert len(trials) == 6
    for run in lost:
        assert run.info.status == "KILLED" and run.info.end_time is not None
        assert "before Ray Tune saved this trial" in run.data.tags["mlflow.note.content"]
        assert run.data.tags["raylane.trial_id"] not in trials


@pytest.mark.slow
def test_a_resumed_optuna_sweep_keeps_its_searchers_history(swept: Swept) -> None:
    """Tune restored the Optuna study with the trials: the trials finished before the kill are in its
    history with their scores, and it proposed no trial twice (6 trials, 6 study trials)."""
    from ray.tune.search.optuna import OptunaSearch

    cfg = swept.cfg
    algo = OptunaSearch()
    algo.restore_from_dir(str(cfg.storage_root / "sweeps" / "six" / "tune"))  # Tune's saved searcher state
    study = algo._ot_study.trials
    assert len(study) == 6
    scored = {round(t.params["train.learning_rate"], 12): t.value for t in study if t.value is not None}
    children = {c.info.run_id: c for c in _children(cfg, swept.parent.info.run_id)}
    for run_id in swept.finished_before_kill:
        lr = round(float(children[run_id].data.params["train.learning_rate"]), 12)
        assert lr in scored, (lr, scored)  # in the model's history, with its score


PBT_SPACE = {
    "train.learning_rate": {"type": "loguniform", "low": 0.0003, "high": 0.03},
    "model.dropout": {"type": "uniform", "low": 0.0, "high": 0.3},
}


@pytest.fixture(scope="module")
def pbt_swept(swept: Swept) -> tuple[ProjectConfig, Any, Any]:
    """A 4-trial PBT sweep (perturbations every 2 epochs), warm-started from the champion the
    Optuna sweep registered.

    PBT copies a trial into another only while both run (it ranks unfinished trials), and only
    from a trial it saved at a perturbation of its own: two trials of a few 0.4 s epochs can miss
    each other when their Ray Train workers start seconds apart on a busy machine (seen in CI, and
    here: two trials' first epochs 2.5 s apart, and 6 epochs of batches of 16 rows took 2.4 s).
    Batches of 8 rows and 10 epochs keep each trial training for several times that skew."""
    doc = swept.cfg.model_dump(mode="json")
    doc["train"]["batch_size"] = 8
    doc["tune"].update(
        num_samples=4,
        space=PBT_SPACE,
        warm_start="champion",
        scheduler={**doc["tune"]["scheduler"], "type": "pbt", "perturbation_interval": 2, "max_t": 10},
    )
    cfg = ProjectConfig.model_validate(doc).with_base_dir(swept.cfg.base_dir)
    champion = Registry(cfg).champion()
    assert champion is not None  # the Optuna sweep's best (the first version: no floor)
    return cfg, sweep(cfg, name="pbt"), champion


@pytest.mark.slow
def test_pbt_copies_strong_trials_into_weak_ones_and_mutates_their_params(pbt_swept: tuple[Any, ...]) -> None:
    from mlflow import MlflowClient

    cfg, result, _ = pbt_swept
    client = MlflowClient(cfg.mlflow_tracking_uri)
    parent = client.get_run(result.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.params["sweep.scheduler"] == "pbt"
    children = _children(cfg, result.parent_run_id)
    assert len(children) == 4 and {c.info.status for c in children} == {"FINISHED"}
    copies = [c for c in children if "raylane.pbt.started_from" in c.data.tags]
    assert copies, "PBT never copied a trial into another"
    for c in copies:
        # it went on from the donor's checkpoint (a later epoch than 0), with params PBT changed
        resumed = {m.value for m in client.get_metric_history(c.info.run_id, "resumed_from")}
        assert max(resumed) >= 1
        rates = [m.value for m in client.get_metric_history(c.info.run_id, "pbt.train.learning_rate")]
        assert len(rates) >= 2 and len(set(rates)) >= 2, rates
        donor = trial_id_in(Path(c.data.tags["raylane.pbt.started_from"]).parent.name)
        assert donor is not None and donor != c.data.tags["raylane.trial_id"]  # another trial's checkpoint
    assert result.train is not None and result.train.version is not None  # the best trial is registered


@pytest.mark.slow
def test_warm_start_runs_the_champions_params_first(pbt_swept: tuple[Any, ...]) -> None:
    from mlflow import MlflowClient

    cfg, result, champion = pbt_swept
    client = MlflowClient(cfg.mlflow_tracking_uri)
    recorded = client.get_run(champion.run_id).data.params
    first = min(result.trials, key=lambda t: t.trial_id)  # Tune numbers trials in the order it made them
    run = client.get_run(first.run_id)
    for key in PBT_SPACE:
        assert float(run.data.params[key]) == pytest.approx(float(recorded[key])), key


def test_a_sweep_needs_a_search_space(project: ProjectConfig) -> None:
    from raylane.errors import UserError

    empty = ProjectConfig.model_validate({**project.model_dump(mode="json"), "tune": {"space": {}}})
    with pytest.raises(UserError, match=r"tune\.space is empty"):
        sweep(empty)


def test_resume_reclaims_placement_groups_left_by_a_dead_driver(ray_runtime: Any) -> None:
    """A placement group that outlived its (dead) sweep driver is removed; live drivers are refused."""
    import ray
    from ray.util.placement_group import placement_group_table

    from raylane.errors import UserError
    from raylane.sweep.reclaim import reclaim as _reclaim

    child = (
        "import ray, sys, time\n"
        f"ray.init(address={ray_runtime.address!r})\n"
        "from ray.util.placement_group import placement_group\n"
        "pg = placement_group([{'CPU': 1}], lifetime='detached')\n"
        "ray.get(pg.ready())\n"
        "print(ray.get_runtime_context().get_job_id(), pg.id.hex(), flush=True)\n"
        "time.sleep(600)\n"
    )
    driver = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    try:
        job, pg = driver.stdout.readline().split()  # type: ignore[union-attr]
        with pytest.raises(UserError, match=f"still running in Ray job {job}"):
            _reclaim([job], "test")
    finally:
        driver.kill()
        driver.wait()
    _reclaim_dead([job])
    time.sleep(0.5)
    assert placement_group_table()[pg]["state"] == "REMOVED"
    assert ray.available_resources().get("CPU", 0) >= 1


def test_placement_groups_left_by_dead_actors_are_removed(ray_runtime: Any) -> None:
    """Ray keeps the placement group an actor made until the actor's job ends, so a Ray Train
    controller killed by Tune as it started would hold its CPUs for the rest of the sweep: the group
    of a dead actor is removed, the groups of a live actor and of the driver itself are kept."""
    import ray
    from ray.util.placement_group import placement_group, placement_group_table, remove_placement_group

    from raylane.sweep.reclaim import remove_orphans

    @ray.remote(num_cpus=0)
    class Maker:
        def make(self) -> str:
            made = placement_group([{"CPU": 0.1}])
            ray.get(made.ready())
            return str(made.id.hex())

    doomed, alive = Maker.remote(), Maker.remote()  # type: ignore[attr-defined]
    gone, kept = ray.get([doomed.make.remote(), alive.make.remote()])
    own = placement_group([{"CPU": 0.1}])
    ray.get(own.ready())
    try:
        ray.kill(doomed)
        deadline, removed = time.monotonic() + 30, []
        while gone not in removed and time.monotonic() < deadline:
            time.sleep(0.5)
            assert placement_group_table()[gone]["state"] == "CREATED"  # Ray does not remove it
            removed += remove_orphans()  # (with any an earlier test of this session left)
        assert gone in removed and kept not in removed and own.id.hex() not in removed
        time.sleep(0.5)
        states = placement_group_table()
        assert states[gone]["state"] == "REMOVED"
        assert states[kept]["state"] == states[own.id.hex()]["state"] == "CREATED"
    finally:
        remove_placement_group(own)
        ray.kill(alive)


@pytest.mark.slow
def test_ctrl_c_saves_the_sweep_for_a_resume(project: ProjectConfig, ray_runtime: Any, tmp_path: Path) -> None:
    """SIGINT (Ctrl-C) to the driver: exit 130 with how to resume, runs marked KILLED, nothing registered."""
    import json

    from mlflow import MlflowClient

    cfg = project
    sets = [*SMALL, "tune.num_samples=2", "registry.model_name=interrupted"]
    sets += [
        f"backends.ray.address={ray_runtime.address}",
        f"backends.ray.auth_token_file={os.environ['RAY_AUTH_TOKEN_PATH']}",
    ]
    env = {**os.environ, "CHURN_DATA": str(cfg.data.sources[0].path.parent), "RAYLANE_STORAGE": str(cfg.storage_root)}
    cmd = [sys.executable, "-m", "raylane", "sweep", str(example_config_path()), "--name", "ctrl-c"]
    cmd += [a for s in sets for a in ("--set", s)]
    state_file = cfg.storage_root / "sweeps" / "ctrl-c" / "sweep.json"
    client = MlflowClient(cfg.mlflow_tracking_uri)
    with (tmp_path / "driver.log").open("w") as log:
        driver = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                assert driver.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
                if state_file.exists():
                    children = _children(cfg, json.loads(state_file.read_text())["parent_run_id"])
                    if any(client.get_metric_history(c.info.run_id, "val_roc_auc") for c in children):
                        break
                time.sleep(0.5)
            driver.send_signal(signal.SIGINT)
            code = driver.wait(timeout=120)
        finally:
            if driver.poll() is None:
                driver.kill()
    printed = (tmp_path / "driver.log").read_text()
    assert code == 130, printed[-3000:]
    assert "sweep ctrl-c interrupted" in printed and "--resume --name ctrl-c" in printed
    state = json.loads(state_file.read_text())
    assert state["status"] == "running"
    assert client.get_run(state["parent_run_id"]).info.status == "KILLED"
    assert "RUNNING" not in {c.info.status for c in _children(cfg, state["parent_run_id"])}
    named = cfg.model_copy(update={"registry": cfg.registry.model_copy(update={"model_name": "interrupted"})})
    assert Registry(named).versions() == []  # an interrupted sweep registers nothing
    # A trial killed by the Ctrl-C as it started can leave its group reserved after the driver ended
    # (Ray's race, see raylane.sweep.reclaim): what a resume would do first, so later tests get the CPUs.
    _reclaim_dead(state["drivers"])


def _reclaim_dead(drivers: list[str]) -> None:
    from raylane.errors import UserError
    from raylane.sweep.reclaim import reclaim as _reclaim

    deadline = time.monotonic() + 30
    while True:
        try:
            return _reclaim(drivers, "test")
        except UserError:  # the cluster has not noticed the driver's death yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
