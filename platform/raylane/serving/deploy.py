"""Deploy, inspect and stop a project's Ray Serve application.

`deploy` checks what serving needs before Ray is asked for anything (a model behind the alias, the
Feast repo applied, the API key readable), starts Serve's HTTP proxy on ``serve.host:serve.port``
(127.0.0.1 by default) and runs the `Predictor` application with the config's autoscaling,
``max_ongoing_requests`` and ``max_queued_requests`` (503 with ``Retry-After`` beyond it). Running
it again with a changed config rolls the replicas over without dropping requests.

A record of the deployment is kept in ``<storage_root>/serve/deployment.json``: `status` and
`shutdown` find the application through it (its URL, the Ray cluster's address, and the process
that holds an embedded Ray up, if any). `status` answers a `ServeStatus`. The HTTP client, the
service's URL and the API key are in `raylane.serving.client`.

Security: the API key is never sent to Ray. The replicas receive its SHA-256 digest and compare
digests in constant time. They also receive the project's request-id secret
(`raylane.serving.ids`), so ``/feedback`` takes labels only for request ids the service issued.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import signal
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from raylane.config import ProjectConfig
from raylane.errors import ServeError
from raylane.processes import is_recorded_process, started_at
from raylane.serving.client import Client, api_key, url
from raylane.serving.ids import service_secret

_log = logging.getLogger("raylane")

__all__ = [
    "AppState",
    "Deployment",
    "DeploymentState",
    "ServeStatus",
    "app",
    "deploy",
    "deployment_options",
    "preflight",
    "read_record",
    "shutdown",
    "status",
    "undeploy",
]


@dataclass(frozen=True)
class Deployment:
    """What `deploy` started."""

    app: str
    url: str
    model_name: str
    model_version: str
    ray_address: str
    embedded: bool
    pid: int
    deployed_at: str
    pid_started: float = 0.0  # the process's start time: a reused pid is never signalled


def record_path(cfg: ProjectConfig) -> Path:
    return cfg.storage_root / "serve" / "deployment.json"


def read_record(cfg: ProjectConfig) -> Deployment | None:
    path = record_path(cfg)
    if not path.exists():
        return None
    return Deployment(**json.loads(path.read_text()))


def preflight(cfg: ProjectConfig) -> Any:
    """Fail before Ray is asked anything: a model behind the alias, features online, a readable key."""
    from raylane.features import FeatureRepo
    from raylane.registry import Registry, RegistryError

    api_key(cfg)
    try:
        mv = Registry(cfg).version(f"@{cfg.serve.model_alias}")
    except RegistryError:
        raise ServeError(
            f"registered model {cfg.model_name!r} has no version with alias {cfg.serve.model_alias!r} to serve",
            fix="train and promote one first: `raylane train CONFIG` (the gate promotes it), "
            "or `raylane registry promote CONFIG VERSION`",
        ) from None
    FeatureRepo(cfg).online()  # raises when `raylane features apply` was never run
    return mv


def deployment_options(cfg: ProjectConfig) -> dict[str, Any]:
    """The `Predictor` deployment's options, as Serve's config schema spells them (``serve.run``
    and a RayService's ``serveConfigV2`` both take them from here)."""
    s = cfg.serve
    a = s.autoscaling
    return {
        "name": "Predictor",
        "max_ongoing_requests": s.max_ongoing_requests,
        "max_queued_requests": s.max_queued_requests,
        "backpressure_config": {"status_code": 503, "retry_after_s": s.retry_after_s},
        "autoscaling_config": {
            "min_replicas": a.min_replicas,
            "initial_replicas": max(a.min_replicas, 1),
            "max_replicas": a.max_replicas,
            "target_ongoing_requests": a.target_ongoing_requests,
            "upscale_delay_s": a.upscale_delay_s,
            "downscale_delay_s": a.downscale_delay_s,
            "look_back_period_s": a.look_back_period_s,
        },
        "ray_actor_options": s.resources.actor_options(),
        "health_check_period_s": 5,
        "graceful_shutdown_timeout_s": max(10.0, s.request_timeout_s + 5),
    }


def build(cfg: ProjectConfig) -> Any:
    """The Serve application of the project, from its config (not deployed)."""
    from ray.serve.config import BackpressureConfig

    from raylane.serving.app import Predictor

    key = api_key(cfg)
    options = deployment_options(cfg)
    options["backpressure_config"] = BackpressureConfig(**options["backpressure_config"])
    deployment = cast(Any, Predictor).options(**options)
    digest = hashlib.sha256(key.encode()).hexdigest() if key else None
    return deployment.bind(cfg.model_dump(mode="json"), digest, service_secret(cfg.storage_root))


def app(args: dict[str, str]) -> Any:
    """Serve's application builder for declarative deploys: ``serve deploy`` and a KubeRay
    RayService's ``serveConfigV2`` (``import_path: raylane.serving.deploy:app``,
    ``args: {config: /etc/raylane/<project>.yaml}``). Starts the project's monitor first, as
    `deploy` does."""
    from raylane.config import load_config

    if "config" not in args:
        raise ServeError("the application's args have no `config`", fix="args: {config: /path/to/project.yaml}")
    cfg = load_config(args["config"])
    if cfg.monitor.enabled:
        from raylane.monitoring import start as start_monitor

        start_monitor(cfg)
    return build(cfg)


def deploy(cfg: ProjectConfig, *, embedded: bool = False, name: str | None = None) -> Deployment:
    """Deploy (or update in place) the project's application on the Ray this process is connected to.

    Args:
        embedded: Ray lives in this process (local mode): the service stops when it exits.
        name: The Serve application's name; the project's when omitted (a second name serves
            the same project twice, under another ``serve.route_prefix``; it is not recorded).
    """
    import ray
    from ray import serve
    from ray.serve.config import HTTPOptions

    # Serve sets its driver logger to INFO when imported; follow raylane's choice for Ray's loggers.
    logging.getLogger("ray.serve").setLevel(max(logging.getLogger("ray").getEffectiveLevel(), logging.WARNING))
    mv = preflight(cfg)
    s = cfg.serve
    gpus = ray.cluster_resources().get("GPU", 0.0)
    if s.resources.num_gpus and gpus < s.resources.num_gpus:  # Serve would wait for one forever
        raise ServeError(
            f"serve.resources.num_gpus is {s.resources.num_gpus:g}, but the cluster has {gpus:g} GPU(s)",
            fix="set serve.resources.num_gpus=0 to serve on CPUs, or deploy to a cluster with GPU nodes",
        )
    if s.exposure_warning:
        logging.getLogger("raylane").warning("raylane: %s", s.exposure_warning)
    app_name = name or cfg.project
    if cfg.monitor.enabled:  # before the replicas, which send it their profiles
        from raylane.monitoring import start as start_monitor

        start_monitor(cfg)
    wait = _RestartWaiter(s.proxy_health.restart_wait_s)
    wait.through(
        "starting Serve",
        lambda: serve.start(
            http_options=HTTPOptions(host=s.host, port=s.port, request_timeout_s=s.request_timeout_s + 5),
            logging_config={"log_level": "WARNING"},
            controller_options={"runtime_env": {"env_vars": s.proxy_health.env_vars()}},
        ),
    )
    try:
        wait.through(
            f"deploying {app_name}",
            lambda: serve.run(
                build(cfg),
                name=app_name,
                route_prefix=s.route_prefix,
                blocking=False,
                logging_config={"log_level": "WARNING"},
            ),
        )
    except RuntimeError as exc:
        reason = _failure_reason(app_name) or str(exc).strip().splitlines()[-1]
        serve.delete(app_name)  # do not leave Serve retrying a replica that cannot start
        raise ServeError(
            f"the {app_name} application did not start: {reason[:500]}",
            fix="see the replica logs in the Ray session's logs/serve folder",
        ) from exc
    wait.for_proxies(cfg)
    record = Deployment(
        app=app_name,
        url=url(cfg),
        model_name=cfg.model_name,
        model_version=str(mv.version),
        ray_address=ray.get_runtime_context().gcs_address,
        embedded=embedded,
        pid=os.getpid(),
        deployed_at=datetime.now(UTC).isoformat(timespec="seconds"),
        pid_started=started_at(os.getpid()),
    )
    if name is None:
        path = record_path(cfg)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(record), indent=1))
    return record


class _RestartWaiter:
    """Waits out Serve's own recovery, bounded: its controller restarts an HTTP proxy that missed
    its health checks (on a saturated machine, often while it starts), and Ray restarts a
    controller that died. A call that fails because one of them died is retried until it
    succeeds or ``timeout_s`` has passed since the first restart seen."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.deadline: float | None = None

    def _restarted(self, doing: str, exc: BaseException) -> None:
        now = time.monotonic()
        if self.deadline is None:
            self.deadline = now + self.timeout_s
        if now >= self.deadline:
            raise ServeError(
                f"{doing}: Ray Serve's proxy or controller kept restarting for {self.timeout_s:.0f} s"
                f" ({type(exc).__name__})",
                fix="the machine may be overloaded: free CPUs, or raise serve.proxy_health.timeout_s"
                " and serve.proxy_health.restart_wait_s",
            ) from exc
        _log.warning(
            "raylane: %s: Ray Serve is restarting its HTTP proxy or controller; waiting (up to %.0f s more)",
            doing,
            self.deadline - now,
        )
        time.sleep(2.0)

    def through(self, doing: str, call: Callable[[], Any]) -> Any:
        import ray

        while True:
            try:
                return call()
            except (ray.exceptions.RayActorError, TimeoutError) as exc:
                self._restarted(doing, exc)

    def for_proxies(self, cfg: ProjectConfig) -> None:
        """Return once every HTTP proxy is healthy and this one routes ``serve.route_prefix``
        (Serve's status still says healthy for a proxy that died since its last check)."""
        import httpx
        from ray import serve
        from ray.serve.schema import ProxyStatus

        from raylane.serving.client import origin

        routes_url = f"{origin(cfg)}/-/routes"
        deadline, told = time.monotonic() + self.timeout_s, False
        while True:
            proxies = self.through("waiting for Serve's HTTP proxies", lambda: serve.status().proxies)
            waiting = {n[:12]: str(getattr(st, "value", st)) for n, st in proxies.items() if st != ProxyStatus.HEALTHY}
            if not waiting:
                try:
                    answer = httpx.get(routes_url, timeout=5.0)
                    if answer.status_code == 200 and cfg.serve.route_prefix in answer.json():
                        return
                    waiting = {"proxy": f"{answer.status_code} from {routes_url}"}
                except (httpx.HTTPError, ValueError) as exc:
                    waiting = {"proxy": f"{routes_url}: {exc}"}
            if time.monotonic() >= deadline:
                raise ServeError(
                    f"Ray Serve's HTTP proxies are not serving after {self.timeout_s:.0f} s: {waiting}",
                    fix="the machine may be overloaded: free CPUs, or raise serve.proxy_health.restart_wait_s",
                )
            if not told and (ProxyStatus.UNHEALTHY in proxies.values() or "proxy" in waiting):
                _log.warning("raylane: Ray Serve's HTTP proxy is not answering (restarting?); waiting for it")
                told = True
            time.sleep(0.5)


def _failure_reason(app_name: str) -> str | None:
    """The exception line of a replica that failed to start, from Serve's status."""
    from ray import serve

    app = serve.status().applications.get(app_name)
    if app is None:
        return None
    messages = [d.message for d in app.deployments.values() if d.message] + [app.message]
    lines = [ln.strip() for m in messages for ln in m.splitlines()]
    errors = [ln for ln in lines if re.match(r"^[\w.]+(Error|Exception): ", ln) and "Traceback" not in ln]
    return errors[-1] if errors else None


def undeploy(cfg: ProjectConfig, *, name: str | None = None) -> None:
    """Delete the application from the Ray this process is connected to (replicas flush their logs)."""
    from ray import serve

    serve.delete(name or cfg.project, _blocking=True)
    if not serve.status().applications:
        serve.shutdown()
    record = read_record(cfg)
    if name is None and record is not None and record.app == cfg.project:
        record_path(cfg).unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def shutdown(cfg: ProjectConfig, *, timeout_s: float = 60.0) -> str:
    """Stop the project's service wherever `deploy` recorded it; returns what was done."""
    from raylane.runtime import ray_session

    record = read_record(cfg)
    if record is None:
        raise ServeError(
            f"no deployment of {cfg.project} is recorded under {record_path(cfg).parent}",
            fix="`raylane serve deploy CONFIG` starts one",
        )
    if record.embedded:
        if not is_recorded_process(record.pid, record.pid_started, "raylane"):
            record_path(cfg).unlink(missing_ok=True)
            return f"the process that served {record.app} (pid {record.pid}) is gone; record removed"
        os.kill(record.pid, signal.SIGTERM)  # it deletes the app, flushes the logs and stops its Ray
        deadline = time.monotonic() + timeout_s
        while _alive(record.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(record.pid):
            raise ServeError(f"pid {record.pid} did not stop within {timeout_s:.0f} s", fix=f"kill {record.pid}")
        record_path(cfg).unlink(missing_ok=True)
        return f"stopped {record.app} (pid {record.pid})"
    with ray_session(cfg.backends.ray):
        undeploy(cfg)
    return f"deleted the {record.app} application from the Ray cluster at {record.ray_address}"


@dataclass(frozen=True)
class DeploymentState:
    """One deployment of the application, as Serve reports it."""

    status: str  # HEALTHY, UPDATING, UNHEALTHY, …
    replicas: dict[str, int]  # replica state (RUNNING, STARTING, …) → count


@dataclass(frozen=True)
class AppState:
    """The application, as Serve reports it (only asked on a Ray cluster)."""

    status: str  # RUNNING, DEPLOYING, …
    deployments: dict[str, DeploymentState]


@dataclass(frozen=True)
class ServeStatus:
    """What `status` found: the record, what the endpoint answers and, on a cluster, Serve's view."""

    app: str
    url: str
    record: Deployment | None  # None: no deployment recorded
    # ``/healthz``'s answer; ``{"status": "unreachable", "error": …}`` when the service does not answer
    health: dict[str, Any]
    metadata: dict[str, Any] | None = None  # ``/metadata``'s answer; None when unreachable
    serve: AppState | None = None  # None with an embedded Ray, or when Serve has no such application

    @property
    def answers(self) -> bool:
        return self.health.get("status") == "ok"


def status(cfg: ProjectConfig) -> ServeStatus:
    """The recorded deployment, what its HTTP endpoint says, and (on a cluster) Serve's view."""
    record = read_record(cfg)
    client = Client(cfg, timeout_s=3.0)
    metadata = None
    try:
        health = client.get("/healthz")
        metadata = client.get("/metadata")
    except ServeError as exc:
        health = {"status": "unreachable", "error": str(exc)}
    finally:
        client.close()
    app_state = None
    if record is not None and not record.embedded:
        app_state = _serve_view(cfg)
    return ServeStatus(app=cfg.project, url=url(cfg), record=record, health=health, metadata=metadata, serve=app_state)


def _serve_view(cfg: ProjectConfig) -> AppState | None:
    from ray import serve

    from raylane.runtime import ray_session

    with ray_session(cfg.backends.ray):
        app = serve.status().applications.get(cfg.project)
        if app is None:
            return None
        return AppState(
            status=_name(app.status),
            deployments={
                name: DeploymentState(
                    status=_name(d.status), replicas={_name(k): v for k, v in d.replica_states.items()}
                )
                for name, d in app.deployments.items()
            },
        )


def _name(value: Any) -> str:
    return str(getattr(value, "value", value))
