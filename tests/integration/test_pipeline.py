"""`raylane run`: the whole loop as one pipeline on the session's Ray; unchanged steps are skipped;
a failing step leaves the registry and serving as they were; every run is an MLflow run."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from raylane.cli import main
from raylane.config import ProjectConfig, load_config
from raylane.examples.churn import SIZES, write
from raylane.monitoring import monitor_handle
from raylane.monitoring import stop as stop_monitor
from raylane.pipeline import STEPS, PipelineFailed, run_pipeline
from raylane.registry import Registry
from raylane.serving import Client, read_record, undeploy
from raylane.testing import example_config_path, example_project, free_port


@pytest.fixture(scope="module")
def project(ray_runtime: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProjectConfig]:
    cfg = example_project(
        tmp_path_factory.mktemp("pipeline"),
        overrides=[
            "train.epochs=2",
            "train.batch_size=128",
            "registry.promotion.floor=null",
            f"serve.port={free_port()}",
            "serve.resources.num_cpus=0.25",
            "batch.pipeline_entities=all",  # the last step scores every customer with the champion
        ],
    )
    try:
        yield cfg
    finally:
        if read_record(cfg) is not None:
            undeploy(cfg)
        stop_monitor(cfg)


def _served_version(cfg: ProjectConfig) -> str:
    return str(Client(cfg, timeout_s=10).get("/metadata")["model"]["version"])


def test_a_second_run_with_nothing_changed_skips_every_step(project: ProjectConfig) -> None:
    cfg = project
    first = run_pipeline(cfg)
    assert [s.status for s in first.steps] == ["ran"] * len(STEPS)
    champion = str(Registry(cfg).champion().version)
    assert first.step("train").outputs["version"] == champion and _served_version(cfg) == champion
    scored = first.step("predict").outputs  # the champion's scores of every customer
    assert scored["model_version"] == champion and scored["rows"] > 0 and Path(scored["out"]).is_dir()
    monitor_handle(cfg)  # running
    second = run_pipeline(cfg)
    assert [s.status for s in second.steps] == ["skipped"] * len(STEPS)
    assert all("inputs unchanged" in s.why for s in second.steps)
    assert [s.fingerprint for s in second.steps] == [s.fingerprint for s in first.steps]
    assert len(Registry(cfg).versions()) == 1  # nothing was trained again
    # MLflow: one run per pipeline run, each step's status and fingerprint; training nested under it
    client = MlflowClient(cfg.mlflow_tracking_uri)
    runs = {r.info.run_id: r for r in (client.get_run(first.run_id), client.get_run(second.run_id))}
    assert {r.data.tags["step.train"] for r in runs.values()} == {"ran", "skipped"}
    assert all(r.info.status == "FINISHED" for r in runs.values())
    assert runs[first.run_id].data.params["ingest.fingerprint"] == first.step("ingest").fingerprint
    train_run = client.get_run(first.step("train").outputs["run_id"])
    assert train_run.data.tags["mlflow.parentRunId"] == first.run_id


def test_a_failing_step_leaves_registry_and_serving_as_they_were(project: ProjectConfig, tmp_path: Path) -> None:
    """New raw data arrives (ingest and features run again), then training fails: the champion,
    the served version and the recorded train step stay; deploy and monitor do not run."""
    cfg = project
    champion = str(Registry(cfg).champion().version)
    before = (cfg.storage_root / "pipeline" / "state.json").read_text()
    write(replace(SIZES["tiny"], seed=11), cfg.data.source("labels").path.parent)
    failing = cfg.model_copy(update={"train": cfg.train.model_copy(update={"num_workers": 64})})
    with pytest.raises(PipelineFailed) as caught:
        run_pipeline(failing)
    result = caught.value.result
    assert [s.status for s in result.steps] == ["ran", "ran", "failed", "not run", "not run", "not run"]
    assert "step train failed" in caught.value.message and caught.value.exit_code == 2  # a ClusterError
    assert str(Registry(cfg).champion().version) == champion and len(Registry(cfg).versions()) == 1
    assert _served_version(cfg) == champion
    import json

    state, old = json.loads((cfg.storage_root / "pipeline" / "state.json").read_text()), json.loads(before)
    assert state["train"] == old["train"] and state["deploy"] == old["deploy"]
    assert state["ingest"] != old["ingest"]  # what succeeded is recorded: the next run skips it
    run = MlflowClient(cfg.mlflow_tracking_uri).get_run(result.run_id)
    assert run.info.status == "FAILED" and run.data.tags["step.train"] == "failed"


def test_cli_steps_and_bounds(project: ProjectConfig, capsys: pytest.CaptureFixture[str]) -> None:
    env = {"CHURN_DATA": str(project.data.source("labels").path.parent), "RAYLANE_STORAGE": str(project.storage_root)}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        config = str(example_config_path())
        assert load_config(config).storage_root == project.storage_root
        assert main(["run", config, "--until", "features", "--set", "train.epochs=2"]) == 0
        shown = capsys.readouterr().out
        assert "skipped" in shown and "ingest" in shown and "train" in shown
        assert main(["run", config, "--from", "deploy", "--until", "train"]) == 2
        assert "comes after" in capsys.readouterr().err
        assert main(["run", config, "--from", "serve"]) == 2
        assert "not a pipeline step" in capsys.readouterr().err
