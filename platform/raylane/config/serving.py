"""The serving and monitoring sections: autoscaling, batching, auth, the inference log, drift and triggers."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Literal

from pydantic import (
    Field,
    model_validator,
)

from raylane.config._base import Duration, ProjectPath, StrictModel


class AutoscalingConfig(StrictModel):
    """Ray Serve autoscaling of the model deployment."""

    min_replicas: int = Field(1, ge=0, description="Fewest replicas.")
    max_replicas: int = Field(2, ge=1, description="Most replicas.")
    target_ongoing_requests: float = Field(8, gt=0, description="Requests per replica the autoscaler aims at.")
    upscale_delay_s: float = Field(5.0, ge=0, description="Seconds above target before scaling up.")
    downscale_delay_s: float = Field(30.0, ge=0, description="Seconds below target before scaling down.")
    look_back_period_s: float = Field(30.0, gt=0, description="Seconds of load the autoscaler averages over.")

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"`min_replicas` ({self.min_replicas}) must not exceed `max_replicas` ({self.max_replicas})"
            )
        return self


class BatchingConfig(StrictModel):
    """`@serve.batch` settings."""

    enabled: bool = Field(True, description="Batch entities across requests; off scores each request alone.")
    max_batch_size: int = Field(32, ge=1, description="Most entities scored together.")
    batch_wait_timeout_s: float = Field(
        0.0,
        ge=0,
        description="Longest wait to fill a batch; 0 batches what queued while the last batch ran (no added latency).",
    )


class InferenceLogConfig(StrictModel):
    """The inference log: every prediction and every feedback label, as parquet under the storage root."""

    enabled: bool = Field(True, description="Write the inference log.")
    flush_rows: int = Field(1000, ge=1, description="A replica writes a file after this many rows…")
    flush_seconds: float = Field(2.0, gt=0, description="…or after this long.")


class AuthConfig(StrictModel):
    """API key required on /predict and /feedback; none when both fields are null."""

    api_key_env: str | None = Field(None, description="Environment variable that holds the API key.")
    api_key_file: ProjectPath | None = Field(None, description="File that holds the API key.")
    allow_anonymous: bool = Field(
        False,
        description="/predict answers requests without an API key: with no key configured, although"
        " `serve.host` is not loopback (without this, such a config is refused); with one, requests"
        " without it are answered too, as anonymous traffic (`monitor.triggers.min_authenticated_share`),"
        " while a wrong key is still refused and /feedback still needs the key.",
    )

    @property
    def enabled(self) -> bool:
        return self.api_key_env is not None or self.api_key_file is not None


class ReplicaResources(StrictModel):
    """What each model replica reserves on the cluster (Ray actor resources)."""

    num_cpus: float = Field(0.5, gt=0, description="CPUs per replica.")
    num_gpus: float = Field(
        0.0, ge=0, description="GPUs per replica (fractions share one); the model runs on it. 0: CPU."
    )
    memory: int | None = Field(None, ge=1, description="Bytes of memory per replica; Ray's default when omitted.")

    def actor_options(self) -> dict[str, float | int]:
        """Ray's ``ray_actor_options`` for these resources."""
        options: dict[str, float | int] = {"num_cpus": self.num_cpus}
        if self.num_gpus:
            options["num_gpus"] = self.num_gpus
        if self.memory is not None:
            options["memory"] = self.memory
        return options


class ProxyHealthConfig(StrictModel):
    """How Serve's controller checks its HTTP proxies (it restarts one after 3 failed checks).

    Ray's defaults (10 s timeout) make a proxy on a saturated 2-core machine miss its checks and
    be restarted while it starts; raylane waits a restart out either way, but rarely needs to.
    Applied when Serve's controller is first started on the cluster.
    """

    period_s: float = Field(10.0, gt=0, description="Seconds between health checks of a proxy.")
    timeout_s: float = Field(30.0, gt=0, description="Seconds a health check may take before it counts as failed.")
    restart_wait_s: float = Field(
        180.0, gt=0, description="How long `serve deploy` waits out a proxy or controller restart before failing."
    )

    def env_vars(self) -> dict[str, str]:
        """The Serve controller's environment variables for these settings."""
        return {
            "RAY_SERVE_PROXY_HEALTH_CHECK_PERIOD_S": f"{self.period_s:g}",
            "RAY_SERVE_PROXY_HEALTH_CHECK_TIMEOUT_S": f"{self.timeout_s:g}",
        }


class RolloutConfig(StrictModel):
    """How a challenger that passed the gate reaches traffic; see docs/rollouts.md."""

    mode: Literal["immediate", "shadow", "canary"] = Field(
        "immediate",
        description="`immediate`: the gate promotes it, it takes all traffic at once. `shadow`: a challenger"
        " that passes the gate beside a champion stays `challenger`; every request is answered by the"
        " champion while each replica also scores the challenger on the same features, off the response"
        " path, into the inference log's `shadow` folder; window reports show both live metrics; end it"
        " with `raylane rollout promote|abort CONFIG`. `canary`: the challenger answers a stable share of"
        " entities (hashed by entity key), stepping through `steps`; the monitor judges each step on the"
        " labelled predictions of both versions and advances, promotes or aborts.",
    )
    max_pending: int = Field(
        1000,
        ge=1,
        description="Shadow: requests a replica may hold for the challenger; beyond, a request is not"
        " shadowed (counted in raylane_shadow_dropped_total), so the challenger never slows serving.",
    )
    steps: list[float] = Field(
        default_factory=lambda: [5.0, 25.0, 50.0],
        min_length=1,
        description="Canary: the percent of entities the challenger answers at each step, increasing; after"
        " the last step's evidence holds, it is promoted.",
    )
    min_predictions: int = Field(
        500, ge=1, description="Canary: predictions the challenger must make at a step before it is judged."
    )
    min_labels: int = Field(
        200,
        ge=2,
        description="Canary: labelled predictions each version needs (since the rollout began) to be judged.",
    )
    max_step_s: Duration = Field(
        timedelta(days=1),
        description="Canary: a step that has not reached a verdict by then (too little evidence, or an"
        " interval that stays across the margin) is aborted. A duration (`90s`, `6h`, `1d`) or seconds.",
    )
    margin: float = Field(
        0.0,
        ge=0,
        description="Canary: how much worse than the champion (in the metric's units) the challenger may be."
        " A step advances when the whole interval of (challenger − champion) is above −margin, aborts when"
        " it is all below.",
    )
    confidence: float = Field(
        0.95, gt=0.5, lt=1, description="Canary: the two-sided confidence of the bootstrap interval."
    )
    resamples: int = Field(1000, ge=100, description="Canary: bootstrap resamples per judgement.")
    max_error_rate: float = Field(
        0.01,
        ge=0,
        le=1,
        description="Canary guard: abort when the share of the challenger's entities it failed to score"
        " with a model error (a 5xx of its own; the inference log's `failures` folder) exceeds this.",
    )
    max_latency_ratio: float | None = Field(
        3.0,
        gt=1,
        description="Canary guard: abort when the challenger's p99 scoring latency at this step is over this"
        " multiple of the champion's at the same step (the time each request took to be scored, features and"
        " model; the inference log's `latency_ms`), once each version has max(`min_predictions`, 100)"
        " answers at the step. `null` turns the guard off.",
    )
    seed: int = Field(0, description="Canary: the bootstrap's random seed (judgements are reproducible).")

    @model_validator(mode="after")
    def _steps_increase(self) -> RolloutConfig:
        steps = self.steps
        if any(not 0 < s <= 100 for s in steps) or any(a >= b for a, b in itertools.pairwise(steps)):
            raise ValueError(
                f"serve.rollout.steps must be increasing percents in (0, 100], e.g. [5, 25, 50]; got {steps}"
            )
        return self


class ServeConfig(StrictModel):
    """Ray Serve application."""

    host: str = Field("127.0.0.1", description="HTTP bind address.")
    port: int = Field(8000, ge=1, le=65535, description="HTTP port.")
    route_prefix: str = Field("/", description="Route prefix of the application.")
    max_ongoing_requests: int = Field(64, ge=1, description="Per replica; Ray's default of 5 throttles batching.")
    max_queued_requests: int = Field(256, ge=1, description="Beyond this, 503 with Retry-After.")
    resources: ReplicaResources = Field(
        default_factory=ReplicaResources, description="What each model replica reserves (CPUs, GPUs, memory)."
    )
    autoscaling: AutoscalingConfig = Field(default_factory=AutoscalingConfig, description="Autoscaling.")
    batching: BatchingConfig = Field(default_factory=BatchingConfig, description="Batching.")
    auth: AuthConfig = Field(default_factory=AuthConfig, description="API key authentication.")
    max_body_bytes: int = Field(1 << 20, ge=1, description="Larger request bodies get 413.")
    max_entities_per_request: int = Field(256, ge=1, description="Most entities in one /predict.")
    request_timeout_s: float = Field(10.0, gt=0, description="Requests running longer get 504.")
    retry_after_s: float = Field(1.0, ge=0, description="`Retry-After` of a 503 answered under backpressure.")
    model_alias: str = Field("champion", description="The registry alias served; replicas follow it when it moves.")
    model_poll_s: float = Field(2.0, gt=0, description="How often replicas check where the alias points.")
    unknown_entity: Literal["reject", "impute"] = Field(
        "reject",
        description="An entity the online store has no features for: `reject` answers 404 naming it;"
        " `impute` predicts with the features missing (as training treated nulls).",
    )
    inference_log: InferenceLogConfig = Field(default_factory=InferenceLogConfig, description="Inference log.")
    proxy_health: ProxyHealthConfig = Field(
        default_factory=ProxyHealthConfig, description="Health checks of Serve's HTTP proxies, and restarts."
    )
    rollout: RolloutConfig = Field(
        default_factory=RolloutConfig, description="How a new champion reaches traffic (at once, or shadowed first)."
    )

    @property
    def loopback(self) -> bool:
        """True when `host` is reachable from this machine only."""
        return self.host in ("localhost", "::1") or self.host.startswith("127.")

    @property
    def exposure_warning(self) -> str | None:
        """What to tell a user who binds the service to every interface."""
        if self.host not in ("0.0.0.0", "::"):
            return None
        how = "with an API key" if self.auth.enabled else "WITHOUT an API key (serve.auth.allow_anonymous)"
        return (
            f"serve.host is {self.host!r}: the service listens on every network interface of this machine,"
            f" {how}; bind it to one address (or 127.0.0.1 behind a proxy) unless that is what you want"
        )

    @model_validator(mode="after")
    def _shadow_needs_the_log(self) -> ServeConfig:
        if self.rollout.mode != "immediate" and not self.inference_log.enabled:
            raise ValueError(
                f"serve.rollout.mode is {self.rollout.mode}, but serve.inference_log.enabled is false: the"
                " rollout is judged on the inference log's predictions; enable it (or use mode: immediate)"
            )
        return self

    @model_validator(mode="after")
    def _auth_beyond_loopback(self) -> ServeConfig:
        if not self.loopback and not self.auth.enabled and not self.auth.allow_anonymous:
            raise ValueError(
                f"serve.host is {self.host!r}, reachable from other machines, and serve.auth has no API key;"
                " set serve.auth.api_key_env or serve.auth.api_key_file (or serve.auth.allow_anonymous: true)"
            )
        return self


class DriftConfig(StrictModel):
    """Drift detection against the champion's reference profile (whylogs' algorithms)."""

    numeric: Literal["ks", "hellinger"] = Field("ks", description="Algorithm for numeric columns.")
    categorical: Literal["chi_square"] = Field("chi_square", description="Algorithm for categorical columns.")
    threshold: float = Field(
        0.01,
        gt=0,
        description="A column drifts when its p-value (KS, chi-square) is below this, or its Hellinger"
        " distance above it.",
    )


class TriggersConfig(StrictModel):
    """When the monitor schedules a retrain."""

    drifted_features: int | None = Field(3, ge=1, description="Retrain when at least this many features drift.")
    live_metric_below: float | None = Field(
        None,
        description="Retrain when the live metric (the gate's metric on labelled predictions) is worse than this.",
    )
    every: Duration | None = Field(None, description="Retrain on a schedule (continuous training), e.g. 24h.")
    min_rows: int = Field(
        100,
        ge=1,
        description="Drift counts only in windows of at least this many rows (accepted requests only:"
        " refused ones are never profiled), so a handful of junk requests cannot trigger a retrain.",
    )
    min_authenticated_share: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Drift and decay count only in windows where at least this share of the rows came"
        " with the API key (anonymous requests are answered with `serve.auth.allow_anonymous`); a window"
        " below it records the trigger as skipped. Needs `serve.auth.api_key_env` or `api_key_file`.",
    )


class MonitorConfig(StrictModel):
    """The monitor actor: windows, drift, quality and retrain policy."""

    enabled: bool = Field(True, description="Profile live traffic; `raylane serve deploy` starts the monitor.")
    window_rows: int | None = Field(1000, ge=1, description="Close a window after this many rows.")
    window_seconds: float | None = Field(None, gt=0, description="Close a window after this long (rows or not).")
    flush_rows: int = Field(
        1000,
        ge=1,
        description="Replicas send a profile after this many rows (a whylogs profile costs about 80 ms of"
        " replica CPU whatever its size: fewer, larger profiles cost serving less)…",
    )
    flush_seconds: float = Field(5.0, gt=0, description="…or after this long.")
    drift: DriftConfig = Field(default_factory=DriftConfig, description="Drift detection.")
    max_null_fraction: float = Field(
        0.5, ge=0, le=1, description="Quality: most nulls a feature may have (a source column's own limit wins)."
    )
    min_labels: int = Field(30, ge=1, description="Labelled predictions a window needs for a live metric.")
    triggers: TriggersConfig = Field(default_factory=TriggersConfig, description="Retrain triggers.")
    cooldown: Duration = Field(timedelta(minutes=30), description="Least time between two retrains.")
    job_address: str | None = Field(
        None,
        description="The Ray job API retrains are submitted to (http://host:8265); the cluster the monitor"
        " runs on when omitted.",
    )
    max_pending_profiles: int = Field(
        1000, ge=1, description="Profiles a replica keeps while the monitor cannot be reached (then drops the oldest)."
    )

    @model_validator(mode="after")
    def _a_window_closes(self) -> MonitorConfig:
        if self.window_rows is None and self.window_seconds is None:
            raise ValueError("set monitor.window_rows or monitor.window_seconds: a window must close somehow")
        return self


class BatchConfig(StrictModel):
    """`raylane predict`: scoring many entities with a registered model on Ray Data."""

    batch_size: int = Field(
        65536,
        ge=1,
        description="Rows per batch each scoring actor gets (the model runs on them 8,192 at a time);"
        " each batch's point-in-time join has a fixed cost of 0.1-0.2 s, so small batches are slow.",
    )
    concurrency: int = Field(2, ge=1, description="Scoring actors (each loads the model once).")
    num_cpus: float = Field(
        1.0,
        gt=0,
        description="CPUs each scoring actor reserves; less when the pool would leave its read tasks"
        " no free CPU (the run would wait for ever).",
    )
    num_gpus: float = Field(0.0, ge=0, description="GPUs each scoring actor reserves (fractions share one).")
    time_column: str | None = Field(
        None,
        description="The per-row timestamp column of the entities file (features as of each row's time);"
        " the labels source's `timestamp_column` when omitted.",
    )
    pipeline_entities: str | None = Field(
        None,
        description="The `--entities` of `raylane run`'s last step, `predict` (`all`, or a file or folder),"
        " scored with the champion into `<storage_root>/scores/`; the step is skipped when null.",
    )
