"""Training on Ray Train with MLflow tracking and the registry gate, on real Ray, MLflow and Feast."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raylane.config import ProjectConfig, load_config
from raylane.errors import ClusterError, RaylaneError
from raylane.features import FeatureRepo
from raylane.ingest import ingest
from raylane.registry import Registry
from raylane.testing import example_config_path, example_project
from raylane.training import reproduce, train

FAST = ["train.epochs=6", "train.batch_size=128", "train.learning_rate=0.01"]


def _project(root: Path, overrides: list[str] | None = None, **spec: object) -> ProjectConfig:
    cfg = example_project(root, overrides=[*FAST, *(overrides or [])], **spec)
    ingest(cfg)
    FeatureRepo(cfg).apply()
    return cfg


@pytest.fixture(scope="module")
def trained(ray_runtime: object, tmp_path_factory: pytest.TempPathFactory) -> tuple[ProjectConfig, object]:
    """The binary churn model, trained and promoted once (version 1)."""
    cfg = _project(tmp_path_factory.mktemp("train"), size="small", customers=800, labels=6000)
    return cfg, train(cfg)


def test_binary_beats_the_trivial_baseline_and_is_promoted(trained: tuple[ProjectConfig, object]) -> None:
    cfg, result = trained
    assert result.metrics["roc_auc"] > 0.75  # a majority-class predictor has 0.5
    assert result.version == "1" and result.promoted
    reg = Registry(cfg)
    assert reg.aliases() == {"champion": "1", "challenger": "1"}
    tags = reg.version("1").tags
    for key in ("git_sha", "git_dirty", "config_hash", "data_hash", "data_rows", "data_views", "ray_job_id"):
        assert tags[key], key
    assert tags["gate.decision"] == "passed"


def test_shuffles_use_rays_pull_based_sort_unless_the_environment_chooses(
    ray_runtime: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ray 2.60's default shuffle cost 3 s of every small run's split; `RAY_DATA_DEFAULT_SHUFFLE_STRATEGY` wins."""
    import ray.data
    from ray.data.context import ShuffleStrategy

    from raylane import runtime

    monkeypatch.delenv(runtime.SHUFFLE_ENV, raising=False)  # whatever the machine's environment says
    runtime.init()
    ctx = ray.data.DataContext.get_current()
    assert ctx.shuffle_strategy == ShuffleStrategy.SORT_SHUFFLE_PULL_BASED
    monkeypatch.setenv(runtime.SHUFFLE_ENV, "hash_shuffle")
    runtime.init()
    assert ray.data.DataContext.get_current().shuffle_strategy == ShuffleStrategy.HASH_SHUFFLE
    monkeypatch.delenv(runtime.SHUFFLE_ENV)
    runtime.init()
    assert ray.data.DataContext.get_current().shuffle_strategy == ShuffleStrategy.SORT_SHUFFLE_PULL_BASED


def test_a_finished_run_leaves_no_ray_train_actor_behind(trained: tuple[ProjectConfig, object]) -> None:
    """The run's controller and workers go with it (Ray Train's Ctrl-C handler held the controller)."""
    from ray.util.state import list_actors

    def alive() -> list[str]:
        actors = list_actors(filters=[("state", "=", "ALIVE")], limit=1000)
        return [a.class_name for a in actors if a.class_name in ("TrainController", "RayTrainWorker")]

    deadline = time.monotonic() + 30
    while alive() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert alive() == []


def test_mlflow_run_has_params_epoch_metrics_config_and_profiles(trained: tuple[ProjectConfig, object]) -> None:
    from mlflow import MlflowClient

    cfg, result = trained
    client = MlflowClient(cfg.mlflow_tracking_uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["train.epochs"] == "6"
    history = client.get_metric_history(result.run_id, "val_roc_auc")
    assert [m.step for m in history] == list(range(result.epochs))
    artifacts = {a.path for a in client.list_artifacts(result.run_id, "config")}
    assert {"config/project.json", "config/project.yaml"} <= artifacts
    assert [a.path for a in client.list_artifacts(result.run_id, "monitoring")] == ["monitoring/reference_profile.bin"]


def test_the_run_says_where_its_time_went(trained: tuple[ProjectConfig, object]) -> None:
    from mlflow import MlflowClient

    cfg, result = trained
    stages = list(result.timings.seconds)  # type: ignore[attr-defined]
    assert stages == [
        "training set",
        "fingerprint",
        "preprocessing",
        "tracking setup",
        "worker-group start",
        "epochs",
        "worker-group stop",
        "evaluation",
        "model logging",
        "registration",
    ]
    assert all(v >= 0 for v in result.timings.seconds.values())  # type: ignore[attr-defined]
    assert result.timings.seconds["epochs"] > 0  # type: ignore[attr-defined]
    assert result.timings.total <= result.seconds + 0.5  # type: ignore[attr-defined]
    logged = MlflowClient(cfg.mlflow_tracking_uri).get_run(result.run_id).data.metrics  # type: ignore[attr-defined]
    assert {"time_training_set_s", "time_epochs_s", "time_worker_group_start_s", "time_registration_s"} <= set(logged)
    assert "ready_at" not in logged and "reported_at" not in logged  # bookkeeping, not metrics


def test_the_registered_model_loads_without_pickle_and_predicts_like_training(
    trained: tuple[ProjectConfig, object],
) -> None:
    import mlflow

    cfg, _ = trained
    bundle = Registry(cfg).load_bundle("1")
    frame = FeatureRepo(cfg).training_set().to_pandas().head(50)
    ours = bundle.predict(frame[list(cfg.feature_dtypes())])
    mlflow.set_tracking_uri(cfg.mlflow_tracking_uri)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{cfg.model_name}@champion")
    # the MLflow signature takes numeric features as float64 (any of them may be null when serving)
    numeric = [c for c, t in cfg.feature_dtypes().items() if t in ("int64", "float64")]
    as_floats = frame[list(cfg.feature_dtypes())].astype({c: "float64" for c in numeric})
    np.testing.assert_allclose(pyfunc.predict(as_floats).to_numpy(), ours, rtol=1e-6)
    # unseen categories and an all-null column still give predictions (bucket 0, training means)
    odd = frame[list(cfg.feature_dtypes())].copy()
    odd["plan"] = "platinum-unseen"
    odd["monthly_charges"] = None
    pred = bundle.predict(odd)
    assert np.isfinite(pred).all() and ((pred >= 0) & (pred <= 1)).all()


def test_a_worse_challenger_never_becomes_champion_and_rollback_works(
    trained: tuple[ProjectConfig, object], tmp_path: Path
) -> None:
    cfg, _ = trained
    worse = cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": 1, "learning_rate": 1e-6})})
    result = train(worse)
    reg = Registry(cfg)
    assert not result.promoted and result.decision is not None and not result.decision.passed
    assert reg.aliases()["champion"] == "1" and reg.aliases()["challenger"] == result.version
    assert reg.version(result.version).tags["gate.decision"] == "failed"
    reg.promote(result.version, "by hand, for the rollback test")
    assert reg.aliases()["champion"] == result.version
    assert reg.rollback() == (result.version, "1")
    assert reg.aliases()["champion"] == "1"


def test_a_gate_that_errors_moves_nothing(trained: tuple[ProjectConfig, object]) -> None:
    """The champion's model files are unreadable: the gate cannot evaluate it and errors."""
    from urllib.parse import urlparse

    cfg, _ = trained
    reg = Registry(cfg)
    champion = reg.champion()
    model_id = champion.source.removeprefix("models:/")
    files = Path(urlparse(reg.client.get_logged_model(model_id).artifact_location).path)
    hidden = files.with_name(files.name + ".hidden")
    files.rename(hidden)
    try:
        with pytest.raises(Exception):  # noqa: B017 - whatever MLflow raises for missing files
            train(cfg)
    finally:
        hidden.rename(files)
    newest = reg.versions()[-1]
    assert reg.aliases()["champion"] == str(champion.version)
    assert reg.aliases()["challenger"] == str(newest.version)
    assert newest.tags["gate.decision"] == "error"


def test_reproduce_a_registered_version(trained: tuple[ProjectConfig, object]) -> None:
    cfg, _ = trained
    rep = reproduce(cfg, "1")
    assert rep.same_data and rep.matches, (rep.recorded, rep.retrained)


def test_use_gpu_without_a_gpu_fails_fast(trained: tuple[ProjectConfig, object]) -> None:
    cfg, _ = trained
    gpu = cfg.model_copy(update={"train": cfg.train.model_copy(update={"use_gpu": True})})
    started = time.monotonic()
    with pytest.raises(ClusterError, match="use_gpu"):
        train(gpu)
    assert time.monotonic() - started < 30


def _labels_from_features(cfg: ProjectConfig, kind: str) -> None:
    """Replace the label table with a multiclass or regression target computed from the
    point-in-time features (plus noise), so the label is learnable from them."""
    frame = FeatureRepo(cfg).training_set().to_pandas()
    rng = np.random.default_rng(0)
    score = (
        0.05 * frame["sessions_7d"].fillna(10).to_numpy(dtype=float)
        - 0.3 * frame["support_tickets_30d"].fillna(0).to_numpy(dtype=float)
        + 0.5 * (frame["plan"] == "premium").to_numpy(dtype=float)
        + rng.normal(0, 0.15, len(frame))
    )
    target = np.digitize(score, np.quantile(score, [1 / 3, 2 / 3])) if kind == "multiclass" else 10 * score
    labels = pd.DataFrame(
        {"customer_id": frame["customer_id"], "label_timestamp": frame["label_timestamp"], "target": target}
    )
    path = cfg.data.source("labels").path
    labels.to_csv(path, index=False, date_format="%Y-%m-%dT%H:%M:%S%z")


@pytest.mark.slow
@pytest.mark.parametrize("task", ["multiclass", "regression"])
def test_other_tasks_beat_their_baselines(ray_runtime: object, tmp_path: Path, task: str) -> None:
    dtype = "int64" if task == "multiclass" else "float64"
    overrides = [
        f"model.task={task}",
        "data.labels.column=target",
        "registry.promotion.metric=null",
        f"data.sources.2.columns={{customer_id: int64, target: {dtype}}}",
    ]
    base = _project(tmp_path)
    _labels_from_features(base, task)
    env = {"CHURN_DATA": str(tmp_path / "data"), "RAYLANE_STORAGE": str(tmp_path / "store")}
    cfg = load_config(example_config_path(), [*FAST, *overrides], env=env)  # same data, new labels
    ingest(cfg)
    FeatureRepo(cfg).apply()
    result = train(cfg, register=False)
    holdout = FeatureRepo(cfg).labels()["target"]
    if task == "multiclass":
        majority = holdout.value_counts(normalize=True).max()
        assert result.metrics["accuracy"] > majority + 0.1, result.metrics
    else:
        baseline_rmse = float(holdout.std())
        assert result.metrics["rmse"] < 0.8 * baseline_rmse, (result.metrics, baseline_rmse)


@pytest.mark.slow
def test_a_killed_worker_resumes_from_a_checkpoint(trained: tuple[ProjectConfig, object], tmp_path: Path) -> None:
    from mlflow import MlflowClient

    cfg, _ = trained
    marker = tmp_path / "crashed"
    result = train(cfg, register=False, _faults={"epoch": 2, "marker": str(marker)})
    assert marker.exists()  # the worker did die
    history = MlflowClient(cfg.mlflow_tracking_uri).get_metric_history(result.run_id, "resumed_from")
    assert max(m.value for m in history) >= 0  # a later epoch ran after restoring a checkpoint
    assert result.metrics["roc_auc"] > 0.7


@pytest.mark.slow
def test_a_killed_worker_without_retries_is_a_clear_error(
    trained: tuple[ProjectConfig, object], tmp_path: Path
) -> None:
    cfg, _ = trained
    strict = cfg.model_copy(update={"train": cfg.train.model_copy(update={"max_failures": 0})})
    with pytest.raises(RaylaneError, match="training failed"):
        train(strict, register=False, _faults={"epoch": 1, "marker": str(tmp_path / "crashed")})


@pytest.mark.slow
def test_two_workers_match_one(trained: tuple[ProjectConfig, object]) -> None:
    cfg, one = trained
    two_cfg = cfg.model_copy(
        update={"train": cfg.train.model_copy(update={"num_workers": 2, "resources_per_worker": {"CPU": 0.5}})}
    )
    two = train(two_cfg, register=False)
    assert abs(two.metrics["roc_auc"] - one.metrics["roc_auc"]) < 0.03, (one.metrics, two.metrics)


def test_each_worker_takes_an_equal_contiguous_share_of_the_blocks(ray_runtime: object) -> None:
    import pyarrow as pa
    import ray

    from raylane.training.loop import _equal_share

    sizes = [5, 0, 7, 3]  # 15 rows over blocks of uneven size, one empty
    starts = np.cumsum([0, *sizes[:-1]])
    refs = [
        ray.put(pa.table({"x": np.arange(s, s + n, dtype=np.int64), "y": np.arange(s, s + n) * 2.0}))
        for s, n in zip(starts, sizes, strict=True)
    ]
    shares = [_equal_share(refs, rank, 2) for rank in range(2)]
    # 7 rows each, contiguous and in order; row 14 is left out, as in Ray's equal split
    assert [list(s["x"]) for s in shares] == [list(range(7)), list(range(7, 14))]
    assert list(shares[1]["y"]) == [2.0 * i for i in range(7, 14)]
    assert list(_equal_share(refs, 0, 1)["x"]) == list(range(15))


@pytest.mark.slow
def test_without_cache_data_the_shards_stream_from_ray_data(trained: tuple[ProjectConfig, object]) -> None:
    cfg, one = trained
    streamed = cfg.model_copy(update={"train": cfg.train.model_copy(update={"cache_data": False})})
    result = train(streamed, register=False)
    assert abs(result.metrics["roc_auc"] - one.metrics["roc_auc"]) < 0.03, (one.metrics, result.metrics)


@pytest.mark.gpu
def test_training_on_a_gpu(trained: tuple[ProjectConfig, object]) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no NVIDIA GPU visible")
    cfg, _ = trained
    gpu = cfg.model_copy(update={"train": cfg.train.model_copy(update={"use_gpu": True})})
    assert train(gpu, register=False).metrics["roc_auc"] > 0.75


def test_cli_lineage_and_registry_commands(
    trained: tuple[ProjectConfig, object],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    from raylane.cli import main

    cfg, _ = trained
    monkeypatch.setenv("CHURN_DATA", str(cfg.data.sources[0].path.parent))
    monkeypatch.setenv("RAYLANE_STORAGE", str(cfg.storage_root))
    monkeypatch.chdir(tmp_path)  # nothing may land in the working folder (MLflow's defaults would)
    config = str(example_config_path())
    capsys.readouterr()
    assert main(["lineage", config, "churn/1"]) == 0
    text = capsys.readouterr().out
    for fragment in ("lineage of churn version 1", "git ", "customer_profile,customer_activity", "roc_auc"):
        assert fragment in text, fragment
    assert main(["registry", "list", config]) == 0
    assert "passed" in capsys.readouterr().out
    assert main(["registry", "show", config, "@champion"]) == 0
    assert "gate.decision" in capsys.readouterr().out
    assert main(["lineage", config, "churn/99"]) == 2
    assert "no model version 'churn/99'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_a_rollout_keeps_its_challenger_until_another_version_is_promoted(
    trained: tuple[ProjectConfig, object],
) -> None:
    """A version registered during a rollout (a retrain's, before its gate) leaves the rollout as it
    was; promoting another version ends it as superseded."""
    cfg, _ = trained
    reg = Registry(cfg)
    champion = reg.champion()
    first = reg.register(champion.source, champion.run_id, dict(champion.tags))
    reg.start_rollout(first, "shadow")
    later = reg.register(champion.source, champion.run_id, dict(champion.tags))
    rollout = reg.current_rollout()
    assert rollout is not None and rollout.challenger == first and reg.aliases()["challenger"] == first
    reg.promote(later, "by hand, beside a rollout")
    assert reg.current_rollout() is None
    tags = reg.version(first).tags
    assert tags["rollout"] == "superseded" and tags["rollout.reason"] == f"superseded: v{later} promoted"
    assert reg.rollback() == (later, str(champion.version))
