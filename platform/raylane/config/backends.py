"""The backends (Ray, MLflow, Feast stores) and the clusters rendered elsewhere (KubeRay, the launcher)."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from raylane.config._base import ProjectPath, StrictModel

# --------------------------------------------------------------------------- backends


class RayBackend(StrictModel):
    """Where Ray runs. `local` starts one for this process; anything else joins a cluster."""

    address: str = Field(
        "local",
        description="`local` (embedded), `auto`, `host:port`, `ray://host:10001`, or `http://host:8265`"
        " (the job API; drivers run there as jobs).",
    )
    num_cpus: int | None = Field(None, ge=1, description="CPUs of the embedded Ray; the machine's when omitted.")
    num_gpus: int | None = Field(None, ge=0, description="GPUs of the embedded Ray; detected when omitted.")
    namespace: str = Field("raylane", description="Ray namespace for named actors.")
    dashboard: bool = Field(True, description="Start the dashboard (needed by the job API and state API).")
    auth_token_file: ProjectPath | None = Field(
        None, description="Token file; `RAY_AUTH_TOKEN_PATH` or `~/.ray/auth_token` when omitted."
    )
    job_pip: list[str] = Field(
        default_factory=list,
        description="The only requirements `raylane job submit --pip` may install, each pinned"
        " (`name==version`); a job's packages run as code on the cluster.",
    )

    @field_validator("job_pip")
    @classmethod
    def _pinned(cls, value: list[str]) -> list[str]:
        for item in value:
            if pinned(item) is None:
                raise ValueError(f"{item!r} is not pinned; write it as name==version, e.g. 'rich==13.9.4'")
        return value


def pinned(requirement: str) -> str | None:
    """``name==version`` normalised, for a requirement pinned to one version; None otherwise."""
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    try:
        req = Requirement(requirement)
    except InvalidRequirement:
        return None
    specs = list(req.specifier)
    if req.url or req.marker or len(specs) != 1 or specs[0].operator not in ("==", "===") or "*" in specs[0].version:
        return None
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    return f"{canonicalize_name(req.name)}{extras}=={specs[0].version}"


class MlflowBackend(StrictModel):
    """MLflow tracking and registry."""

    tracking_uri: str | None = Field(
        None, description="Tracking URI; SQLite under the storage root when omitted (`sqlite:///…/mlflow.db`)."
    )
    experiment: str | None = Field(None, description="Experiment name; the project name when omitted.")


class DuckdbOfflineStore(StrictModel):
    """Feast's DuckDB offline store, joining by DuckDB's ``ASOF JOIN`` (the embedded default).

    The join (`raylane.feast_offline`) runs in DuckDB, a columnar engine in the process: 14.7x the
    file store's rows/s and 2.2x Feast's own DuckDB join on a million label rows, the same rows and
    values, measured by `benchmarks/features.py --size large`.
    """

    type: Literal["duckdb"] = Field(
        "duckdb", description="Feast's DuckDB offline store with an ASOF join (`raylane.feast_offline`)."
    )


class FileOfflineStore(StrictModel):
    """Parquet files read by Feast's file (dask) offline store."""

    type: Literal["file"] = Field(description="Feast's file offline store.")


class RayOfflineStore(StrictModel):
    """Feast's Ray offline store, run on raylane's Ray cluster.

    Materialization uses Feast's local compute engine over it: Feast 0.67's Ray compute engine
    (``batch_engine: ray.engine``) finished without writing any row to the online store here.
    """

    type: Literal["ray"] = Field(description="Feast's Ray offline store.")


class SqliteOnlineStore(StrictModel):
    """Feast's SQLite online store (embedded)."""

    type: Literal["sqlite"] = Field("sqlite", description="Feast's SQLite online store.")
    path: ProjectPath | None = Field(None, description="Database file; under the storage root when omitted.")


class RedisOnlineStore(StrictModel):
    """Feast's Redis online store."""

    type: Literal["redis"] = Field(description="Feast's Redis online store.")
    connection_string: str = Field(
        "127.0.0.1:6379", description="`host:port[,db=N][,password=…][,ssl=true]`, as Feast expects."
    )
    key_ttl_seconds: int | None = Field(None, ge=1, description="Expire online rows after this long.")


class FeastBackend(StrictModel):
    """Feast stores."""

    offline_store: DuckdbOfflineStore | FileOfflineStore | RayOfflineStore = Field(
        default_factory=DuckdbOfflineStore,
        discriminator="type",
        description="Offline store: `duckdb` (embedded default), `file` or `ray` (scale-out).",
    )
    online_store: SqliteOnlineStore | RedisOnlineStore = Field(
        default_factory=SqliteOnlineStore, discriminator="type", description="Online store (`sqlite`, `redis`)."
    )


class BackendsConfig(StrictModel):
    """Services raylane talks to. Embedded by default; scale out by config alone."""

    ray: RayBackend = Field(default_factory=RayBackend, description="Ray cluster.")
    mlflow: MlflowBackend = Field(default_factory=MlflowBackend, description="MLflow.")
    feast: FeastBackend = Field(default_factory=FeastBackend, description="Feast.")


# --------------------------------------------------------------------------- clusters (rendered manifests)

_K8S_QUANTITY = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti)?$"
_K8S_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


class NodeTypeConfig(StrictModel):
    """One kind of node: its size, and (workers) how many the autoscaler may run."""

    cpus: int = Field(ge=1, description="CPUs Ray schedules on one node.")
    memory: str = Field(pattern=_K8S_QUANTITY, description="Memory of one node, Kubernetes units (`16Gi`).")
    gpus: int = Field(0, ge=0, description="GPUs of one node.")
    min_workers: int = Field(0, ge=0, description="Fewest nodes of this kind (workers; the head is one).")
    max_workers: int = Field(0, ge=0, description="Most nodes of this kind the autoscaler starts (workers).")
    instance_type: str = Field(description="The cloud instance type (cluster launcher).")

    @model_validator(mode="after")
    def _bounds(self) -> NodeTypeConfig:
        if self.min_workers > self.max_workers:
            raise ValueError(f"min_workers {self.min_workers} is above max_workers {self.max_workers}")
        return self


class KubeRayConfig(StrictModel):
    """KubeRay manifests (`raylane cluster render kuberay`)."""

    namespace: str = Field("raylane", pattern=_K8S_NAME, description="Kubernetes namespace.")
    image: str = Field(
        "raylane:0.1.0", description="Image with Ray, torch and raylane (`clusters/Dockerfile` builds it)."
    )
    gpu_image: str = Field("raylane:0.1.0-gpu", description="Image of the GPU worker group (CUDA torch).")
    storage_claim: str = Field(
        "raylane-storage",
        pattern=_K8S_NAME,
        description="A ReadWriteMany PersistentVolumeClaim mounted on every pod: data, the storage root.",
    )
    mount_path: str = Field("/mnt/raylane", description="Where the claim is mounted in the pods.")
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Environment of every pod; the config's `${VAR}`s point its paths into the mount.",
    )
    job_ttl_seconds: int = Field(3600, ge=0, description="How long a finished RayJob's cluster is kept.")
    job_deadline_seconds: int = Field(
        6 * 3600, ge=60, description="A RayJob running longer than this is failed (activeDeadlineSeconds)."
    )


class LauncherConfig(StrictModel):
    """The Ray cluster launcher (`ray up`) config (`raylane cluster render launcher`)."""

    provider: Literal["aws"] = Field("aws", description="Cloud provider.")
    region: str = Field("us-west-2", description="Cloud region.")
    ssh_user: str = Field("ubuntu", description="SSH user of the machine image.")
    idle_timeout_minutes: int = Field(5, ge=1, description="Idle workers are removed after this long.")


class HeadNodeConfig(NodeTypeConfig):
    """The head node."""

    cpus: int = Field(4, ge=1, description="CPUs Ray schedules on the head (drivers, Serve controller).")
    memory: str = Field("16Gi", pattern=_K8S_QUANTITY, description="Memory of the head, Kubernetes units.")
    instance_type: str = Field("m5.xlarge", description="The cloud instance type (cluster launcher).")


class CpuWorkersConfig(NodeTypeConfig):
    """CPU worker nodes."""

    cpus: int = Field(8, ge=1, description="CPUs of one worker.")
    memory: str = Field("32Gi", pattern=_K8S_QUANTITY, description="Memory of one worker, Kubernetes units.")
    min_workers: int = Field(1, ge=0, description="Fewest CPU workers.")
    max_workers: int = Field(4, ge=0, description="Most CPU workers the autoscaler starts.")
    instance_type: str = Field("m5.2xlarge", description="The cloud instance type (cluster launcher).")


class GpuWorkersConfig(NodeTypeConfig):
    """GPU worker nodes; none when ``max_workers`` is 0."""

    cpus: int = Field(8, ge=1, description="CPUs of one worker.")
    memory: str = Field("32Gi", pattern=_K8S_QUANTITY, description="Memory of one worker, Kubernetes units.")
    gpus: int = Field(1, ge=1, description="GPUs of one worker.")
    max_workers: int = Field(2, ge=0, description="Most GPU workers the autoscaler starts (0: no GPU group).")
    instance_type: str = Field("g5.2xlarge", description="The cloud instance type (cluster launcher).")


class ClusterConfig(StrictModel):
    """What `raylane cluster render` writes: node types, images and set-up for a cluster elsewhere."""

    head: HeadNodeConfig = Field(
        default_factory=HeadNodeConfig, description="The head node (job drivers, the Serve controller)."
    )
    cpu_workers: CpuWorkersConfig = Field(
        default_factory=CpuWorkersConfig, description="CPU worker nodes: training, Ray Data, Serve replicas."
    )
    gpu_workers: GpuWorkersConfig = Field(
        default_factory=GpuWorkersConfig, description="GPU worker nodes (started when a job asks for GPUs)."
    )
    kuberay: KubeRayConfig = Field(default_factory=KubeRayConfig, description="KubeRay.")
    launcher: LauncherConfig = Field(default_factory=LauncherConfig, description="Ray cluster launcher.")


# --------------------------------------------------------------------------- the project's own jobs


class JobResources(StrictModel):
    """What a project job's script reserves on the cluster while it runs (Ray's entrypoint resources)."""

    num_cpus: float = Field(0.0, ge=0, description="CPUs for the script's process (its Ray tasks reserve their own).")
    num_gpus: float = Field(0.0, ge=0, description="GPUs for the script's process.")
    memory: int | None = Field(None, ge=1, description="Bytes of memory for the script's process.")


class ProjectJob(StrictModel):
    """A job script of the project's own: `raylane job submit CONFIG <name>` runs it on the cluster."""

    script: str = Field(
        pattern=r"^[^:]+\.py$",
        description="A .py file inside the config's folder, relative to it. It runs as"
        " `python <script> raylane-config.json <args>…` with the resolved config; the .py files of its"
        " folder travel with it as the job's working directory.",
    )
    args: list[str] = Field(
        default_factory=list, description="Arguments after the config, each passed as one (never through a shell)."
    )
    resources: JobResources = Field(default_factory=JobResources, description="What the script's process reserves.")
    description: str = Field("", description="Free text, shown by `raylane job submit --help`-style listings.")
