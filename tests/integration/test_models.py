"""Your own model (issue 14): the tickets example, a user entrypoint with text features, end to end.

One tiny tickets project (its config and model file copied to a temp folder) is trained once;
the tests then serve it, sweep over its ``model.params``, edit its model file, and load it as a
plain MLflow client would.
"""

from __future__ import annotations

import math
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from raylane.config import ProjectConfig
from raylane.features import FeatureRepo
from raylane.ingest import ingest
from raylane.lineage import Lineage
from raylane.registry import Registry
from raylane.serving import deploy, undeploy
from raylane.testing import example_project, free_port
from raylane.training import TrainResult, reproduce, train

FEW_EPOCHS = ["train.epochs=4", "registry.promotion.floor=null"]


@pytest.fixture(scope="module")
def tickets(ray_runtime: object, tmp_path_factory: pytest.TempPathFactory) -> tuple[ProjectConfig, TrainResult]:
    """The tiny tickets project: ingested, applied, materialized and trained once (champion)."""
    root = tmp_path_factory.mktemp("tickets")
    cfg = example_project(root, example="tickets", overrides=[*FEW_EPOCHS, f"serve.port={free_port()}"])
    ingest(cfg)
    repo = FeatureRepo(cfg)
    repo.apply()
    repo.materialize()
    result = train(cfg)
    assert result.promoted, result.decision
    return cfg, result


def _features(cfg: ProjectConfig, n: int = 30) -> pd.DataFrame:
    """Raw feature rows of the first ``n`` tickets, as the source holds them (Int64 with nulls included)."""
    raw = pd.read_parquet(cfg.data.source("tickets").path)
    return raw[["ticket_id", *cfg.feature_dtypes()]].head(n)


def test_the_tickets_model_learns_from_its_text(tickets: tuple[ProjectConfig, TrainResult]) -> None:
    cfg, result = tickets
    assert result.metrics["macro_f1"] >= 0.8
    lineage = Lineage.from_tags(Registry(cfg).version(result.version or "").tags)
    assert len(lineage.model_code_hash) == 64 and lineage.raylane_version
    # the built-in MLP on the same split without the text columns does much worse
    doc = cfg.model_dump(mode="json")
    doc["model"], doc["tune"] = {"task": "multiclass"}, {}
    doc["features"]["views"][0]["features"] = ["tier", "account_age_days"]
    plain = train(ProjectConfig.model_validate(doc).with_base_dir(cfg.base_dir), register=False)
    assert plain.metrics["macro_f1"] < result.metrics["macro_f1"] - 0.3


def test_http_predict_with_text_equals_the_plain_mlflow_model(tickets: tuple[ProjectConfig, TrainResult]) -> None:
    import mlflow

    cfg, result = tickets
    frame = _features(cfg, 20)
    entities = [
        {k: (None if pd.isna(v) else (int(v) if k in ("ticket_id", "account_age_days") else v)) for k, v in row.items()}
        for row in frame.to_dict("records")
    ]
    record = deploy(cfg)
    try:
        r = httpx.post(record.url + "/predict", json={"entities": entities}, timeout=60)
        assert r.status_code == 200, r.text
        served = r.json()["predictions"]
    finally:
        undeploy(cfg)
    model = mlflow.pyfunc.load_model(Registry(cfg).client.get_model_version_download_uri(cfg.model_name, "1"))
    features = frame[list(cfg.feature_dtypes())]
    offline = model.predict(features).to_numpy()
    classes = [str(c) for c in Registry(cfg).load_bundle(result.version or "").pre.classes]
    got = np.array([[p["probabilities"][c] for c in classes] for p in served])
    np.testing.assert_allclose(got, offline, rtol=1e-4, atol=1e-5)
    # the sources' own dtypes: an int64 column with nulls (pandas Int64), without, and as float
    assert features["account_age_days"].dtype == "Int64"
    for column in (
        features["account_age_days"].fillna(0).astype("int64"),
        features["account_age_days"].astype("float64"),
    ):
        assert model.predict(features.assign(account_age_days=column)).shape == offline.shape


def test_a_sweep_over_model_params_registers_through_the_gate(tickets: tuple[ProjectConfig, TrainResult]) -> None:
    """A HyperOpt (TPE) sweep over the entrypoint model's own params: its second trial is the model's."""
    from raylane.sweep import sweep

    cfg, _ = tickets
    doc = cfg.model_dump(mode="json")
    doc["tune"] = {
        "num_samples": 2,
        "max_concurrent_trials": 1,
        "search": {"type": "hyperopt", "initial_trials": 1},
        "scheduler": {"type": "fifo", "max_t": 2, "grace_period": 1},
        "space": {"model.params.hidden": {"type": "choice", "values": [16, 32]}},
    }
    result = sweep(ProjectConfig.model_validate(doc).with_base_dir(cfg.base_dir))
    assert len(result.trials) == 2 and {t.params["model.params.hidden"] for t in result.trials} <= {16, 32}
    assert result.train is not None and result.train.decision is not None  # through the gate


def test_editing_the_model_file_changes_nothing_registered(tickets: tuple[ProjectConfig, TrainResult]) -> None:
    import mlflow

    cfg, result = tickets
    version = result.version or ""
    frame = _features(cfg)[list(cfg.feature_dtypes())]
    before = Registry(cfg).load_bundle(version).predict(frame)
    model_file = Path(str(cfg.model.entrypoint).rpartition(":")[0])
    original = model_file.read_text()
    edited = original.replace(
        "return self.head(torch.cat(parts, dim=1))", "return 0 * self.head(torch.cat(parts, dim=1))"
    )
    edited = edited.replace("ctx.optimizer.step()", "raise RuntimeError('the edited loop ran')")  # train.loop too
    assert edited.count("0 * self.head") == 1 and "the edited loop ran" in edited
    model_file.write_text(edited)
    try:
        np.testing.assert_allclose(Registry(cfg).load_bundle(version).predict(frame), before, rtol=1e-6)
        uri = Registry(cfg).client.get_model_version_download_uri(cfg.model_name, version)
        np.testing.assert_allclose(mlflow.pyfunc.load_model(uri).predict(frame).to_numpy(), before, rtol=1e-6)
        rep = reproduce(cfg, f"{cfg.model_name}/{version}")
        assert rep.matches, (rep.recorded, rep.retrained)
        assert rep.lineage_now.model_code_hash == rep.lineage_then.model_code_hash
        assert rep.lineage_now.train_loop_hash == rep.lineage_then.train_loop_hash != ""
    finally:
        model_file.write_text(original)
    lineage = Lineage.from_tags(Registry(cfg).version(version).tags)
    assert lineage.git_dirty in ("true", "false", "unknown") and lineage.git_sha


def test_its_own_training_loop_resumes_after_a_killed_worker_and_registers(
    tickets: tuple[ProjectConfig, TrainResult], tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    cfg, first = tickets
    assert str(cfg.train.loop).endswith("ticket_net.py:train_loop")
    assert len(first.lineage.train_loop_hash) == 64
    marker = tmp_path / "crashed"
    result = train(cfg, _faults={"epoch": 2, "marker": str(marker)})
    assert marker.exists()  # the worker did die at the start of epoch 2
    client = MlflowClient(cfg.mlflow_tracking_uri)
    resumed = {m.step: m.value for m in client.get_metric_history(result.run_id, "resumed_from")}
    # Epochs 2 and 3 ran after restoring a checkpoint: epoch 1's, or epoch 0's when Ray Train's
    # controller had not yet taken epoch 1's report from the worker that died right after it.
    assert resumed[2] == resumed[3] and resumed[2] in (0, 1), resumed
    lr = {m.step: m.value for m in client.get_metric_history(result.run_id, "lr")}  # the loop's own metric
    peak, epochs = cfg.train.learning_rate, cfg.train.epochs  # its cosine schedule, resumed in step:
    assert lr[2] == pytest.approx(peak * (1 + math.cos(math.pi * 2 / epochs)) / 2, rel=1e-6)
    assert result.version is not None and result.metrics["macro_f1"] >= 0.8
    assert Registry(cfg).load_bundle(result.version).loop is not None  # logged to reproduce the run


def test_a_gpu_replica_on_a_cluster_without_gpus_fails_at_once(tickets: tuple[ProjectConfig, TrainResult]) -> None:
    import torch

    from raylane.errors import ServeError

    if torch.cuda.is_available():
        pytest.skip("this cluster has a GPU")
    cfg, _ = tickets
    doc = cfg.model_dump(mode="json")
    doc["serve"]["resources"] = {"num_gpus": 1}
    with pytest.raises(ServeError, match=r"serve\.resources\.num_gpus is 1, but the cluster has 0 GPU"):
        deploy(ProjectConfig.model_validate(doc).with_base_dir(cfg.base_dir))


@pytest.mark.gpu
def test_the_tickets_model_trains_and_serves_on_a_gpu(tickets: tuple[ProjectConfig, TrainResult]) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no NVIDIA GPU visible")
    cfg, _ = tickets
    doc = cfg.model_dump(mode="json")
    doc["train"]["use_gpu"] = True
    doc["serve"]["resources"] = {"num_cpus": 0.5, "num_gpus": 0.5}
    gpu = ProjectConfig.model_validate(doc).with_base_dir(cfg.base_dir)
    result = train(gpu)
    assert result.metrics["macro_f1"] >= 0.8
    record = deploy(gpu)
    try:
        entities = [{"ticket_id": int(t)} for t in _features(cfg, 5)["ticket_id"]]
        r = httpx.post(record.url + "/predict", json={"entities": entities}, timeout=60)
        assert r.status_code == 200, r.text
    finally:
        undeploy(gpu)


def test_the_monitor_profiles_text_by_its_statistics(tickets: tuple[ProjectConfig, TrainResult]) -> None:
    from raylane.profiling import profile

    cfg, _ = tickets
    frame = _features(cfg, 50)[list(cfg.feature_dtypes())]
    view = profile(frame, text=cfg.text_features())
    columns = set(view.get_columns())
    assert {"subject", "subject.chars", "body", "body.chars"} <= columns
    assert view.get_column("body").get_metric("distribution") is not None  # numeric: tokens per value
