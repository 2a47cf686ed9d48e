"""`raylane predict`: batch inference on Ray Data with the registered champion, point-in-time correct.

One tiny churn project with a trained champion serves every test; predictions are compared with
MLflow's pyfunc of the same version on features joined by definition (row by row)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from raylane.batch import predict
from raylane.cli import main
from raylane.config import ProjectConfig
from raylane.features import FeatureRepo
from raylane.ingest import ingest
from raylane.testing import as_of_by_definition, example_project, offline_table
from raylane.training import train


@pytest.fixture(scope="module")
def project(ray_runtime: object, tmp_path_factory: pytest.TempPathFactory) -> ProjectConfig:
    cfg = example_project(
        tmp_path_factory.mktemp("batch"),
        overrides=["train.epochs=2", "train.batch_size=128", "registry.promotion.floor=null", "batch.batch_size=64"],
    )
    ingest(cfg)
    repo = FeatureRepo(cfg)
    repo.apply()
    repo.materialize()
    assert train(cfg).promoted
    return cfg


def _entities(cfg: ProjectConfig, n: int = 120) -> pd.DataFrame:
    """``n`` rows: sampled customers (some twice) at times spread over the data, in no sorted order."""
    activity = offline_table(cfg, "activity")
    rng = np.random.default_rng(7)
    keys = rng.choice(activity["customer_id"].unique(), size=n)
    lo, hi = activity["event_timestamp"].min(), activity["event_timestamp"].max()
    times = lo + (hi - lo) * rng.uniform(0.1, 1.0, size=n)
    return pd.DataFrame({"customer_id": keys.astype("int64"), "label_timestamp": pd.to_datetime(times, utc=True)})


def _pyfunc(cfg: ProjectConfig, version: str, features: pd.DataFrame) -> np.ndarray:
    import mlflow

    mlflow.set_tracking_uri(cfg.mlflow_tracking_uri)
    model = mlflow.pyfunc.load_model(f"models:/{cfg.model_name}/{version}")
    # the MLflow signature takes numeric features as float64 (null: NaN), as in test_train
    numeric = {c: "float64" for c, t in cfg.feature_dtypes().items() if t in ("int64", "float64")}
    frame = features[list(cfg.feature_dtypes())].astype(numeric)
    return np.asarray(model.predict(frame), dtype=np.float64).ravel()


def test_offline_predictions_equal_pyfunc_on_point_in_time_features(project: ProjectConfig, tmp_path: Path) -> None:
    cfg = project
    rows = _entities(cfg)
    rows.to_parquet(tmp_path / "entities.parquet")
    report = predict(cfg, entities=str(tmp_path / "entities.parquet"), out=tmp_path / "scores")
    got = pd.read_parquet(tmp_path / "scores")
    assert report.rows_in == report.rows_out == len(rows) == len(got)
    assert got["customer_id"].tolist() == rows["customer_id"].tolist()  # one row per input row, in order
    assert (got["as_of"] == rows["label_timestamp"]).all()
    assert set(got["model_version"]) == {report.model_version} and set(got["batch_run_id"]) == {report.run_id}
    expected = _pyfunc(cfg, report.model_version, as_of_by_definition(cfg, rows, "label_timestamp"))
    np.testing.assert_allclose(got["prediction"].to_numpy(), expected, rtol=1e-5, atol=1e-6)
    assert report.rows_missing_features == int(got["imputed"].sum())
    assert (tmp_path / "scores" / "_summary.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".scores")]  # no temporary folder left


def test_many_small_batches_come_out_in_input_order(project: ProjectConfig, tmp_path: Path) -> None:
    """40 scoring batches of 3 rows, in order, in one file. Ray Data's own parquet writer, whatever
    ``preserve_order`` says, lets pyarrow's threads write a task's blocks in any order: CI once got
    a 26-row block before the 64-row block it followed (the test above). raylane writes the rows
    itself; a swap is a race, so this test does not fail every time that writer is used."""
    cfg = project.model_copy(update={"batch": project.batch.model_copy(update={"batch_size": 3})})
    rows = _entities(cfg)
    rows.to_csv(tmp_path / "entities.csv", index=False)
    report = predict(cfg, entities=str(tmp_path / "entities.csv"), out=tmp_path / "scores")
    got = pd.read_parquet(tmp_path / "scores")
    assert report.rows_out == len(got) == len(rows)
    assert got["customer_id"].tolist() == rows["customer_id"].tolist()
    assert sorted(p.name for p in (tmp_path / "scores").iterdir()) == ["_summary.json", "part-00000.parquet"]


def test_as_of_an_earlier_time_gets_the_older_feature_values(project: ProjectConfig, tmp_path: Path) -> None:
    """Every entity scored `as_of` a time before its latest feature row: the predictions are those
    of the features valid at that time (by definition), and differ from the latest features'."""
    from mlflow import MlflowClient

    cfg = project
    activity = offline_table(cfg, "activity")
    when = activity["event_timestamp"].quantile(0.5)
    keys = activity.loc[activity["event_timestamp"] > when, "customer_id"].drop_duplicates().head(60)
    pd.DataFrame({"customer_id": keys.astype("int64")}).to_csv(tmp_path / "keys.csv", index=False)
    report = predict(cfg, entities=str(tmp_path / "keys.csv"), out=tmp_path / "then", as_of=when.to_pydatetime())
    got = pd.read_parquet(tmp_path / "then")
    rows = pd.DataFrame({"customer_id": keys.to_numpy(), "t": [when] * len(keys)})
    expected = _pyfunc(cfg, report.model_version, as_of_by_definition(cfg, rows, "t"))
    np.testing.assert_allclose(got["prediction"].to_numpy(), expected, rtol=1e-5, atol=1e-6)
    latest_time = activity["event_timestamp"].max()
    latest = _pyfunc(cfg, report.model_version, as_of_by_definition(cfg, rows.assign(t=latest_time), "t"))
    assert (np.abs(latest - expected) > 1e-6).sum() >= len(keys) // 2  # the older values made a difference
    run = MlflowClient(cfg.mlflow_tracking_uri).get_run(report.run_id)
    assert run.data.tags["raylane.kind"] == "batch" and run.data.tags["raylane.model_version"] == report.model_version
    assert run.data.metrics["rows_out"] == len(keys)


def test_every_entity_of_the_offline_tables_is_scored_with_all(project: ProjectConfig, tmp_path: Path) -> None:
    cfg = project
    report = predict(cfg, entities="all", out=tmp_path / "all", features="online")
    got = pd.read_parquet(tmp_path / "all")
    keys = set(offline_table(cfg, "activity")["customer_id"]) | set(offline_table(cfg, "profiles")["customer_id"])
    assert sorted(got["customer_id"]) == sorted(keys) and report.rows_out == len(keys)


def _bad(project: ProjectConfig, tmp_path: Path) -> list[tuple[str, list[str], str]]:
    """(name, extra CLI args, what the error says) for each bad input."""
    good = _entities(project, 10)
    good.drop(columns=["customer_id"]).to_parquet(tmp_path / "nokey.parquet")
    good.assign(customer_id=good["customer_id"].astype(str)).to_parquet(tmp_path / "strkey.parquet")
    good.head(0).to_parquet(tmp_path / "empty.parquet")
    good.to_parquet(tmp_path / "good.parquet")
    (tmp_path / "taken").mkdir()
    return [
        ("missing key", ["--entities", str(tmp_path / "nokey.parquet")], "no entity key column `customer_id`"),
        ("key type", ["--entities", str(tmp_path / "strkey.parquet")], "but the entity key is int64"),
        ("empty", ["--entities", str(tmp_path / "empty.parquet")], "no rows to score"),
        ("no such file", ["--entities", str(tmp_path / "ghost.parquet")], "no such file or folder"),
        ("unknown model", ["--entities", str(tmp_path / "good.parquet"), "--model", "@ghost"], "no model version"),
        ("bad time", ["--entities", str(tmp_path / "good.parquet"), "--as-of", "yesterday"], "is not an ISO time"),
    ]


def test_bad_input_exits_2_with_the_fix_and_writes_nothing(
    project: ProjectConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    cfg = project
    monkeypatch.setenv("CHURN_DATA", str(cfg.data.sources[0].path.parent))
    monkeypatch.setenv("RAYLANE_STORAGE", str(cfg.storage_root))
    from raylane.testing import example_config_path

    base = ["predict", str(example_config_path()), "--set", "batch.batch_size=64"]
    for name, args, says in _bad(cfg, tmp_path):
        code = main([*base, *args, "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert code == 2, (name, err)
        assert says in " ".join(err.split()) and "fix:" in err, (name, err)
        assert not (tmp_path / "out").exists(), name
    code = main([*base, "--entities", str(tmp_path / "good.parquet"), "--out", str(tmp_path / "taken")])
    err = capsys.readouterr().err
    assert code == 2 and "already exists" in err and "--overwrite" in err
    assert list((tmp_path / "taken").iterdir()) == []  # untouched


def test_input_columns_it_does_not_read_and_a_missing_time_column_are_named(
    project: ProjectConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    """A time column under another name is not silently scored as of now: the CLI names the columns it
    did not read and the time it used; the summary records both."""
    import json

    from raylane.testing import example_config_path

    monkeypatch.setenv("CHURN_DATA", str(project.data.sources[0].path.parent))
    monkeypatch.setenv("RAYLANE_STORAGE", str(project.storage_root))
    rows = _entities(project, 6).rename(columns={"label_timestamp": "ts"}).assign(note="x")
    rows.to_parquet(tmp_path / "rows.parquet")
    base = ["predict", str(example_config_path()), "--entities", str(tmp_path / "rows.parquet")]
    assert main([*base, "--out", str(tmp_path / "now")]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "columns ts, note were not read" in err and "has no `label_timestamp` column" in err, err
    summary = json.loads((tmp_path / "now" / "_summary.json").read_text())
    assert summary["ignored_columns"] == ["ts", "note"] and summary["time_column"] is None
    # named in the config, the same column is each row's time: no note, and the times are the rows'
    assert main([*base, "--out", str(tmp_path / "timed"), "--set", "batch.time_column=ts"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "were not read: each is" in err and "columns note were" in err and "no `ts` column" not in err, err
    scored = pd.read_parquet(tmp_path / "timed")
    assert list(scored["as_of"]) == list(rows["ts"])
    assert json.loads((tmp_path / "timed" / "_summary.json").read_text())["time_column"] == "ts"
