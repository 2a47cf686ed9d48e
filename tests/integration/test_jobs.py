"""Jobs on a real local multi-node cluster (`raylane cluster up`: a head and a worker node, 1 CPU
each, token auth): submit, status, logs, stop and list through the Job API; the token is required;
only allow-listed entrypoints run; a 2-worker training run spans both nodes; a sweep completes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest

from raylane import cluster
from raylane.cli import main
from raylane.config import ProjectConfig
from raylane.errors import ClusterError
from raylane.features import FeatureRepo
from raylane.ingest import ingest
from raylane.jobs import client, project_client
from raylane.testing import example_config_path, example_project


@dataclass
class Env:
    cfg: ProjectConfig
    config: str  # the example config; the environment points it at this project
    cluster: cluster.LocalCluster


@pytest.fixture(scope="module")
def env(ray_runtime: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("jobs")
    token = root / "cluster_token"  # the cluster's own token, not the test session's
    variables = {
        "CHURN_DATA": str(root / "data"),
        "RAYLANE_STORAGE": str(root / "store"),
        "RAYLANE__BACKENDS__RAY__AUTH_TOKEN_FILE": str(token),
    }
    with pytest.MonkeyPatch.context() as mp:
        for k, v in variables.items():
            mp.setenv(k, v)
        cfg = example_project(root, overrides=["train.epochs=2"])
        ingest(cfg)
        FeatureRepo(cfg).apply()
        local = cluster.up(cfg, workers=1, cpus_per_node=1)
        try:
            yield Env(cfg, str(example_config_path()), local)
        finally:
            cluster.down(cfg)
    assert not any(cluster._alive(n.pid) for n in local.nodes)


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_cluster_status_shows_two_nodes(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    code, text = _run(capsys, "cluster", "status", env.config)
    assert code == 0 and "2 nodes alive, 2 CPUs" in text and env.cluster.dashboard_url in text
    code, text = _run(capsys, "cluster", "up", env.config)
    assert code == 2 and "already up" in text


def test_submit_wait_status_logs_list(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    code, text = _run(capsys, "job", "submit", env.config, "materialize", "--wait", "--job-id", "raylane-mat-1")
    assert code == 0, text
    assert "submitted materialize as job raylane-mat-1" in text and "materialized" in text  # the job's log
    assert "raylane-mat-1: SUCCEEDED" in text
    code, text = _run(capsys, "job", "status", env.config, "raylane-mat-1")
    assert code == 0 and "SUCCEEDED" in text and "materialize" in text
    code, text = _run(capsys, "job", "logs", env.config, "raylane-mat-1")
    assert code == 0 and "materialized" in text
    code, text = _run(capsys, "job", "list", env.config)
    assert code == 0 and "raylane-mat-1" in text and "SUCCEEDED" in text
    keys = pd.read_parquet(env.cfg.data.source("profiles").path)["customer_id"].drop_duplicates().head(5)
    served = FeatureRepo(env.cfg).online().get([int(k) for k in keys])  # the job filled this project's store
    assert all(v is not None for v in served["plan"])
    code, text = _run(capsys, "job", "status", env.config, "no-such-job")
    assert code == 2 and "no job 'no-such-job'" in text


def test_stop_a_running_job(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    code, text = _run(capsys, "job", "submit", env.config, "sweep", "--job-id", "raylane-sweep-stop")
    assert code == 0, text
    _, job_client = project_client(env.cfg)
    deadline = time.monotonic() + 60
    while str(job_client.get_job_status("raylane-sweep-stop").value) == "PENDING" and time.monotonic() < deadline:
        time.sleep(0.5)
    code, text = _run(capsys, "job", "stop", env.config, "raylane-sweep-stop")
    assert code == 0 and "stopping" in text
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = str(job_client.get_job_status("raylane-sweep-stop").value)
        if status in ("STOPPED", "FAILED", "SUCCEEDED"):
            break
        time.sleep(1)
    assert status == "STOPPED"


def test_the_job_api_refuses_requests_without_the_token(env: Env) -> None:
    url = env.cluster.dashboard_url
    assert httpx.get(f"{url}/api/jobs/", timeout=10).status_code == 401
    bad = {"Authorization": "Bearer " + "0" * 64}
    assert httpx.get(f"{url}/api/jobs/", headers=bad, timeout=10).status_code == 403  # a wrong token
    with pytest.raises(ClusterError) as caught:
        client(url, headers=bad)
    assert "token" in (caught.value.fix or "")
    _, job_client = project_client(env.cfg)  # the project's token gets in
    assert isinstance(job_client.list_jobs(), list)


def test_only_allow_listed_entrypoints_run(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    _, job_client = project_client(env.cfg)
    before = len(job_client.list_jobs())
    for name in ("bash", "train; rm -rf /", "python"):
        code, text = _run(capsys, "job", "submit", env.config, name)
        assert code == 2 and "is not a raylane job entrypoint" in text
    assert len(job_client.list_jobs()) == before  # nothing reached the cluster


@pytest.mark.slow
def test_a_declared_project_job_runs_and_writes_its_file(env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    """configs/churn.yaml's `jobs.label_report` reads the offline tables on the cluster and writes JSON."""
    import json

    out = env.cfg.storage_root / "reports" / "label_balance.json"
    out.unlink(missing_ok=True)
    code, text = _run(capsys, "job", "submit", env.config, "label_report", "--wait", "--job-id", "raylane-report-1")
    assert code == 0, text
    assert "label_report:" in text and "SUCCEEDED" in text, text  # the script's own log line, streamed
    report = json.loads(out.read_text())
    labels = pd.read_csv(env.cfg.data.source("labels").path)
    assert 0 < report["rows"] <= len(labels) and 0 < report["positive_rate"] < 1
    _, job_client = project_client(env.cfg)
    info = job_client.get_job_info("raylane-report-1")
    assert info.entrypoint.startswith("python label_report.py raylane-config.json --out")


def _train_worker_nodes(env: Env, job_id: str) -> set[str]:
    """The nodes the Ray Train workers of a job ran on, from the cluster's state API."""
    from raylane.cluster import auth_headers

    r = httpx.get(
        f"{env.cluster.dashboard_url}/api/v0/actors",
        params={"limit": 1000, "detail": "true"},
        headers=auth_headers(env.cfg),
        timeout=30,
    )
    r.raise_for_status()
    actors = r.json()["data"]["result"]["result"]
    job_hex = httpx.get(
        f"{env.cluster.dashboard_url}/api/jobs/{job_id}", headers=auth_headers(env.cfg), timeout=10
    ).json()["job_id"]
    return {a["node_id"] for a in actors if a["class_name"] == "RayTrainWorker" and a["job_id"] == job_hex}


@pytest.mark.slow
def test_two_worker_training_spans_two_nodes_and_a_sweep_completes(
    env: Env, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, text = _run(
        capsys,
        "job",
        "submit",
        env.config,
        "train",
        "--set",
        "train.num_workers=2",
        "--wait",
        "--job-id",
        "raylane-train-2nodes",
    )
    assert code == 0, text[-3000:]
    assert len(_train_worker_nodes(env, "raylane-train-2nodes")) == 2
    code, text = _run(
        capsys,
        "job",
        "submit",
        env.config,
        "sweep",
        "--set",
        "tune.num_samples=2",
        "--set",
        "tune.max_concurrent_trials=2",
        "--set",
        "tune.scheduler.max_t=2",
        "--wait",
        "--job-id",
        "raylane-sweep-2nodes",
    )
    assert code == 0, text[-3000:]
    assert "raylane-sweep-2nodes: SUCCEEDED" in text
    # batch scores of every customer with the champion, as the allow-listed `predict` job
    out = tmp_path / "scores"
    args = ["--entities", "all", "--out", str(out), "--set", "batch.concurrency=1", "--set", "batch.num_cpus=0.5"]
    submit = ["job", "submit", env.config, "predict", "--wait", "--job-id", "raylane-predict"]
    code, text = _run(capsys, *submit, "--", *args)
    assert code == 0, text[-3000:]
    assert "raylane-predict: SUCCEEDED" in text
    customers = pd.read_parquet(env.cfg.data.source("profiles").path)["customer_id"].nunique()
    assert len(pd.read_parquet(out)) >= customers
