"""The whole loop as one orchestrated run: ``raylane run CONFIG [--from STEP] [--until STEP]``.

Steps, in order: ``ingest`` (Ray Data) → ``features`` (Feast apply and materialize) → ``train``
(Ray Train, or a Ray Tune sweep with ``--sweep``; the model is registered and goes through the
promotion gate, which moves ``champion`` only when it passes) → ``deploy`` (Ray Serve, the champion)
→ ``monitor`` (the project's monitor actor).

Each step has an *input fingerprint*: a hash of the config sections it reads and, where it
matters, the raw files (ingest), the fingerprint of the step before it (features, train), the code
version (train) and the champion it serves (deploy). A step whose fingerprint equals the one recorded after its last
success, and whose output is still there (the registered version, the running application, the
monitor), is skipped with a line saying so. The record lives in ``<storage_root>/pipeline/state.json``
and is written only after a step succeeded.

A failing step stops the run. Steps before the train step touch no model; the train step moves
``champion`` only through the gate, after the model was registered; ``deploy`` runs only after
every step before it succeeded: a failure leaves the registry and serving as they were.

Every run is an MLflow run (tag ``raylane.pipeline``) with each step's fingerprint, status
(``ran``, ``skipped``, ``failed``), time and outputs; the training run is its child.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from raylane.config import ProjectConfig
from raylane.errors import PipelineFailed, RaylaneError, UserError
from raylane.lineage import Tag

__all__ = ["STEPS", "PipelineFailed", "PipelineResult", "StepResult", "run_pipeline"]

STEPS = ("ingest", "features", "train", "deploy", "monitor", "predict")


@dataclass
class StepResult:
    """One step of a run."""

    name: str
    status: str  # ran | skipped | failed | not run
    fingerprint: str = ""
    seconds: float = 0.0
    outputs: dict[str, Any] = field(default_factory=dict)
    why: str = ""


@dataclass
class PipelineResult:
    """What `run_pipeline` did."""

    run_id: str
    steps: list[StepResult]
    ok: bool
    error: str | None = None

    def step(self, name: str) -> StepResult:
        return next(s for s in self.steps if s.name == name)


def state_path(cfg: ProjectConfig) -> Path:
    return cfg.storage_root / "pipeline" / "state.json"


def _read_state(cfg: ProjectConfig) -> dict[str, Any]:
    path = state_path(cfg)
    return dict(json.loads(path.read_text())) if path.is_file() else {}


def _write_state(cfg: ProjectConfig, state: dict[str, Any]) -> None:
    path = state_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1, default=str))
    os.replace(tmp, path)


def _hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        digest.update(str(f.relative_to(path) if path.is_dir() else f.name).encode())
        with f.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def _sections(cfg: ProjectConfig, *names: str) -> dict[str, Any]:
    """Parts of the resolved config (dotted names: ``backends.feast``)."""
    doc = cfg.model_dump(mode="json")
    out = {}
    for name in names:
        value: Any = doc
        for part in name.split("."):
            value = value[part]
        out[name] = value
    return out


class _Steps:
    """The steps' inputs, checks and actions (each action returns its outputs)."""

    def __init__(self, cfg: ProjectConfig, *, sweep: bool, embedded: bool, step: Callable[[str], object]) -> None:
        self.cfg, self.sweep, self.embedded, self.step = cfg, sweep, embedded, step
        self.parent_run_id = ""
        self.features = ""  # the features step's fingerprint (what the predict step's features are)

    # ----- fingerprints

    def inputs(self, name: str, previous: str) -> dict[str, Any]:
        cfg = self.cfg
        if name == "ingest":
            from raylane.ingest import source_files

            files = {s.name: [_file_hash(Path(f)) for f in source_files(s)] for s in cfg.data.sources}
            return {"config": _sections(cfg, "data", "entity"), "files": files}
        if name == "features":
            return {"config": _sections(cfg, "entity", "features", "backends.feast"), "after": previous}
        if name == "train":
            from raylane._version import __version__
            from raylane.contract import ModelCode
            from raylane.lineage import code_version, project_version

            sections = ["data.labels", "model", "train", "registry", *(["tune"] if self.sweep else [])]
            entry, loop = cfg.model.entrypoint, cfg.train.loop
            return {
                "config": _sections(cfg, *sections),
                "trainer": "sweep" if self.sweep else "train",
                "code": {"raylane": __version__, **code_version()},
                "project": project_version(cfg),
                "model_code": ModelCode.capture(entry, cfg.base_dir).hash if entry else "",
                "train_loop": ModelCode.capture(loop, cfg.base_dir, key="train.loop").hash if loop else "",
                "after": previous,
            }
        # What is served depends on the champion and the config, not on how the champion was made:
        # a retrain that does not pass the gate leaves the deployment alone.
        if name == "deploy":
            return {"config": _sections(cfg, "serve", "monitor"), "champion": self._champion()}
        if name == "predict":  # the champion's scores of the features as they are now
            return {"config": _sections(cfg, "batch"), "champion": self._champion(), "features": self.features}
        return {"config": _sections(cfg, "monitor")}

    def disabled(self, name: str) -> str | None:
        """Why a step does not run in this project (None: it does)."""
        if name == "predict" and self.cfg.batch.pipeline_entities is None:
            return "not configured (batch.pipeline_entities)"
        return None

    def _champion(self) -> str | None:
        from raylane.registry import Registry

        champion = Registry(self.cfg).champion()
        return str(champion.version) if champion else None

    def still_there(self, name: str, outputs: dict[str, Any]) -> str | None:
        """Why a step must run again although its inputs are unchanged (its output is gone); None if not."""
        cfg = self.cfg
        if name == "ingest":
            from raylane.ingest import offline_path

            gone = [s.name for s in cfg.data.sources if not offline_path(cfg, s.name).is_dir()]
            return f"offline tables missing: {gone}" if gone else None
        if name == "train":
            from raylane.registry import Registry, RegistryError

            try:
                Registry(cfg).version(str(outputs.get("version")))
            except RegistryError:
                return f"version {outputs.get('version')} is no longer in the registry"
            return None
        if name == "deploy":
            from raylane.serving import Client

            try:
                meta = Client(cfg, timeout_s=3.0).get("/metadata")
            except RaylaneError:
                return "the application is not answering"
            served = str((meta.get("model") or {}).get("version"))
            if served != str(outputs.get("model_version")):
                return f"it serves version {served}"
            return None
        if name == "monitor":
            from raylane.monitoring import monitor_handle

            try:
                monitor_handle(cfg)
            except ValueError:
                return "the monitor is not running"
        if name == "predict" and not Path(str(outputs.get("out"))).is_dir():
            return f"its output {outputs.get('out')} is gone"
        return None

    # ----- actions

    def run(self, name: str) -> dict[str, Any]:
        cfg = self.cfg
        if name == "ingest":
            from raylane.ingest import ingest

            self.step("ingest: raw sources → offline tables (Ray Data)")
            return {"rows": {r.source: r.rows for r in ingest(cfg)}}
        if name == "features":
            from raylane.features import FeatureRepo

            self.step("features: Feast apply and materialize")
            repo = FeatureRepo(cfg)
            views = repo.apply()
            reports = repo.materialize()
            return {"views": len(views), "materialized": {r.view: r.rows for r in reports}}
        if name == "train":
            return self._train()
        if name == "deploy":
            from raylane.serving import deploy

            self.step(f"deploy: {cfg.model_name}@{cfg.serve.model_alias} on Ray Serve")
            record = deploy(cfg, embedded=self.embedded)
            return {"model_version": record.model_version, "url": record.url}
        if name == "predict":
            from raylane.batch import predict

            self.step(f"predict: {cfg.model_name}@champion over {cfg.batch.pipeline_entities} (Ray Data)")
            report = predict(cfg, entities=str(cfg.batch.pipeline_entities), step=self.step)
            return {"out": report.out, "rows": report.rows_out, "model_version": report.model_version}
        from raylane.monitoring import start

        self.step("monitor: the project's monitor actor")
        start(cfg)
        return {"monitor": f"raylane-monitor-{cfg.project}"}

    def _train(self) -> dict[str, Any]:
        tags = {"mlflow.parentRunId": self.parent_run_id, Tag.PIPELINE_RUN: self.parent_run_id}
        if self.sweep:
            from raylane.sweep import sweep

            self.step("train: Ray Tune sweep, best trial → registry → gate")
            res = sweep(self.cfg, step=self.step)
            return {
                "trainer": "sweep",
                "sweep": res.name,
                "run_id": res.parent_run_id,
                "version": res.train.version if res.train else None,
                "promoted": bool(res.train and res.train.promoted),
                "best_trial": res.best.trial_id,
            }
        from raylane.training import train

        self.step("train: Ray Train → MLflow → registry → gate")
        result = train(self.cfg, step=self.step, extra_tags=tags)
        return {
            "trainer": "train",
            "run_id": result.run_id,
            "version": result.version,
            "promoted": result.promoted,
            "gate": result.decision.reason if result.decision else None,
            "metrics": {k: round(v, 6) for k, v in result.metrics.items()},
        }


def _bounds(start: str | None, until: str | None) -> tuple[int, int]:
    for option, value in (("--from", start), ("--until", until)):
        if value is not None and value not in STEPS:
            raise UserError(f"{option} {value!r} is not a pipeline step", fix=f"use one of {', '.join(STEPS)}")
    first = STEPS.index(start) if start else 0
    last = STEPS.index(until) if until else len(STEPS) - 1
    if first > last:
        raise UserError(f"--from {start} comes after --until {until}", fix=f"steps run in order: {' → '.join(STEPS)}")
    return first, last


def run_pipeline(
    cfg: ProjectConfig,
    *,
    start: str | None = None,
    until: str | None = None,
    sweep: bool = False,
    force: bool = False,
    embedded: bool = False,
    step: Callable[[str], object] = lambda _: None,
) -> PipelineResult:
    """Run the steps from ``start`` to ``until`` (all by default), skipping those whose inputs are
    unchanged. Needs Ray.

    Args:
        sweep: The train step runs a Ray Tune sweep (``tune.*``) instead of one training run.
        force: Run every selected step, whatever its fingerprint.
        embedded: Ray lives in this process (the deployment ends with it).

    Raises:
        UserError: ``start`` or ``until`` is not a step.
        PipelineFailed: a step failed (its error is the cause); later steps did not run.
    """
    from mlflow.tracking import MlflowClient

    from raylane.training import ensure_experiment

    first, last = _bounds(start, until)
    experiment = ensure_experiment(cfg)
    client = MlflowClient(cfg.mlflow_tracking_uri)
    run = client.create_run(
        experiment.experiment_id,
        run_name=f"pipeline-{datetime.now(UTC):%Y%m%d-%H%M%S}",
        tags={Tag.PIPELINE: "true", Tag.STEPS: ",".join(STEPS[first : last + 1])},
    )
    run_id = run.info.run_id
    steps = _Steps(cfg, sweep=sweep, embedded=embedded, step=step)
    steps.parent_run_id = run_id
    state = _read_state(cfg)
    results = [StepResult(name, "not run") for name in STEPS]
    previous = state.get(STEPS[first - 1], {}).get("fingerprint", "") if first else ""
    try:
        for i in range(first, last + 1):
            name, result = STEPS[i], results[i]
            started = time.perf_counter()
            try:
                if why := steps.disabled(name):
                    result.status, result.why = "skipped", why
                    continue
                if name == "predict":
                    steps.features = state.get("features", {}).get("fingerprint", "")
                result.fingerprint = _hash(steps.inputs(name, previous))
                recorded = state.get(name, {})
                unchanged = recorded.get("fingerprint") == result.fingerprint
                gone = steps.still_there(name, recorded.get("outputs", {})) if unchanged else None
                if unchanged and not gone and not force:
                    result.status, result.outputs = "skipped", recorded.get("outputs", {})
                    result.why = f"inputs unchanged since {recorded.get('finished_at')}"
                    step(f"{name}: skipped, {result.why}")
                else:
                    result.why = "forced" if force else (gone or ("inputs changed" if recorded else "first run"))
                    result.outputs = steps.run(name)
                    result.status = "ran"
                    state[name] = {
                        "fingerprint": result.fingerprint,
                        "outputs": result.outputs,
                        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
                        "pipeline_run": run_id,
                    }
                    _write_state(cfg, state)
            except Exception as exc:
                result.status, result.why = "failed", f"{type(exc).__name__}: {exc}"
                raise
            finally:
                result.seconds = time.perf_counter() - started
                client.log_param(run_id, f"{name}.fingerprint", result.fingerprint or "—")
                client.set_tag(run_id, f"step.{name}", result.status)
            previous = result.fingerprint
    except Exception as exc:
        client.log_dict(run_id, _summary(results), "pipeline.json")
        client.set_terminated(run_id, status="FAILED")
        failed = next((r.name for r in results if r.status == "failed"), "?")
        message = exc.message if isinstance(exc, RaylaneError) else f"{type(exc).__name__}: {exc}"
        raise PipelineFailed(
            f"step {failed} failed: {message}",
            fix=getattr(exc, "fix", None) or "fix the cause and run again; steps that succeeded are skipped",
            result=PipelineResult(run_id, results, ok=False, error=message),
            exit_code=getattr(exc, "exit_code", 1),
        ) from exc
    client.log_dict(run_id, _summary(results), "pipeline.json")
    client.set_terminated(run_id, status="FINISHED")
    return PipelineResult(run_id, results, ok=True)


def _summary(results: list[StepResult]) -> dict[str, Any]:
    return {
        r.name: {"status": r.status, "fingerprint": r.fingerprint, "seconds": round(r.seconds, 2), "why": r.why}
        | {"outputs": r.outputs}
        for r in results
    }
