"""Cluster manifests rendered from a project config: KubeRay and the Ray cluster launcher.

``raylane cluster render kuberay|launcher CONFIG --out DIR`` writes them; ``clusters/`` holds the
rendered example project. Nothing here talks to a cluster: each renderer is a pure function of the
config (the ``cluster`` section sizes the nodes), so a manifest can be reviewed, diffed and
validated before it is applied.

KubeRay (``ray.io/v1``):

- a ConfigMap with the project config file as written (its ``${VAR}``\\ s resolve in the pods from
  ``cluster.kuberay.env``), mounted at ``/etc/raylane``;
- ``RayCluster``: a head and CPU and GPU worker groups with autoscaling bounds, token auth on, the
  shared volume (``cluster.kuberay.storage_claim``) on every pod;
- ``RayJob`` for ``train`` and ``sweep``: the same ``jobs/`` scripts on a cluster of the same shape,
  deleted after the job (``shutdownAfterJobFinishes``, ``ttlSecondsAfterFinished``);
- ``RayService``: its ``serveConfigV2`` comes from `raylane.serving.deploy.deployment_options`, the
  options ``raylane serve deploy`` uses, with the app built by ``raylane.serving.deploy:app``.

The launcher config (``ray up``): head, CPU and GPU node types, autoscaling bounds, set-up commands
that install raylane from the synced source tree, token auth on every node.
"""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path
from typing import Any

import yaml

from raylane.config import NodeTypeConfig, ProjectConfig
from raylane.errors import UserError

__all__ = ["KINDS", "kuberay", "launcher", "render"]

KINDS = ("kuberay", "launcher")
APP_DIR = "/app"  # where clusters/Dockerfile puts the source tree (jobs/ included)
CONFIG_DIR = "/etc/raylane"
HEADER = "# Rendered by `raylane cluster render {kind} {config}` from the project config; edit the config, not this.\n"


def _name(cfg: ProjectConfig) -> str:
    """The project as a Kubernetes name (DNS-1123: no underscores)."""
    return re.sub(r"[^a-z0-9-]", "-", cfg.project).strip("-")


def _config_in_pod(cfg: ProjectConfig, config_file: Path) -> str:
    return f"{CONFIG_DIR}/{cfg.project}{config_file.suffix or '.yaml'}"


def _resources(node: NodeTypeConfig) -> dict[str, Any]:
    amounts: dict[str, str] = {"cpu": str(node.cpus), "memory": node.memory}
    if node.gpus:
        amounts["nvidia.com/gpu"] = str(node.gpus)
    return {"limits": dict(amounts), "requests": dict(amounts)}


def _env(cfg: ProjectConfig) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in sorted(cfg.cluster.kuberay.env.items())]
    if cfg.serve.auth.api_key_env:  # the serving API key comes from a Secret, never from the config
        env.append(
            {
                "name": cfg.serve.auth.api_key_env,
                "valueFrom": {"secretKeyRef": {"name": f"{_name(cfg)}-serve-api-key", "key": "api-key"}},
            }
        )
    return env


def _pod(cfg: ProjectConfig, role: str, node: NodeTypeConfig, image: str) -> dict[str, Any]:
    k = cfg.cluster.kuberay
    container: dict[str, Any] = {
        "name": f"ray-{role}",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "resources": _resources(node),
        "env": _env(cfg),
        "volumeMounts": [
            {"name": "storage", "mountPath": k.mount_path},
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        ],
        "securityContext": {"allowPrivilegeEscalation": False},
    }
    if role == "head":
        container["ports"] = [
            {"containerPort": 6379, "name": "gcs-server"},
            {"containerPort": 8265, "name": "dashboard"},
            {"containerPort": 10001, "name": "client"},
            {"containerPort": cfg.serve.port, "name": "serve"},
        ]
    return {
        "spec": {
            "containers": [container],
            "volumes": [
                {"name": "storage", "persistentVolumeClaim": {"claimName": k.storage_claim}},
                {"name": "config", "configMap": {"name": f"{_name(cfg)}-raylane-config"}},
            ],
        }
    }


def _worker_group(cfg: ProjectConfig, group: str, node: NodeTypeConfig, image: str) -> dict[str, Any]:
    return {
        "groupName": group,
        "replicas": node.min_workers,
        "minReplicas": node.min_workers,
        "maxReplicas": node.max_workers,
        "rayStartParams": {},
        "template": _pod(cfg, "worker", node, image),
    }


def _cluster_spec(cfg: ProjectConfig) -> dict[str, Any]:
    c, k = cfg.cluster, cfg.cluster.kuberay
    groups = [_worker_group(cfg, "cpu", c.cpu_workers, k.image)]
    if c.gpu_workers.max_workers > 0:
        groups.append(_worker_group(cfg, "gpu", c.gpu_workers, k.gpu_image))
    return {
        "rayVersion": version("ray"),
        "authOptions": {"mode": "token"},
        "enableInTreeAutoscaling": True,
        "autoscalerOptions": {"idleTimeoutSeconds": c.launcher.idle_timeout_minutes * 60},
        "headGroupSpec": {
            # In a pod the dashboard must answer the operator and the job submitter: token auth guards it.
            "rayStartParams": {"dashboard-host": "0.0.0.0", "num-cpus": str(c.head.cpus)},
            "template": _pod(cfg, "head", c.head, k.image),
        },
        "workerGroupSpecs": groups,
    }


def _meta(cfg: ProjectConfig, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": cfg.cluster.kuberay.namespace,
        "labels": {"app.kubernetes.io/part-of": "raylane", "raylane.io/project": _name(cfg)},
    }


def serve_config(cfg: ProjectConfig, config_path: str) -> dict[str, Any]:
    """The Serve config (``serve deploy`` / ``serveConfigV2``) of the project's application."""
    return {
        "http_options": {"host": "0.0.0.0", "port": cfg.serve.port},  # the pod's port, behind the Service
        "applications": [
            {
                "name": cfg.project,
                "route_prefix": cfg.serve.route_prefix,
                "import_path": "raylane.serving.deploy:app",
                "args": {"config": config_path},
                "deployments": [_deployment_options(cfg)],
            }
        ],
    }


def _deployment_options(cfg: ProjectConfig) -> dict[str, Any]:
    from raylane.serving.deploy import deployment_options

    return deployment_options(cfg)


def kuberay(cfg: ProjectConfig, config_file: Path) -> dict[str, dict[str, Any]]:
    """The KubeRay manifests of ``cfg`` (file name → manifest); ``config_file`` is the config as
    written, shipped in a ConfigMap."""
    name, k = _name(cfg), cfg.cluster.kuberay
    in_pod = _config_in_pod(cfg, config_file)
    out: dict[str, dict[str, Any]] = {
        "configmap.yaml": {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": _meta(cfg, f"{name}-raylane-config"),
            "data": {Path(in_pod).name: config_file.read_text(encoding="utf-8")},
        },
        "raycluster.yaml": {
            "apiVersion": "ray.io/v1",
            "kind": "RayCluster",
            "metadata": _meta(cfg, name),
            "spec": _cluster_spec(cfg),
        },
    }
    # the nightly scoring job: every entity, as of now, into <storage_root>/scores/
    for job, args in (("train", ""), ("sweep", ""), ("predict", " --entities all")):
        out[f"rayjob-{job}.yaml"] = {
            "apiVersion": "ray.io/v1",
            "kind": "RayJob",
            "metadata": _meta(cfg, f"{name}-{job}"),
            "spec": {
                "entrypoint": f"python {APP_DIR}/jobs/{job}.py {in_pod}{args}",
                "shutdownAfterJobFinishes": True,
                "ttlSecondsAfterFinished": k.job_ttl_seconds,
                "activeDeadlineSeconds": k.job_deadline_seconds,
                "backoffLimit": 0,
                "rayClusterSpec": _cluster_spec(cfg),
            },
        }
    out["rayservice.yaml"] = {
        "apiVersion": "ray.io/v1",
        "kind": "RayService",
        "metadata": _meta(cfg, f"{name}-serve"),
        "spec": {
            "serveConfigV2": yaml.safe_dump(serve_config(cfg, in_pod), sort_keys=False),
            "rayClusterConfig": _cluster_spec(cfg),
        },
    }
    return out


def launcher(cfg: ProjectConfig) -> dict[str, Any]:
    """The Ray cluster launcher config (``ray up``) of ``cfg``."""
    c, lc = cfg.cluster, cfg.cluster.launcher
    token = "RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH=~/.ray/auth_token"

    def node_type(node: NodeTypeConfig) -> dict[str, Any]:
        resources: dict[str, int] = {"CPU": node.cpus}
        if node.gpus:
            resources["GPU"] = node.gpus
        return {
            "node_config": {"InstanceType": node.instance_type},
            "resources": resources,
            "min_workers": node.min_workers,
            "max_workers": node.max_workers,
        }

    types = {"head": node_type(c.head), "cpu_worker": node_type(c.cpu_workers)}
    if c.gpu_workers.max_workers > 0:
        types["gpu_worker"] = node_type(c.gpu_workers)
    return {
        "cluster_name": f"raylane-{_name(cfg)}",
        "max_workers": c.cpu_workers.max_workers + c.gpu_workers.max_workers,
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": lc.idle_timeout_minutes,
        "provider": {"type": lc.provider, "region": lc.region, "cache_stopped_nodes": False},
        "auth": {"ssh_user": lc.ssh_user},
        "available_node_types": types,
        "head_node_type": "head",
        # The source tree (jobs/ and configs/ included) and the cluster's token, on every node.
        "file_mounts": {"~/raylane": ".", "~/.ray/auth_token": "~/.ray/auth_token"},
        "rsync_exclude": [".venv", ".git", ".raylane", "data", "**/__pycache__"],
        "setup_commands": [
            "chmod 600 ~/.ray/auth_token",
            "pip install -q 'torch==2.13.*' --index-url https://download.pytorch.org/whl/cpu",
            "pip install -q -e ~/raylane",
        ],
        "head_start_ray_commands": [
            # the launcher's own nodes: `ray stop` restarts Ray on `ray up` again (never on a shared machine)
            "ray stop",
            f"{token} ray start --head --port=6379 --dashboard-host=127.0.0.1 --disable-usage-stats"
            " --autoscaling-config=~/ray_bootstrap_config.yaml",
        ],
        "worker_start_ray_commands": ["ray stop", f"{token} ray start --address=$RAY_HEAD_IP:6379"],
    }


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (the config file, ``serveConfigV2``) as readable literal blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def render(kind: str, cfg: ProjectConfig, config_file: Path, out: Path) -> list[Path]:
    """Write the ``kind`` manifests of ``cfg`` into ``out``; returns the files written.

    Raises:
        UserError: ``kind`` is not one of `KINDS`.
    """
    if kind not in KINDS:
        raise UserError(f"no renderer for {kind!r}", fix=f"use one of {', '.join(KINDS)}")
    if kind == "kuberay":
        docs = kuberay(cfg, config_file)
    else:
        docs = {f"{cfg.cluster.launcher.provider}-{_name(cfg)}.yaml": launcher(cfg)}
    out.mkdir(parents=True, exist_ok=True)
    written = []
    header = HEADER.format(kind=kind, config=config_file)
    for file, doc in docs.items():
        path = out / file
        path.write_text(header + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=120), encoding="utf-8")
        written.append(path)
    return written
