"""A local multi-node Ray cluster on one machine: ``raylane cluster up|down|status``.

`up` starts a head node and N worker nodes, each a ``ray start --block`` child process with its own
CPUs, token authentication on (the project's token file, created 0600 when missing) and every port
bound to 127.0.0.1. It waits until every node has joined, then records the processes in
``<storage_root>/cluster/<name>.json``. `down` stops exactly those processes, by their ids: SIGTERM
to each ``ray start`` (workers first), which drains its node; whatever of a node is still alive
after the grace period is killed. It never runs ``ray stop``, which kills every Ray process on the
machine.

Point raylane at the cluster with ``backends.ray.address: 127.0.0.1:<port>`` (drivers) or submit
jobs to its job API (``raylane job submit``), whose address the record keeps. `status` answers a
`ClusterStatus`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from raylane.config import ProjectConfig
from raylane.errors import ClusterError
from raylane.processes import is_recorded_process, started_at
from raylane.runtime import ensure_token, token_path

__all__ = ["ClusterStatus", "LocalCluster", "Node", "auth_headers", "down", "read_record", "status", "up"]

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Node:
    """One ``ray start`` process."""

    role: str  # "head" or "worker"
    pid: int
    num_cpus: int
    log: str
    started: float = 0.0  # the process's start time: a reused pid is never signalled


@dataclass(frozen=True)
class LocalCluster:
    """What `up` started."""

    name: str
    address: str  # the GCS, for drivers: backends.ray.address
    dashboard_url: str  # the job API
    token_file: str
    started_at: str
    nodes: list[Node] = field(default_factory=list)

    @property
    def head(self) -> Node:
        return next(n for n in self.nodes if n.role == "head")


def record_path(cfg: ProjectConfig, name: str = "local") -> Path:
    return cfg.storage_root / "cluster" / f"{name}.json"


def read_record(cfg: ProjectConfig, name: str = "local") -> LocalCluster | None:
    path = record_path(cfg, name)
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return LocalCluster(**{**data, "nodes": [Node(**n) for n in data["nodes"]]})


def auth_headers(cfg: ProjectConfig) -> dict[str, str]:
    """The Authorization header of the cluster's job API, from the project's token file."""
    if token := os.environ.get("RAY_AUTH_TOKEN"):
        return {"Authorization": f"Bearer {token.strip()}"}
    path = ensure_token(token_path(cfg.backends.ray), create=False)
    return {"Authorization": f"Bearer {path.read_text().strip()}"}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _ray_binary() -> str:
    """The ``ray`` of this interpreter's environment (the cluster runs the same Ray and raylane)."""
    beside = Path(sys.executable).parent / "ray"
    found = str(beside) if beside.is_file() else shutil.which("ray")
    if not found:
        raise ClusterError("the `ray` command is not installed beside this Python", fix="pip install 'ray[default]'")
    return found


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _temp_root(port: int) -> Path:
    """The nodes' temp dirs: one per node, short (Ray's socket paths must stay under 108 bytes)."""
    import tempfile

    return Path(tempfile.gettempdir()) / f"raylane-{port}"


def _node_args(num_cpus: int, temp_dir: Path) -> list[str]:
    # Every node on one machine needs its own agent and metrics ports (Ray's defaults would collide)
    # and its own temp dir: nodes sharing one would unpack and garbage-collect each other's job
    # working dirs (runtime_resources) on the same disk.
    return [
        "--temp-dir",
        str(temp_dir),
        "--block",
        "--node-ip-address",
        HOST,
        "--num-cpus",
        str(num_cpus),
        "--num-gpus",
        "0",
        "--dashboard-agent-listen-port",
        str(_free_port()),
        "--dashboard-agent-grpc-port",
        str(_free_port()),
        "--runtime-env-agent-port",
        str(_free_port()),
        "--metrics-export-port",
        str(_free_port()),
        "--disable-usage-stats",
    ]


def up(
    cfg: ProjectConfig,
    *,
    workers: int = 1,
    cpus_per_node: int = 1,
    port: int | None = None,
    dashboard_port: int | None = None,
    name: str = "local",
    timeout_s: float = 120.0,
) -> LocalCluster:
    """Start a head and ``workers`` worker nodes on this machine; returns when all have joined.

    Raises:
        ClusterError: a cluster of that name is already up, or a node did not start in time
            (what was started is stopped again).
    """
    if (old := read_record(cfg, name)) is not None and any(_alive(n.pid) for n in old.nodes):
        raise ClusterError(
            f"the local cluster {name!r} is already up ({old.address}, job API {old.dashboard_url})",
            fix="`raylane cluster down CONFIG` first, or use another --name",
        )
    token = ensure_token(token_path(cfg.backends.ray))
    port = port or _free_port()
    dashboard_port = dashboard_port or _free_port()
    logs = record_path(cfg, name).parent / f"{name}-logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN_PATH": str(token),
        # jobs run `python`: the interpreter (and raylane) this cluster was started with
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("RAY_ADDRESS", None)
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)  # an embedded Ray's loopback switch: `ray start` refuses it
    ray_bin = _ray_binary()
    cluster = LocalCluster(
        name=name,
        address=f"{HOST}:{port}",
        dashboard_url=f"http://{HOST}:{dashboard_port}",
        token_file=str(token),
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )

    def spawn(role: str, i: int, args: list[str]) -> None:
        log_file = logs / f"{role}-{i}.log"
        with log_file.open("wb") as out:
            proc = subprocess.Popen(
                [ray_bin, "start", *args, *_node_args(cpus_per_node, _temp_root(port) / f"{role}{i}")],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # a Ctrl-C in this terminal does not reach the cluster
            )
        cluster.nodes.append(
            Node(role=role, pid=proc.pid, num_cpus=cpus_per_node, log=str(log_file), started=started_at(proc.pid))
        )

    try:
        spawn(
            "head",
            0,
            [
                "--head",
                "--port",
                str(port),
                "--dashboard-host",
                HOST,
                "--dashboard-port",
                str(dashboard_port),
                "--ray-client-server-port",
                str(_free_port()),
            ],
        )
        _wait_for_nodes(cluster, cfg, 1, timeout_s)
        for i in range(workers):
            spawn("worker", i, ["--address", cluster.address])
        _wait_for_nodes(cluster, cfg, 1 + workers, timeout_s)
    except BaseException:
        _stop_nodes(cluster.nodes)
        shutil.rmtree(_temp_root(port), ignore_errors=True)
        raise
    path = record_path(cfg, name)
    path.write_text(json.dumps(asdict(cluster), indent=1))
    return cluster


def _live_nodes(cluster: LocalCluster, cfg: ProjectConfig) -> list[dict[str, Any]] | None:
    """The cluster's alive nodes, from the dashboard's state API; None while it does not answer."""
    import httpx

    try:
        r = httpx.get(
            f"{cluster.dashboard_url}/api/v0/nodes",
            params={"limit": 1000, "detail": "true"},
            headers=auth_headers(cfg),
            timeout=10,
        )
    except httpx.HTTPError:
        return None
    if r.status_code != 200:
        return None
    nodes = r.json().get("data", {}).get("result", {}).get("result", [])
    return [n for n in nodes if n.get("state") == "ALIVE"]


def _wait_for_nodes(cluster: LocalCluster, cfg: ProjectConfig, count: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for node in cluster.nodes:
            if not _alive(node.pid):
                tail = Path(node.log).read_text(errors="replace").splitlines()[-10:]
                raise ClusterError(
                    f"the {node.role} node (pid {node.pid}) exited while starting:\n  " + "\n  ".join(tail),
                    fix=f"see {node.log}; a port may be taken (choose --port / --dashboard-port)",
                )
        nodes = _live_nodes(cluster, cfg)
        if nodes is not None and len(nodes) >= count:
            return
        time.sleep(1)
    raise ClusterError(
        f"the local cluster did not reach {count} nodes within {timeout_s:.0f} s",
        fix=f"see the node logs under {Path(cluster.head.log).parent}",
    )


def _stop_nodes(nodes: list[Node], grace_s: float = 30.0) -> list[int]:
    """SIGTERM each ``ray start`` (workers first), then kill what is left of its process tree."""
    import psutil

    trees: dict[int, list[Any]] = {}
    for node in sorted(nodes, key=lambda n: n.role == "head"):
        if not is_recorded_process(node.pid, node.started, "ray"):
            continue  # gone, or its pid now belongs to another program
        try:
            proc = psutil.Process(node.pid)
            trees[node.pid] = [proc, *proc.children(recursive=True)]
            proc.send_signal(signal.SIGTERM)
        except psutil.NoSuchProcess:
            continue
        with contextlib.suppress(psutil.TimeoutExpired):
            proc.wait(grace_s)
    for tree in trees.values():
        _, alive = psutil.wait_procs(tree, timeout=5)
        for p in alive:  # a drain that hung: these are this node's own processes, nothing else
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
    return list(trees)


def down(cfg: ProjectConfig, name: str = "local") -> LocalCluster | None:
    """Stop the local cluster `up` recorded; None when none is recorded."""
    cluster = read_record(cfg, name)
    if cluster is None:
        return None
    _stop_nodes(cluster.nodes)
    record_path(cfg, name).unlink(missing_ok=True)
    _forget_address(cluster.address)
    shutil.rmtree(_temp_root(int(cluster.address.rsplit(":", 1)[1])), ignore_errors=True)
    return cluster


def _forget_address(address: str) -> None:
    """Remove Ray's note of the last `ray start` cluster when it names this one (now gone), so
    ``ray.init(address="auto")`` does not try it."""
    from ray._common.utils import get_ray_address_file

    note = Path(get_ray_address_file(None))
    with contextlib.suppress(OSError):
        if note.read_text().strip().rsplit(":", 1)[-1] == address.rsplit(":", 1)[-1]:
            note.unlink()


@dataclass(frozen=True)
class ClusterStatus:
    """What `status` found: the recorded cluster, its processes and what Ray reports."""

    cluster: LocalCluster
    processes: dict[int, bool]  # pid of each ``ray start`` → still running
    alive_nodes: int | None  # nodes Ray reports alive; None when the dashboard does not answer
    cpus: float | None  # their CPUs; None when the dashboard does not answer

    @property
    def reachable(self) -> bool:
        return self.alive_nodes is not None


def status(cfg: ProjectConfig, name: str = "local") -> ClusterStatus | None:
    """The recorded cluster, its processes and the nodes Ray reports alive; None when none is recorded."""
    cluster = read_record(cfg, name)
    if cluster is None:
        return None
    nodes = _live_nodes(cluster, cfg)
    return ClusterStatus(
        cluster=cluster,
        processes={n.pid: _alive(n.pid) for n in cluster.nodes},
        alive_nodes=None if nodes is None else len(nodes),
        cpus=None if nodes is None else sum(n.get("resources_total", {}).get("CPU", 0) for n in nodes),
    )
