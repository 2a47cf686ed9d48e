"""Cluster manifests: the checked-in ones are what the renderer writes, and they validate against
the real schemas (KubeRay's CRDs, Ray's launcher schema, Ray Serve's deploy schema)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from raylane.cli import main
from raylane.config import load_config
from raylane.manifests import kuberay, launcher, render, serve_config
from raylane.serving.deploy import deployment_options

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = Path("configs/churn.yaml")  # as `raylane cluster render` was run, from the repository root


def _kuberay_schemas() -> Path | None:
    """``../shared/schemas/kuberay`` beside the repository (or $RAYLANE_KUBERAY_SCHEMAS)."""
    for candidate in (os.environ.get("RAYLANE_KUBERAY_SCHEMAS"), ROOT.parent / "shared" / "schemas" / "kuberay"):
        if candidate and Path(candidate, "ray.io_rayclusters.yaml").is_file():
            return Path(candidate)
    return None


SCHEMAS = _kuberay_schemas()


@pytest.fixture
def in_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    for name in list(os.environ):
        if name.startswith("RAYLANE__") or name in ("RAYLANE_STORAGE", "CHURN_DATA"):
            monkeypatch.delenv(name)


def _crd_schema(kind: str) -> dict[str, Any]:
    assert SCHEMAS is not None
    crd = yaml.safe_load((SCHEMAS / f"ray.io_{kind.lower()}s.yaml").read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    return dict(version["schema"]["openAPIV3Schema"])


@pytest.mark.usefixtures("in_root")
@pytest.mark.parametrize("kind", ["kuberay", "launcher"])
def test_checked_in_manifests_are_the_rendered_ones(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["cluster", "render", kind, str(EXAMPLE), "--out", str(tmp_path)]) == 0
    rendered = sorted(p.name for p in (tmp_path / kind).iterdir())
    checked_in = sorted(p.name for p in (ROOT / "clusters" / kind).iterdir())
    assert rendered == checked_in
    for name in rendered:
        assert (tmp_path / kind / name).read_text() == (ROOT / "clusters" / kind / name).read_text(), (
            f"clusters/{kind}/{name} is stale: run `raylane cluster render {kind} {EXAMPLE}`"
        )


@pytest.mark.skipif(SCHEMAS is None, reason="../shared/schemas/kuberay is absent")
@pytest.mark.parametrize(
    "name", ["raycluster.yaml", "rayjob-train.yaml", "rayjob-sweep.yaml", "rayjob-predict.yaml", "rayservice.yaml"]
)
def test_kuberay_manifests_validate_against_the_crds(name: str) -> None:
    doc = yaml.safe_load((ROOT / "clusters" / "kuberay" / name).read_text())
    assert doc["apiVersion"] == "ray.io/v1"
    jsonschema.validate(doc, _crd_schema(doc["kind"]))


@pytest.mark.skipif(SCHEMAS is None, reason="../shared/schemas/kuberay is absent")
def test_the_crd_check_catches_a_wrong_manifest() -> None:
    doc = yaml.safe_load((ROOT / "clusters" / "kuberay" / "rayjob-train.yaml").read_text())
    doc["spec"]["shutdownAfterJobFinishes"] = "yes"
    with pytest.raises(jsonschema.ValidationError, match="is not of type 'boolean'"):
        jsonschema.validate(doc, _crd_schema("RayJob"))
    del doc["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]
    doc["spec"]["shutdownAfterJobFinishes"] = True
    with pytest.raises(jsonschema.ValidationError, match="'template' is a required property"):
        jsonschema.validate(doc, _crd_schema("RayJob"))


def test_launcher_config_validates_against_rays_schema() -> None:
    import ray

    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    doc = yaml.safe_load(next((ROOT / "clusters" / "launcher").glob("*.yaml")).read_text())
    jsonschema.validate(doc, schema)
    types = doc["available_node_types"]
    assert types["gpu_worker"]["resources"]["GPU"] == 1 and types["cpu_worker"]["max_workers"] >= 1
    assert any("pip install" in c and "raylane" in c for c in doc["setup_commands"])
    assert not any("0.0.0.0" in c for c in doc["head_start_ray_commands"])  # the dashboard stays on 127.0.0.1
    doc["provider"] = {"region": "us-west-2"}  # no type: Ray's schema must refuse it
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema)


@pytest.mark.usefixtures("in_root")
def test_rayservice_serves_what_raylane_serve_deploys() -> None:
    from ray.serve.schema import ServeDeploySchema

    cfg = load_config(EXAMPLE)
    doc = yaml.safe_load((ROOT / "clusters" / "kuberay" / "rayservice.yaml").read_text())
    serve = yaml.safe_load(doc["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(serve)  # Ray Serve's own schema for `serve deploy`
    app = serve["applications"][0]
    assert app["import_path"] == "raylane.serving.deploy:app"
    assert app["deployments"] == [deployment_options(cfg)]
    assert serve == serve_config(cfg, "/etc/raylane/churn.yaml")


@pytest.mark.usefixtures("in_root")
def test_the_config_in_the_pods_points_at_the_cluster_backends(tmp_path: Path) -> None:
    """The ConfigMap's file, loaded with the pods' environment: paths in the shared volume,
    Redis online store, MLflow server."""
    docs = {p.name: yaml.safe_load(p.read_text()) for p in (ROOT / "clusters" / "kuberay").glob("*.yaml")}
    ((name, text),) = docs["configmap.yaml"]["data"].items()
    pod = docs["raycluster.yaml"]["spec"]["headGroupSpec"]["template"]["spec"]
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"] if "value" in e}
    mount = next(m["mountPath"] for m in pod["containers"][0]["volumeMounts"] if m["name"] == "storage")
    (tmp_path / name).write_text(text)
    cfg = load_config(tmp_path / name, env=env)
    assert cfg.storage_root == Path(mount) / "churn"
    assert all(str(s.path).startswith(mount) for s in cfg.data.sources)
    assert cfg.backends.feast.online_store.type == "redis"
    assert cfg.mlflow_tracking_uri.startswith("http://")
    for job in ("train", "sweep", "predict"):
        entry = docs[f"rayjob-{job}.yaml"]["spec"]["entrypoint"].split()
        assert entry[1] == f"/app/jobs/{job}.py" and (ROOT / "jobs" / f"{job}.py").is_file()
        assert entry[2] == f"/etc/raylane/{name}"
    assert "COPY --chown=ray:users jobs /app/jobs" in (ROOT / "clusters" / "Dockerfile").read_text()


@pytest.mark.usefixtures("in_root")
def test_node_types_follow_the_config() -> None:
    cfg = load_config(EXAMPLE, ["cluster.gpu_workers.max_workers=0", "cluster.cpu_workers.max_workers=7"])
    spec = kuberay(cfg, EXAMPLE)["raycluster.yaml"]["spec"]
    assert [g["groupName"] for g in spec["workerGroupSpecs"]] == ["cpu"]
    assert spec["workerGroupSpecs"][0]["maxReplicas"] == 7
    assert "gpu_worker" not in launcher(cfg)["available_node_types"]
    gpu = kuberay(load_config(EXAMPLE), EXAMPLE)["raycluster.yaml"]["spec"]["workerGroupSpecs"][1]
    assert gpu["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"


@pytest.mark.usefixtures("in_root")
def test_bad_cluster_values_are_named(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["config", "validate", str(EXAMPLE), "--set", "cluster.head.memory=lots"]) == 2
    assert "cluster.head.memory" in capsys.readouterr().err
    assert main(["cluster", "render", "helm", str(EXAMPLE)]) == 2
    assert "kuberay, launcher" in capsys.readouterr().err
    with pytest.raises(Exception, match="min_workers 3 is above max_workers 1"):
        load_config(EXAMPLE, ["cluster.cpu_workers.min_workers=3", "cluster.cpu_workers.max_workers=1"])
    assert render("launcher", load_config(EXAMPLE), EXAMPLE, tmp_path)[0].name == "aws-churn.yaml"
