"""Online inference on Ray Serve: real Serve, Feast online store, MLflow registry and HTTP.

One deployment (2 replicas, API key on) serves every test of the module; the slow tests put it
under bounded load while the champion moves, a replica dies, or the autoscaler works."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from raylane.config import ProjectConfig
from raylane.features import FeatureRepo
from raylane.inference_log import read as read_log
from raylane.ingest import ingest
from raylane.registry import Registry
from raylane.serving import Client, deploy, read_record, undeploy
from raylane.serving.load import run_load
from raylane.testing import example_config_path, example_project, free_port, listening_sockets
from raylane.training import train

KEY = "test-key-0123456789"
KEY_ENV = "RAYLANE_TEST_SERVE_KEY"


@dataclass
class Served:
    cfg: ProjectConfig
    url: str
    keys: list[int]

    def post(self, path: str = "/predict", *, key: str | None = KEY, **kw: Any) -> httpx.Response:
        headers = {**({"X-API-Key": key} if key else {}), **kw.pop("headers", {})}
        return httpx.post(self.url + path, headers=headers, timeout=30, **kw)


@pytest.fixture(scope="module")
def served(ray_runtime: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    os.environ[KEY_ENV] = KEY
    cfg = example_project(
        tmp_path_factory.mktemp("serve"),
        overrides=[
            "train.epochs=3",
            "train.batch_size=128",
            "registry.promotion.floor=null",
            f"serve.port={free_port()}",
            f"serve.auth.api_key_env={KEY_ENV}",
            "serve.resources.num_cpus=0.25",
            "serve.autoscaling.min_replicas=2",
            "serve.autoscaling.max_replicas=3",
            "serve.autoscaling.target_ongoing_requests=2",
            "serve.autoscaling.upscale_delay_s=1",
            "serve.autoscaling.downscale_delay_s=4",
            "serve.autoscaling.look_back_period_s=5",
            "serve.model_poll_s=0.5",
            # nothing to shadow while challenger is the champion; the rollout tests register one
            "serve.rollout.mode=shadow",
            "serve.rollout.steps=[10, 50]",
            "serve.rollout.min_predictions=30",
            "serve.rollout.min_labels=30",
            "serve.rollout.margin=0.05",
            "serve.rollout.resamples=200",
            "serve.inference_log.flush_seconds=0.5",
            "monitor.flush_seconds=0.5",
            "monitor.flush_rows=50",
            "monitor.window_rows=100000",
            # a drifted batch window must not start a retrain: its Ray Train run would hold a CPU
            # (and its workers' sockets) through the rest of the module
            "monitor.triggers.drifted_features=null",
        ],
    )
    ingest(cfg)
    repo = FeatureRepo(cfg)
    repo.apply()
    repo.materialize()
    assert train(cfg).promoted
    record = deploy(cfg)
    keys = pd.read_parquet(cfg.data.source("profiles").path)["customer_id"].drop_duplicates().head(40).tolist()
    try:
        yield Served(cfg, record.url, [int(k) for k in keys])
    finally:
        if read_record(cfg) is not None:  # the last test shuts it down through the CLI
            undeploy(cfg)
        os.environ.pop(KEY_ENV, None)


def _offline(cfg: ProjectConfig, version: str, keys: list[int], **override: Any) -> np.ndarray:
    """The same model version on the same online features, outside Serve."""
    looked = FeatureRepo(cfg).online().get(keys)
    frame = pd.DataFrame({f: looked[f] for f in cfg.feature_dtypes()}, dtype=object)
    for name, value in override.items():
        frame[name] = value
    return Registry(cfg).load_bundle(version).predict(frame)


def _replicas() -> dict[str, int]:
    """Alive replica actors of the Predictor deployment: actor id → pid."""
    from ray.util.state import list_actors

    actors = list_actors(filters=[("state", "=", "ALIVE")], limit=1000)
    return {a.actor_id: a.pid for a in actors if "Predictor" in (a.class_name or "")}


def test_http_predictions_equal_offline_predictions(served: Served) -> None:
    keys = served.keys[:25]
    r = served.post(json={"entities": [{"customer_id": k} for k in keys]})
    assert r.status_code == 200, r.text
    answer = r.json()
    version = answer["model"]["version"]
    assert answer["model"]["name"] == served.cfg.model_name and len(answer["request_id"]) == 32
    got = np.array([p["prediction"] for p in answer["predictions"]])
    assert [p["customer_id"] for p in answer["predictions"]] == keys
    np.testing.assert_allclose(got, _offline(served.cfg, version, keys), rtol=1e-5, atol=1e-6)
    # one entity, with a request-time feature overriding the online store's value
    one = served.post(json={"customer_id": keys[0], "support_tickets_30d": 9}).json()
    expected = _offline(served.cfg, one["model"]["version"], keys[:1], support_tickets_30d=9)
    assert one["predictions"][0]["prediction"] == pytest.approx(float(expected[0]), rel=1e-5, abs=1e-6)


def test_batch_predictions_with_online_features_equal_http_predictions(served: Served, tmp_path: Any) -> None:
    """`raylane predict --features online` answers what `/predict` answers, request-time values included."""
    from raylane.batch import predict

    keys = served.keys[:30]
    given = [9 if i % 3 == 0 else None for i in range(len(keys))]  # a request-time value for some rows
    pd.DataFrame({"customer_id": keys, "support_tickets_30d": pd.array(given, dtype="Int64")}).to_parquet(
        tmp_path / "keys.parquet"
    )
    report = predict(served.cfg, entities=str(tmp_path / "keys.parquet"), out=tmp_path / "scores", features="online")
    got = pd.read_parquet(tmp_path / "scores")
    pairs = zip(keys, given, strict=True)
    entities = [{"customer_id": k, **({} if g is None else {"support_tickets_30d": g})} for k, g in pairs]
    answer = served.post(json={"entities": entities}).json()
    assert answer["model"]["version"] == report.model_version
    assert got["customer_id"].tolist() == keys
    http = np.array([p["prediction"] for p in answer["predictions"]])
    np.testing.assert_allclose(got["prediction"].to_numpy(), http, rtol=1e-5, atol=1e-6)


def test_a_batch_run_is_a_monitor_window_and_a_drifted_batch_shows_its_drift(
    served: Served, tmp_path: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from raylane.batch import predict
    from raylane.cli import main
    from raylane.monitoring.store import MonitorStore

    cfg = served.cfg
    keys = (served.keys * 10)[:400]
    pd.DataFrame({"customer_id": keys, "support_tickets_30d": [40] * len(keys)}).to_parquet(tmp_path / "odd.parquet")
    report = predict(cfg, entities=str(tmp_path / "odd.parquet"), out=tmp_path / "odd", features="online")
    assert report.monitor_window is not None
    window = MonitorStore(cfg).window(report.monitor_window)
    assert window is not None and window.source == "batch" and window.rows == len(keys)
    assert window.batch is not None and window.batch["run_id"] == report.run_id
    assert "support_tickets_30d" in window.drifted_features
    assert window.authenticated_share == 1.0  # a batch run is submitted with the cluster's token
    monkeypatch.setenv("CHURN_DATA", str(cfg.data.sources[0].path.parent))
    monkeypatch.setenv("RAYLANE_STORAGE", str(cfg.storage_root))
    capsys.readouterr()
    assert main(["monitor", "status", str(example_config_path())]) == 0
    shown = capsys.readouterr().out
    rows = [line for line in shown.splitlines() if line.startswith(f"│ {report.monitor_window} ")]
    assert rows and " batch " in rows[0], shown


BAD_INPUTS = [
    ("unknown entity", {"json": {"customer_id": 987654321}}, 404, "customer_id 987654321"),
    ("missing key", {"json": {"plan": "basic"}}, 422, "customer_id: required"),
    ("extra field", {"json": {"customer_id": 1010, "colour": "red"}}, 422, "colour: unknown field"),
    ("wrong type", {"json": {"customer_id": 1010, "tenure_months": "ten"}}, 422, "tenure_months"),
    ("string key", {"json": {"customer_id": "1010"}}, 422, "customer_id"),
    (
        "NaN",
        {"content": b'{"customer_id": 1010, "monthly_charges": NaN}'},
        422,
        "monthly_charges: Input should be a finite number",
    ),
    ("inf", {"content": b'{"customer_id": 1010, "monthly_charges": Infinity}'}, 422, "monthly_charges"),
    ("empty batch", {"json": {"entities": []}}, 422, "entities: List should have at least 1 item"),
    ("over the limit", {"json": {"entities": [{"customer_id": 1010}] * 257}}, 422, "serve.max_entities_per_request"),
    (
        "bad entity in a batch",
        {"json": {"entities": [{"customer_id": 1010}, {"customer_id": 1.5}]}},
        422,
        "entities[1].customer_id",
    ),
    ("10 MB body", {"content": b" " * (10 << 20)}, 413, "serve.max_body_bytes"),
    ("invalid JSON", {"content": b'{"customer_id": 10'}, 400, "not valid JSON"),
    (
        "wrong content type",
        {"content": b"customer_id=1010", "headers": {"content-type": "application/x-www-form-urlencoded"}},
        415,
        "application/json",
    ),
    ("non-UTF-8", {"content": b'{"customer_id": "\xff\xfe"}'}, 400, "not UTF-8"),
    ("empty body", {"content": b""}, 400, "empty"),
    ("lone surrogate", {"content": b'{"customer_id": 1010, "plan": "\\ud800"}'}, 400, "not valid JSON"),
    ("key above int64", {"json": {"customer_id": 2**63}}, 422, "customer_id: 9223372036854775808 is out of range"),
    ("key below int64", {"json": {"customer_id": -(2**63) - 1}}, 422, "customer_id: -9223372036854775809 is out"),
    (
        "key above int64 in a batch",
        {"json": {"entities": [{"customer_id": 1010}, {"customer_id": 10**30}]}},
        422,
        "entities[1].customer_id",
    ),
    ("integer feature above int64", {"json": {"customer_id": 1010, "tenure_months": 10**20}}, 422, "tenure_months"),
    ("integer feature as 1e20", {"content": b'{"customer_id": 1010, "tenure_months": 1e20}'}, 422, "tenure_months"),
    ("float over float32", {"content": b'{"customer_id": 1010, "monthly_charges": 1e308}'}, 422, "float32"),
    ("float under float32", {"content": b'{"customer_id": 1010, "monthly_charges": -1e39}'}, 422, "monthly_charges"),
    ("bool key", {"json": {"customer_id": True}}, 422, "customer_id"),
    ("null key", {"json": {"customer_id": None}}, 422, "customer_id"),
    ("array body", {"json": [1010, 1011]}, 422, "Input should be an object"),
    ("deep nesting", {"content": b'{"customer_id": ' + b"[" * 5000 + b"]" * 5000 + b"}"}, 400, "JSON"),
    ("GET /predict", {"method": "GET"}, 405, "Method Not Allowed"),
    ("feedback: label 999", {"path": "/feedback", "label": 999}, 422, "0 or 1"),
    ("feedback: label -7", {"path": "/feedback", "label": -7}, 422, "label"),
    ("feedback: label 0.5", {"path": "/feedback", "label": 0.5}, 422, "label"),
    ("feedback: label as text", {"path": "/feedback", "label": "yes"}, 422, "label"),
    ("feedback: no label", {"path": "/feedback", "label": None}, 422, "label"),
    ("feedback: id never issued", {"path": "/feedback", "request_id": "a" * 32}, 404, "not issued by this service"),
    ("feedback: malformed id", {"path": "/feedback", "request_id": "nope"}, 422, "request_id"),
    ("feedback: key above int64", {"path": "/feedback", "customer_id": 2**64}, 422, "customer_id"),
    ("feedback: extra field", {"path": "/feedback", "score": 3}, 422, "score: unknown field"),
]


def _send_bad(served: Served, case: dict[str, Any], issued: str) -> httpx.Response:
    kw = dict(case)
    if kw.get("path") == "/feedback":  # a valid feedback body with one field changed
        path = kw.pop("path")
        body = {"request_id": issued, "label": 1, **kw}
        return served.post(path, json={k: v for k, v in body.items() if v is not None})
    if kw.pop("method", "POST") == "GET":
        return httpx.get(served.url + "/predict", headers={"X-API-Key": KEY}, timeout=30)
    headers = {"content-type": "application/json", **kw.pop("headers", {})} if "content" in kw else {}
    return served.post(headers=headers, **kw)


def test_deploy_waits_out_a_serve_proxy_killed_while_it_waits_for_the_application(served: Served) -> None:
    import ray
    from ray import serve

    cfg = served.cfg.model_copy(deep=True)
    cfg.serve.route_prefix = "/proxykill"
    cfg.serve.autoscaling.min_replicas = 1
    killed: list[str] = []

    def kill_the_proxy_once_the_app_deploys() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and "proxykill" not in serve.status().applications:
            time.sleep(0.05)
        for actor in ray.util.list_named_actors(all_namespaces=True):
            if actor["name"].startswith("SERVE_PROXY_ACTOR"):
                ray.kill(ray.get_actor(actor["name"], namespace=actor["namespace"]))
                killed.append(actor["name"])

    killer = threading.Thread(target=kill_the_proxy_once_the_app_deploys)
    killer.start()
    try:
        record = deploy(cfg, name="proxykill")
        killer.join(timeout=120)
        assert killed, "the proxy was never killed"
        assert record.model_version
        # deploy returned with every proxy healthy again: both applications answer
        for prefix in ("", "/proxykill"):
            r = served.post(f"{prefix}/predict", json={"entities": [{"customer_id": served.keys[0]}]})
            assert r.status_code == 200, (prefix, r.text)
    finally:
        killer.join(timeout=120)
        undeploy(cfg, name="proxykill")


def _profiled_rows(cfg: ProjectConfig) -> int:
    """The rows the project's monitor has counted: its closed windows and its open one."""
    import ray

    from raylane.monitoring import monitor_handle, read_windows

    open_rows = ray.get(monitor_handle(cfg).status.remote(), timeout=60)["open_window"]["rows"]
    return sum(w["rows"] for w in read_windows(cfg)) + int(open_rows)


def _settled(count: Any, timeout_s: float = 60) -> int:
    """``count()`` once it stopped moving for 3 s (the replicas flush every 0.5 s)."""
    deadline = time.monotonic() + timeout_s
    last, since = count(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = count()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= 3:
            return int(last)
    return int(last)


def test_bad_input_gets_a_4xx_naming_the_problem_and_no_replica_dies(served: Served) -> None:
    before = _replicas()
    assert len(before) >= 2 and len(BAD_INPUTS) >= 30
    profiled, logged = _settled(lambda: _profiled_rows(served.cfg)), _settled(lambda: len(read_log(served.cfg)))
    issued = served.post(json={"customer_id": served.keys[0]}).json()["request_id"]
    for name, case, status, words in BAD_INPUTS:
        r = _send_bad(served, case, issued)
        assert r.status_code == status, (name, r.status_code, r.text[:300])
        assert words in r.json()["detail"], (name, r.json()["detail"][:300])
    # the replicas are the same processes; good input still works
    assert set(before.items()) <= set(_replicas().items())
    assert served.post(json={"customer_id": served.keys[0]}).status_code == 200
    # a refused request is neither logged nor profiled: its junk never counts as drift
    assert _settled(lambda: len(read_log(served.cfg))) - logged == 2
    assert _settled(lambda: _profiled_rows(served.cfg)) - profiled == 2


def test_one_bad_request_never_fails_its_concurrent_neighbours(served: Served) -> None:
    """5 rounds of 1 bad (an entity key above int64) + 15 valid requests sent at once: the bad one
    is refused, every valid one is answered."""
    from concurrent.futures import ThreadPoolExecutor

    bodies: list[dict[str, Any]] = [{"customer_id": 2**63 + 5}] + [{"customer_id": k} for k in served.keys[:15]]
    with ThreadPoolExecutor(len(bodies)) as pool:
        for _ in range(5):
            answers = list(pool.map(lambda b: served.post(json=b), bodies))
            assert answers[0].status_code == 422, answers[0].text
            assert [r.status_code for r in answers[1:]] == [200] * 15, [r.text[:200] for r in answers[1:]]


FRAGILE = """
import torch
from torch import nn


class Fragile(nn.Module):
    \"\"\"A linear model whose code raises on inputs far outside the training range.\"\"\"

    def __init__(self, inputs, *, limit: float = 1000.0):
        super().__init__()
        self.limit = limit
        self.linear = nn.Linear(inputs.num_width, inputs.out_dim)

    def forward(self, batch):
        if (batch["x_num"].abs() > self.limit).any():
            raise RuntimeError("an input is outside what this model handles")
        return self.linear(batch["x_num"])
"""


def _metric(name: str, **labels: str) -> float:
    """The value of a Ray metric (summed over its series with these labels), from the head node's
    Prometheus endpoint."""
    import ray

    port = next(n["MetricsExportPort"] for n in ray.nodes() if n["Alive"])
    total = 0.0
    for line in httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text.splitlines():
        series, _, value = line.rpartition(" ")
        if series.split("{")[0].endswith(name) and all(f'{k}="{v}"' in series for k, v in labels.items()):
            total += float(value)
    return total


def test_a_model_that_raises_on_one_entity_fails_that_request_alone(served: Served, tmp_path: Any) -> None:
    """A champion whose own code raises on some inputs: in 5 rounds of 16 concurrent requests
    (batched together by the replicas), the one it cannot score gets a 500 naming the model's
    failure, its 15 neighbours are answered, and each failure is in the inference log's failures
    and in ``raylane_scoring_failures_total`` (reason ``model_error``)."""
    from concurrent.futures import ThreadPoolExecutor
    from datetime import UTC, datetime

    import mlflow

    from raylane.bundle import ModelBundle
    from raylane.inference_log import read_failures
    from raylane.model_code import ModelCode
    from raylane.training.tracking import ensure_experiment, log_model

    cfg = served.cfg
    reg = Registry(cfg)
    old, aliases = reg.champion(), reg.aliases()
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "fragile.py").write_text(FRAGILE)
    base = reg.load_bundle(str(old.version))
    code = ModelCode.capture("models/fragile.py:Fragile", tmp_path)
    bundle = ModelBundle.create(base.model_cfg, base.pre, base.features, {"limit": 1000.0}, code)
    ensure_experiment(cfg)
    with mlflow.start_run(run_name="fragile") as run:
        uri = log_model(bundle, FeatureRepo(cfg).training_set(), bundle.features, cfg.feature_specs())
    fragile = reg.register(uri, run.info.run_id, {**old.tags, "parent_version": str(old.version)})
    reg.promote(fragile, "a model whose code raises on far-out inputs")
    try:
        _wait_for(lambda: _every_replica(served, lambda v, _: v == fragile), 60, "every replica on the fragile model")
        since = datetime.now(UTC)
        bad = {"customer_id": served.keys[0], "tenure_months": 10**12}  # valid, but ~1e11 σ out
        bodies: list[dict[str, Any]] = [bad] + [{"customer_id": k} for k in served.keys[1:16]]
        with ThreadPoolExecutor(len(bodies)) as pool:
            for _ in range(5):
                answers = list(pool.map(lambda b: served.post(json=b), bodies))
                assert answers[0].status_code == 500, answers[0].text
                assert "the model could not score this entity (RuntimeError)" in answers[0].json()["detail"]
                assert [r.status_code for r in answers[1:]] == [200] * 15, [r.text[:200] for r in answers[1:]]
                assert {r.json()["model"]["version"] for r in answers[1:]} == {fragile}

        def failed() -> pd.DataFrame | None:
            f = read_failures(cfg, since=since)
            f = f[(f["ts"] >= since) & (f["model_version"].astype(str) == fragile)]
            return f if len(f) >= 5 else None

        logged = _wait_for(failed, 30, "the failures in the inference log")
        assert len(logged) == 5 and set(logged["reason"]) == {"model_error"}
        assert set(logged["customer_id"]) == {served.keys[0]}
        _wait_for(
            lambda: _metric("raylane_scoring_failures_total", reason="model_error", version=fragile) == 5,
            60,
            "raylane_scoring_failures_total to count the 5 failures",
        )
    finally:
        reg.promote(str(old.version), "the fragile model's test is over")
        if "challenger" in aliases:
            reg.client.set_registered_model_alias(reg.name, "challenger", aliases["challenger"])
        _wait_for(lambda: _every_replica(served, lambda v, _: v == str(old.version)), 60, "the champion back")


def test_every_listening_socket_of_the_stack_is_on_loopback(served: Served) -> None:
    """Embedded Ray (GCS, raylet, agents, dashboard, metrics), Serve's proxy, the replicas and the
    monitor: what docs/security.md promises, observed. A new non-loopback listener fails here."""
    httpx.get(served.url + "/healthz")  # everything is up and has answered
    sockets = listening_sockets()
    assert len(sockets) >= 8, sockets  # GCS, raylets, agents, dashboard, the proxy, ...
    # The one exception Ray 2.60 leaves no way around (docs/security.md): each Serve replica's
    # inter-deployment gRPC server, bound to "[::]:0" in ray/serve/_private/replica.py.
    exposed = [
        s
        for s in sockets
        if s[0] not in ("127.0.0.1", "::1") and not (s[0] == "::" and s[2].startswith("ray::ServeReplica:"))
    ]
    assert not exposed, exposed
    assert any(port == served.cfg.serve.port for _, port, _ in sockets)


def test_healthz_reports_a_stuck_log_writer_and_its_rows_wait_for_the_disk(served: Served) -> None:
    """The predictions folder replaced by a file (a disk the writer cannot use, even as root):
    /healthz says `degraded` and why, the answers keep coming, and once the folder is back the
    buffered rows are written: none lost."""
    from raylane.inference_log import log_dir

    health = httpx.get(served.url + "/healthz").json()
    assert health["status"] == "ok" and health["inference_log"]["stuck"] is False
    assert health["inference_log"]["rows_rejected"] == 0
    folder = log_dir(served.cfg) / "predictions"
    aside = folder.with_name("predictions.aside")
    folder.parent.mkdir(parents=True, exist_ok=True)
    if folder.exists():
        folder.rename(aside)
    folder.write_text("")
    answered: list[str] = []
    degraded: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + 60
        while not degraded and time.monotonic() < deadline:  # each replica flushes every 0.5 s
            r = served.post(json={"customer_id": served.keys[len(answered) % len(served.keys)]})
            assert r.status_code == 200, r.text
            answered.append(r.json()["request_id"])
            h = httpx.get(served.url + "/healthz").json()
            degraded = h if h["status"] == "degraded" else {}
            time.sleep(0.2)
        assert degraded, "no replica reported its stuck writer within 60 s"
        errors = degraded["inference_log"]["errors"]
        assert degraded["inference_log"]["stuck"] and list(errors) == ["predictions"], degraded
        assert "Error" in errors["predictions"]["error"] and errors["predictions"]["failing_since"]
        assert degraded["log_rows_pending"] > 0
    finally:
        folder.unlink()
        if aside.exists():
            aside.rename(folder)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        states = {httpx.get(served.url + "/healthz").json()["status"] for _ in range(6)}
        if states == {"ok"} and set(answered) <= set(read_log(served.cfg)["request_id"]):
            break
        time.sleep(0.5)
    assert states == {"ok"}, states
    assert set(answered) <= set(read_log(served.cfg)["request_id"])  # the buffered rows were written


def test_api_key(served: Served) -> None:
    body = {"customer_id": served.keys[0]}
    assert served.post(json=body, key=None).status_code == 401
    assert served.post(json=body, key="wrong-key").status_code == 403
    assert served.post(json=body, headers={"Authorization": f"Bearer {KEY}"}, key=None).status_code == 200
    assert served.post(json=body).status_code == 200
    fb = served.post("/feedback", json={"request_id": "0" * 32, "label": 1}, key=None)
    assert fb.status_code == 401
    assert httpx.get(served.url + "/healthz").status_code == 200  # liveness needs no key


def test_metadata_and_openapi(served: Served) -> None:
    cfg = served.cfg
    meta = httpx.get(served.url + "/metadata").json()
    champion = Registry(cfg).champion()
    assert meta["model"]["version"] == str(champion.version) and meta["model"]["alias"] == "champion"
    assert meta["lineage"]["data_hash"] == champion.tags["data_hash"]
    assert [f["name"] for f in meta["features"]] == list(cfg.feature_dtypes())
    spec = httpx.get(served.url + "/openapi.json").json()
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    entity = body["oneOf"][0]
    assert entity["required"] == ["customer_id"] and "tenure_months" in entity["properties"]
    assert httpx.get(served.url + "/docs").status_code == 200


def _register_variant(cfg: ProjectConfig, scale: float) -> str:
    """A new version that predicts differently (the champion's weights scaled), logged as a model
    of its own and registered as challenger, not promoted."""
    import mlflow
    import torch

    from raylane.training.tracking import ensure_experiment, log_model

    reg = Registry(cfg)
    champion = reg.champion()
    bundle = reg.load_bundle(str(champion.version))
    with torch.no_grad():
        for weight in bundle.model.parameters():
            weight.mul_(scale)
    ensure_experiment(cfg)
    with mlflow.start_run(run_name="shadow-variant") as run:
        uri = log_model(bundle, FeatureRepo(cfg).training_set(), bundle.features, cfg.feature_specs())
    return reg.register(uri, run.info.run_id, {**champion.tags, "parent_version": str(champion.version)})


def _rollout(served: Served) -> dict[str, Any]:
    return dict(httpx.get(served.url + "/metadata", timeout=30).json()["rollout"])


def _every_replica(served: Served, check: Any) -> bool:
    """Whether ``check(model_version, active_rollout)`` holds on every running replica: /metadata
    is asked until each of them answered (the router picks one per call), and is False as soon as
    one answer fails it."""
    from ray import serve

    states = serve.status().applications[served.cfg.project].deployments["Predictor"].replica_states
    running, seen = int(states.get("RUNNING", 0)), set()
    for _ in range(20 * max(running, 1)):
        m = httpx.get(served.url + "/metadata", timeout=30).json()
        if not check(m["model"]["version"], m["rollout"]["active"] or {}):
            return False
        seen.add(m["replica"])
        if len(seen) >= running:
            return True
    return False


def _wait_for(predicate: Any, timeout_s: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if isinstance(value, pd.DataFrame) or value:  # a frame is returned once it is the one waited for
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def test_shadow_rollout_answers_with_the_champion_and_logs_the_challenger(
    served: Served, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """serve.rollout.mode: shadow. The challenger scores every answered request's features off the
    response path; answers are the champion's alone; the shadow log holds the challenger's own
    predictions under the same request ids. A challenger that passes the gate is held, not promoted."""
    cfg = served.cfg
    reg = Registry(cfg)
    champion = str(reg.champion().version)
    assert _rollout(served)["active"] is None  # challenger == champion: nothing to shadow
    challenger = _register_variant(cfg, 0.5)
    assert reg.start_rollout(challenger, "shadow").percent == 0
    # every replica follows the registry (both must shadow before the requests count)
    _wait_for(
        lambda: _every_replica(served, lambda _, active: active.get("challenger") == challenger),
        60,
        "every replica to shadow the challenger",
    )
    assert _rollout(served)["active"]["mode"] == "shadow"
    keys = served.keys[:20]
    answers = [served.post(json={"customer_id": k}).json() for k in keys]
    assert {a["model"]["version"] for a in answers} == {champion}
    served_pred = np.array([a["predictions"][0]["prediction"] for a in answers])
    np.testing.assert_allclose(served_pred, _offline(cfg, champion, keys), rtol=1e-5, atol=1e-6)
    ids = [a["request_id"] for a in answers]
    shadow = _wait_for(
        lambda: (log := read_log(cfg, "shadow"))[log["request_id"].isin(ids)].pipe(
            lambda f: f if len(f) == 20 else None
        ),
        30,
        "the challenger's predictions in the shadow log",
    )
    assert set(shadow["model_version"]) == {challenger}
    shadow = shadow.set_index("request_id").loc[ids]
    assert shadow["customer_id"].tolist() == keys
    own = _offline(cfg, challenger, keys)
    np.testing.assert_allclose(shadow["prediction"].to_numpy(), own, rtol=1e-5, atol=1e-6)
    assert not np.allclose(own, served_pred, atol=1e-3)  # a different model, really compared
    served_log = read_log(cfg)
    assert set(served_log[served_log["request_id"].isin(ids)]["model_version"]) == {champion}
    # the gate in shadow mode: a challenger that passes stays challenger, with the way out in its reason
    holdout = FeatureRepo(cfg).training_set().to_pandas()
    perfect = {"roc_auc": 1.0, "accuracy": 1.0, "log_loss": 0.0}  # beats any champion
    decision = reg.gate_and_promote(challenger, holdout, perfect, rollout=True)
    assert decision.passed and decision.held and not decision.promoted
    assert "held for the shadow rollout: end it with `raylane rollout promote|abort CONFIG`" in decision.reason
    assert str(reg.champion().version) == champion and reg.aliases()["challenger"] == challenger
    assert reg.version(challenger).tags["rollout"] == "shadow"
    # `raylane rollout status|abort`: challenger back on the champion, shadowing stops
    from raylane.cli import main

    monkeypatch.setenv("CHURN_DATA", str(cfg.data.sources[0].path.parent))
    monkeypatch.setenv("RAYLANE_STORAGE", str(cfg.storage_root))
    args = [str(example_config_path()), "--set", "serve.rollout.mode=shadow"]
    capsys.readouterr()
    assert main(["rollout", "status", *args]) == 0
    assert f"shadow rollout of v{challenger} beside champion v{champion}" in capsys.readouterr().out
    assert main(["rollout", "abort", *args, "--reason", "test over"]) == 0
    assert f"rollout of version {challenger} aborted; champion stays version {champion}" in capsys.readouterr().out
    assert reg.current_rollout() is None and reg.version(challenger).tags["rollout"] == "aborted"
    assert reg.rollout() == (champion, challenger)  # it keeps its alias
    _wait_for(lambda: _every_replica(served, lambda _, active: not active), 30, "shadowing to stop")
    assert main(["rollout", "abort", *args, "--reason", "again"]) == 2  # nothing left to abort
    assert "no rollout to abort" in capsys.readouterr().err


def _entities(cfg: ProjectConfig, n: int, first_key: int) -> list[dict[str, Any]]:
    """``n`` request bodies for new entities (keys from ``first_key``), each with every feature
    given (so none needs the online store), drawn from the training set's rows."""
    names = cfg.feature_dtypes()
    rows = FeatureRepo(cfg).training_set().to_pandas()[list(names)].dropna()
    picked = rows.sample(n, replace=len(rows) < n, random_state=first_key).to_dict("records")
    cast = {"int64": int, "float64": float, "bool": bool, "string": str}
    return [
        {"customer_id": first_key + i, **{f: cast[names[f]](v) for f, v in r.items()}} for i, r in enumerate(picked)
    ]


def _labels_ranked_by(cfg: ProjectConfig, version: str, bodies: list[dict[str, Any]]) -> dict[int, int]:
    """Labels that ``version`` ranks perfectly: 1 where its prediction is above its median."""
    frame = pd.DataFrame([{f: b[f] for f in cfg.feature_dtypes()} for b in bodies], dtype=object)
    pred = Registry(cfg).load_bundle(version).predict(frame)
    return {b["customer_id"]: int(p > np.median(pred)) for b, p in zip(bodies, pred, strict=True)}


def _send(served: Served, bodies: list[dict[str, Any]], labels: dict[int, int] | None = None) -> list[dict[str, Any]]:
    """POST each body (8 at a time); with ``labels``, each answer's label to /feedback. Every
    request must succeed; returns the answers in order."""
    from concurrent.futures import ThreadPoolExecutor

    with httpx.Client(headers={"X-API-Key": KEY}, timeout=60) as client, ThreadPoolExecutor(8) as pool:

        def one(body: dict[str, Any]) -> dict[str, Any]:
            r = client.post(served.url + "/predict", json=body)
            assert r.status_code == 200, r.text
            answer = dict(r.json())
            if labels is not None:
                fb = {"request_id": answer["request_id"], "label": labels[body["customer_id"]]}
                assert client.post(served.url + "/feedback", json=fb).status_code == 202
            return answer

        return list(pool.map(one, bodies))


def _rollout_decisions(cfg: ProjectConfig, version: str) -> list[dict[str, Any]]:
    from raylane.monitoring import read_decisions

    return [d for d in read_decisions(cfg) if d.get("action") == "rollout" and d.get("version") == version]


def test_canary_split_is_on_target_and_sticky_and_an_abort_returns_all_traffic_fast(
    served: Served, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """serve.rollout.mode: canary at its first step (10 %): over 2,000 requests (1,000 entities,
    each twice) the challenger answers 10 ± 3 % of them, always the same entities, each answer
    names its one version; no labels come back, so the monitor waits. `raylane rollout abort`
    returns all traffic to the champion within serve.model_poll_s + 5 s."""
    from raylane.cli import main
    from raylane.serving.rollout import bucket

    cfg = served.cfg
    reg = Registry(cfg)
    champion = str(reg.champion().version)
    challenger = _register_variant(cfg, -1.0)
    assert reg.start_rollout(challenger, "canary").percent == 10
    _wait_for(
        lambda: _every_replica(served, lambda _, active: active.get("challenger") == challenger),
        60,
        "every replica to follow the canary",
    )
    bodies = _entities(cfg, 1000, 500_000)
    answers = _send(served, bodies + bodies)  # 2,000 requests: each entity twice
    versions = [a["model"]["version"] for a in answers]
    assert set(versions) == {champion, challenger}
    share = versions.count(challenger) / len(versions) * 100
    with capsys.disabled():
        print(f"canary split at 10 %: {share:.1f} % of {len(versions)} requests")
    assert abs(share - 10) <= 3
    assert versions[:1000] == versions[1000:]  # sticky: each entity saw one model
    assert all((v == challenger) == (bucket(b["customer_id"]) < 10) for v, b in zip(versions, bodies, strict=False))
    assert all(
        a["model"]["alias"] == ("challenger" if a["model"]["version"] == challenger else "champion") for a in answers
    )
    assert reg.current_rollout().step == 0 and not _rollout_decisions(cfg, challenger)  # no labels: no verdict
    in_canary = [b for b in bodies if bucket(b["customer_id"]) < 10][:20]
    monkeypatch.setenv("CHURN_DATA", str(cfg.data.sources[0].path.parent))
    monkeypatch.setenv("RAYLANE_STORAGE", str(cfg.storage_root))
    args = [str(example_config_path()), "--set", "serve.rollout.mode=canary", "--set", "serve.rollout.steps=[10,50]"]
    capsys.readouterr()
    assert main(["rollout", "status", *args]) == 0
    assert f"canary rollout of v{challenger} beside champion v{champion} at step 1 of 2 (10%, 50%)" in (
        capsys.readouterr().out
    )
    assert main(["rollout", "abort", *args, "--reason", "split measured"]) == 0
    aborted = time.monotonic()
    back = _wait_for(
        lambda: time.monotonic() if {a["model"]["version"] for a in _send(served, in_canary)} == {champion} else None,
        30,
        "every canary entity back on the champion",
    )
    with capsys.disabled():
        print(f"abort: all traffic on the champion {back - aborted:.1f} s after `raylane rollout abort`")
    assert back - aborted <= cfg.serve.model_poll_s + 5
    assert str(reg.champion().version) == champion and reg.version(challenger).tags["rollout"] == "aborted"

    def timed() -> pd.DataFrame | None:  # each answer's scoring latency is logged under its version
        logged = read_log(cfg)
        logged = logged[logged["latency_ms"].notna()]
        return logged if {champion, challenger} <= set(logged["model_version"].astype(str)) else None

    assert (_wait_for(timed, 30, "both versions' latencies in the inference log")["latency_ms"] > 0).all()


def _start_canary(served: Served) -> tuple[str, str]:
    """A variant (the champion's weights negated: another ranking) in a canary, once the replicas
    follow it; returns (champion, challenger)."""
    reg = Registry(served.cfg)
    champion, challenger = str(reg.champion().version), _register_variant(served.cfg, -1.0)
    reg.start_rollout(challenger, "canary")
    _wait_for(
        lambda: _every_replica(served, lambda _, active: active.get("challenger") == challenger), 60, "the canary"
    )
    return champion, challenger


def test_canary_of_a_worse_challenger_is_aborted_at_its_first_step(served: Served) -> None:
    """The labels that come back are ranked right by the champion and not by the challenger: the
    monitor aborts the canary at its first step, with its evidence; the champion never moved and
    every request succeeded (during the rollout and after the abort)."""
    cfg = served.cfg
    reg = Registry(cfg)
    champion, worse = _start_canary(served)
    other = _register_variant(cfg, 2.0)  # registered meanwhile (a retrain's, before its gate)
    assert reg.current_rollout().challenger == worse and reg.rollout()[1] == worse, other
    bodies = _entities(cfg, 600, 600_000)
    labels = _labels_ranked_by(cfg, champion, bodies)
    answers = _send(served, bodies, labels)
    assert {a["model"]["version"] for a in answers} == {champion, worse}
    (decision,) = _wait_for(lambda: _rollout_decisions(cfg, worse), 90, "the monitor's verdict")
    assert decision["verdict"] == "abort" and "worse than the champion" in decision["reasons"][0]
    e = decision["evidence"]
    assert e["step"] == 0 and e["labelled"]["challenger"] >= 30 and e["interval"][1] < -0.05
    assert e["values"]["champion"] > e["values"]["challenger"]
    assert str(reg.champion().version) == champion and reg.current_rollout() is None
    assert reg.version(worse).tags["rollout"] == "aborted"
    _wait_for(
        lambda: _every_replica(served, lambda version, active: version == champion and not active),
        30,
        "every replica to drop the canary",
    )
    assert {a["model"]["version"] for a in _send(served, bodies[:100])} == {champion}
    assert reg.version(other).aliases == [] and "rollout" not in reg.version(other).tags


def test_canary_of_a_better_challenger_is_promoted_after_its_steps_across_a_monitor_restart(
    served: Served,
) -> None:
    """The labels are ranked right by the challenger: the monitor advances it to 50 %, is killed
    there (Ray restarts it), continues from the recorded step, and promotes it; one decision per
    step, every answer from exactly one version, no request failed."""
    import ray

    from raylane.monitoring import monitor_handle

    cfg = served.cfg
    reg = Registry(cfg)
    champion, better = _start_canary(served)
    bodies = _entities(cfg, 600, 700_000)
    labels = _labels_ranked_by(cfg, better, bodies)
    first = _send(served, bodies, labels)
    (advanced,) = _wait_for(lambda: _rollout_decisions(cfg, better), 90, "the first step's verdict")
    assert advanced["verdict"] == "advance" and advanced["evidence"]["step"] == 0
    assert reg.current_rollout().step == 1 and reg.current_rollout().percent == 50
    ray.kill(monitor_handle(cfg), no_restart=False)  # mid-rollout: Ray restarts it
    _wait_for(
        lambda: _every_replica(served, lambda _, active: active.get("percent") == 50), 30, "every replica at 50 %"
    )
    second = _send(served, bodies[:200], labels)
    decisions = _wait_for(lambda: d if len(d := _rollout_decisions(cfg, better)) == 2 else None, 120, "promotion")
    assert [d["verdict"] for d in decisions] == ["advance", "promote"] and decisions[1]["evidence"]["step"] == 1
    assert str(reg.champion().version) == better and reg.version(better).tags["rollout"] == "promoted"
    assert reg._history()[-2:] == [champion, better]  # the old champion is the rollback target
    for a in first + second:
        assert a["model"]["version"] in (champion, better) and len(a["predictions"]) == 1
    share = sum(a["model"]["version"] == better for a in second) / len(second)
    assert 0.35 <= share <= 0.65  # about half at the second step
    _wait_for(
        lambda: _every_replica(served, lambda version, active: version == better and not active),
        30,
        "every replica on the promoted champion",
    )
    assert {a["model"]["version"] for a in _send(served, bodies[:50])} == {better}


def test_predictions_and_feedback_land_in_the_inference_log(served: Served) -> None:
    cfg = served.cfg
    keys = served.keys[:3]
    client = Client(cfg)
    many = client.predict([{"customer_id": k} for k in keys])
    one = client.predict([{"customer_id": keys[0]}])
    client.feedback(many["request_id"], 1, customer_id=keys[1])
    client.feedback(one["request_id"], 0)
    bad = served.post("/feedback", json={"request_id": "nope", "label": 1})
    assert bad.status_code == 422 and "request_id" in bad.json()["detail"]
    forged = served.post("/feedback", json={"request_id": many["request_id"][:16] + "0" * 16, "label": 1})
    assert forged.status_code == 404, forged.text
    deadline = time.monotonic() + 20
    log = read_log(cfg)
    while time.monotonic() < deadline:
        log = read_log(cfg)
        ids = set(log["request_id"])
        if {many["request_id"], one["request_id"]} <= ids and log["label"].notna().sum() >= 2:
            break
        time.sleep(0.5)
    rows = log[log["request_id"] == many["request_id"]].set_index("customer_id")
    assert sorted(rows.index) == sorted(keys)
    assert rows.loc[keys[1], "label"] == 1 and pd.isna(rows.loc[keys[0], "label"])
    assert rows["model_version"].iloc[0] == many["model"]["version"]
    predicted = {p["customer_id"]: p["prediction"] for p in many["predictions"]}
    assert rows.loc[keys[2], "prediction"] == pytest.approx(predicted[keys[2]])
    assert rows.loc[keys[2], "tenure_months"] >= 0  # the features the model used are kept
    single = log[log["request_id"] == one["request_id"]]
    assert single["label"].tolist() == [0]


@pytest.mark.slow
def test_model_swap_under_load_drops_nothing(served: Served) -> None:
    """Promote a new version while ≥ 20 requests/s run for 25 s: 0 failures, all on it within 15 s."""
    cfg = served.cfg
    reg = Registry(cfg)
    old = reg.champion()
    # a new version of the model (the same artifact registered again: what matters is the version)
    new = reg.register(old.source, old.run_id, {**old.tags, "parent_version": str(old.version)})
    promoted_at: list[float] = []

    def promote() -> None:
        time.sleep(6)
        promoted_at.append(time.perf_counter())
        reg.promote(new, "swap test")

    keys = served.keys
    started = time.perf_counter()
    t = threading.Thread(target=promote)
    t.start()
    report = run_load(
        served.url + "/predict",
        lambda i: {"customer_id": keys[i % len(keys)]},
        concurrency=4,
        duration_s=25,
        rate=30,
        headers={"X-API-Key": KEY},
    )
    t.join()
    print("swap under load:", report.summary())
    assert report.failed == 0 and report.raw_errors == 0, report.errors
    assert report.sent / report.seconds >= 20
    swap = promoted_at[0] - started
    after = [(at, v) for at, v in report.versions if at > swap + 15]
    assert after and {v for _, v in after} == {new}
    assert {v for at, v in report.versions if at < swap} == {str(old.version)}
    first_new = min(at for at, v in report.versions if v == new)
    print(f"first answer from version {new} {first_new - swap:.1f} s after the promotion")
    assert httpx.get(served.url + "/metadata").json()["model"]["version"] == new


@pytest.mark.slow
def test_a_replica_killed_under_load_costs_no_request_after_one_retry(served: Served) -> None:
    before = _replicas()
    assert len(before) >= 2
    victim = next(iter(before.values()))
    keys = served.keys

    def kill() -> None:
        time.sleep(4)
        os.kill(victim, signal.SIGKILL)

    t = threading.Thread(target=kill)
    t.start()
    report = run_load(
        served.url + "/predict",
        lambda i: {"customer_id": keys[i % len(keys)]},
        concurrency=4,
        duration_s=15,
        rate=30,
        retries=1,
        headers={"X-API-Key": KEY},
    )
    t.join()
    print(f"replica killed under load: {report.summary()}; raw errors {report.raw_errors}: {dict(report.errors)}")
    assert report.failed == 0, report.errors
    assert report.ok > 200
    # Serve replaces the dead replica
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not (len(_replicas()) >= 2 and victim not in _replicas().values()):
        time.sleep(1)
    assert len(_replicas()) >= 2 and victim not in _replicas().values()


@pytest.mark.slow
def test_autoscaling_adds_replicas_under_load_and_removes_them_after(served: Served) -> None:
    from ray import serve

    def replicas() -> int:
        """Replicas the autoscaler wants: running, or starting (a replica takes ~20 s to start here)."""
        app = serve.status().applications[served.cfg.project]
        states = app.deployments["Predictor"].replica_states
        return sum(int(states.get(s, 0)) for s in ("RUNNING", "STARTING", "PENDING_MIGRATION"))

    base = served.cfg.serve.autoscaling.min_replicas
    deadline = time.monotonic() + 60
    while replicas() != base and time.monotonic() < deadline:  # settled after the other tests
        time.sleep(1)
    peak = [replicas()]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            peak.append(replicas())
            time.sleep(0.5)

    w = threading.Thread(target=watch)
    w.start()
    keys = served.keys
    # far above target: 24 requests in flight for 2 replicas that aim at 2 each
    report = run_load(
        served.url + "/predict",
        lambda i: {"entities": [{"customer_id": k} for k in keys]},
        concurrency=24,
        duration_s=25,
        headers={"X-API-Key": KEY},
    )
    stop.set()
    w.join()
    print("autoscaling load:", report.summary(), "replicas seen:", sorted(set(peak)))
    assert report.failed == 0
    assert max(peak) > base
    deadline = time.monotonic() + 90
    while replicas() > base and time.monotonic() < deadline:
        time.sleep(1)
    assert replicas() == base
    # and the surplus replicas are gone (stopping ones keep the deployment DOWNSCALING a while)
    _wait_healthy(served.cfg, timeout_s=max(0.0, deadline - time.monotonic()))


def _wait_healthy(cfg: ProjectConfig, timeout_s: float = 90) -> None:
    """Wait until the Predictor deployment is HEALTHY (done up- or downscaling after earlier load)."""
    from ray import serve

    deadline = time.monotonic() + timeout_s
    deployment = lambda: serve.status().applications[cfg.project].deployments["Predictor"]  # noqa: E731
    while deployment().status != "HEALTHY" and time.monotonic() < deadline:
        time.sleep(1)
    assert deployment().status == "HEALTHY", deployment()


def test_the_monitor_restarts_mid_window_and_counts_every_request_once(served: Served) -> None:
    """`serve deploy` started the project's monitor; replicas send it profiles. Killed mid-window,
    Ray restarts it from its stored state, and the rows it counted equal the requests sent."""
    import ray

    from raylane.monitoring import monitor_handle

    cfg = served.cfg
    handle = monitor_handle(cfg)
    before = _settled(lambda: _profiled_rows(cfg))
    keys = served.keys

    def load(n: int) -> None:
        report = run_load(
            served.url + "/predict",
            lambda i: {"customer_id": keys[i % len(keys)]},
            concurrency=4,
            requests=n,
            headers={"X-API-Key": KEY},
        )
        assert report.ok == n, report.summary()

    load(150)
    ray.kill(handle, no_restart=False)  # mid-window: Ray restarts the actor
    load(150)
    after = _settled(lambda: _profiled_rows(cfg), 90)
    assert after - before == 300
    status = ray.get(handle.status.remote())
    assert status["open_window"]["profiles"] > 0  # the window is still open: nothing was lost with it


def test_cli_status_predict_and_shutdown(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    """Last in the module: `raylane serve status|predict|shutdown` against the running service."""
    from raylane.cli import main

    cfg = served.cfg
    _wait_healthy(cfg)  # the load of earlier tests may have left the autoscaler mid-change
    sets = [a for s in (f"serve.port={cfg.serve.port}", f"serve.auth.api_key_env={KEY_ENV}") for a in ("--set", s)]
    env = {"CHURN_DATA": str(cfg.data.sources[0].path.parent), "RAYLANE_STORAGE": str(cfg.storage_root)}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        config = str(example_config_path())
        assert main(["serve", "status", config, *sets]) == 0
        out = capsys.readouterr().out
        version = str(Registry(cfg).champion().version)
        assert f"answers: churn version {version} (@champion)" in out and "deployment Predictor: HEALTHY" in out
        assert main(["serve", "predict", config, "-e", str(served.keys[0]), "-e", str(served.keys[1]), *sets]) == 0
        out = capsys.readouterr().out
        assert f"churn version {version}" in out and str(served.keys[1]) in out
        accepted = {served.post(json={"customer_id": k}).json()["request_id"] for k in served.keys[:20]}
        assert main(["serve", "shutdown", config, *sets]) == 0
        assert "deleted the churn application" in capsys.readouterr().out
    assert read_record(cfg) is None
    assert accepted <= set(read_log(cfg)["request_id"])  # every accepted row written, none lost at shutdown
    with pytest.raises(httpx.TransportError):
        httpx.get(served.url + "/healthz", timeout=5)
