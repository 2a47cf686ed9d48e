"""The model registry: MLflow registered models with aliases ``champion`` and ``challenger``.

One registered model per project. Every trained model becomes a version with alias
``challenger``; the promotion gate compares it with the champion on the same holdout and moves
``champion`` only when it passes (or, for the first model, when it clears the configured floor).
The decision, its reason and both metrics are recorded as version tags, whether it passed, failed
or errored; aliases move only after the decision was made. `Registry.gate_and_promote` is the one
promotion path (training, sweeps, retraining and ``raylane registry promote``); `decide` is the
pure decision it rests on. ``rollback`` moves ``champion`` back
along the history kept in the registered model's ``champion_history`` tag.
"""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from raylane.bundle import ModelBundle
from raylane.config import ProjectConfig
from raylane.errors import RegistryError

__all__ = ["GateDecision", "Registry", "RegistryError", "Rollout", "decide"]

CHAMPION, CHALLENGER = "champion", "challenger"
_HISTORY = "champion_history"
ROLLOUT_MODES = ("shadow", "canary")
_ENDED = {"promote": "promoted", "abort": "aborted"}


@dataclass(frozen=True)
class Rollout:
    """A rollout in progress, as the challenger's version tags record it (the one source of truth:
    replicas route by it, the monitor judges and moves it, a restart of either resumes from it)."""

    mode: str  # shadow | canary
    champion: str
    challenger: str
    step: int  # canary: the index into serve.rollout.steps
    percent: float  # canary: the share of entities the challenger answers
    since: datetime  # the rollout began
    step_since: datetime  # this step began


@dataclass(frozen=True)
class GateDecision:
    """The outcome of the promotion gate for one challenger."""

    version: str
    passed: bool
    metric: str
    challenger: float
    champion: float | None
    champion_version: str | None
    reason: str
    held: bool = False  # passed, but kept as challenger for the shadow rollout

    @property
    def promoted(self) -> bool:
        return self.passed and not self.held


class Registry:
    """The project's registered model, through an explicit `MlflowClient`."""

    def __init__(self, cfg: ProjectConfig) -> None:
        from mlflow import MlflowClient

        self.cfg = cfg
        self.name = cfg.model_name
        cfg.private_storage()  # before MLflow makes its SQLite database there
        self.client = MlflowClient(tracking_uri=cfg.mlflow_tracking_uri, registry_uri=cfg.mlflow_tracking_uri)

    # ----- reading

    def version(self, ref: str) -> Any:
        """A model version by ``N``, ``@alias``, ``name/N`` or ``name@alias``."""
        from mlflow.exceptions import MlflowException

        name, _, rest = ref.rpartition("@") if "@" in ref else ref.rpartition("/")
        name = name or self.name
        try:
            if "@" in ref:
                return self.client.get_model_version_by_alias(name, rest)
            return self.client.get_model_version(name, rest)
        except MlflowException as exc:
            raise RegistryError(
                f"no model version {ref!r} in registered model {name!r}",
                fix="`raylane registry list CONFIG` shows the versions and aliases",
            ) from exc

    def champion(self) -> Any | None:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version_by_alias(self.name, CHAMPION)
        except MlflowException:
            return None

    def versions(self) -> list[Any]:
        from mlflow.exceptions import MlflowException

        try:
            found = self.client.search_model_versions(f"name = '{self.name}'")
        except MlflowException:
            return []
        return sorted(found, key=lambda v: int(v.version))

    def aliases(self) -> dict[str, str]:
        from mlflow.exceptions import MlflowException

        try:
            return {k: str(v) for k, v in self.client.get_registered_model(self.name).aliases.items()}
        except MlflowException:
            return {}

    def load_bundle(self, version: str) -> ModelBundle:
        """Download a version's bundle and load it (no unpickling)."""
        import mlflow

        # Resolved through this registry's client: a `models:/` URI would go through MLflow's global
        # registry URI, which a fresh process (a Serve replica) has not set.
        source = self.client.get_model_version_download_uri(self.name, version)
        with tempfile.TemporaryDirectory(prefix="raylane-model-") as tmp:
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=source, dst_path=tmp, tracking_uri=self.cfg.mlflow_tracking_uri
            )
            return ModelBundle.load(Path(local) / "artifacts" / "bundle")

    # ----- writing

    def register(self, model_uri: str, run_id: str, tags: dict[str, str]) -> str:
        """A new version with alias ``challenger``; returns its number.

        While a rollout is in progress its version keeps ``challenger``: a new version (a retrain's,
        a sweep's) takes the alias only by starting its own rollout, which supersedes that one
        (`start_rollout`), or by being promoted; one that fails the gate leaves the rollout as it was.
        """
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(self.name)
        except MlflowException:
            self.client.create_registered_model(self.name, description=f"raylane project {self.cfg.project}")
        in_progress = self.current_rollout()
        mv = self.client.create_model_version(self.name, model_uri, run_id=run_id, tags=tags)
        if in_progress is None:
            self.client.set_registered_model_alias(self.name, CHALLENGER, mv.version)
        return str(mv.version)

    def evaluate(self, version: str, holdout: pd.DataFrame) -> dict[str, float]:
        """The holdout metrics of a version's own bundle."""
        from raylane.model import metrics

        bundle = self.load_bundle(version)
        return metrics(self.cfg.model.task, bundle.target(holdout), bundle.predict(holdout))

    def gate(self, version: str, holdout: pd.DataFrame, challenger_metrics: dict[str, float]) -> GateDecision:
        """Decide whether ``version`` may become champion (see `decide`); records nothing, moves no alias.

        Raises:
            RegistryError: the promotion metric is not among ``challenger_metrics``.
        """
        from raylane.model import primary_metric

        promo = self.cfg.registry.promotion
        metric, mode = primary_metric(self.cfg.model.task, promo.metric)
        if metric not in challenger_metrics:
            raise RegistryError(
                f"registry.promotion.metric {metric!r} is not a {self.cfg.model.task} metric",
                fix=f"use one of {sorted(challenger_metrics)}",
            )
        current = self.champion()
        theirs = None if current is None else self.evaluate(str(current.version), holdout)[metric]
        return decide(
            version,
            metric,
            mode,
            challenger_metrics[metric],
            champion=theirs,
            champion_version=None if current is None else str(current.version),
            floor=promo.floor,
            margin=promo.min_improvement,
            holdout_rows=len(holdout),
        )

    def gate_and_promote(
        self,
        version: str,
        holdout: pd.DataFrame,
        challenger_metrics: dict[str, float] | None = None,
        *,
        rollout: bool = False,
    ) -> GateDecision:
        """The one promotion path: gate ``version`` on ``holdout``, record the decision, promote if it passed.

        Args:
            version: A registered version (the challenger).
            holdout: The raw holdout frame (features and label) both models are scored on.
            challenger_metrics: The challenger's holdout metrics when already known (training has
                them); evaluated from the version's own bundle when omitted.
            rollout: Follow ``serve.rollout``: in ``shadow`` or ``canary`` mode a version that passes
                beside a champion stays ``challenger`` and its rollout starts (`start_rollout`)
                instead of being promoted.
                Training's path; a promotion by hand passes False.

        Raises:
            Whatever evaluating or gating raised, after recording it as the version's gate error;
            no alias moved.
        """
        try:
            scores = self.evaluate(version, holdout) if challenger_metrics is None else challenger_metrics
            decision = self.gate(version, holdout, scores)
        except Exception as exc:  # the gate errored: record it, move nothing
            self.record(None, error=f"{type(exc).__name__}: {exc}", version=version)
            raise
        mode = self.cfg.serve.rollout.mode
        if decision.passed and rollout and mode in ROLLOUT_MODES and decision.champion is not None:
            how = (
                "the monitor judges it on live labels and promotes or aborts it"
                if mode == "canary"
                else "end it with `raylane rollout promote|abort CONFIG`"
            )
            decision = replace(decision, held=True, reason=f"{decision.reason}; held for the {mode} rollout: {how}")
            self.record(decision)
            self.start_rollout(version, mode)
            return decision
        self.record(decision)
        if decision.passed:
            self.promote(version, decision.reason)
        return decision

    def record(self, decision: GateDecision | None, *, error: str | None = None, version: str | None = None) -> None:
        """Write a gate decision (or the gate's error) as tags of the version."""
        v = decision.version if decision else version
        assert v is not None
        tags = (
            {"gate.decision": "error", "gate.reason": error or "unknown error"}
            if decision is None
            else {
                "gate.decision": "passed" if decision.passed else "failed",
                "gate.reason": decision.reason,
                "gate.metric": decision.metric,
                "gate.challenger": f"{decision.challenger:.6f}",
                "gate.champion": "" if decision.champion is None else f"{decision.champion:.6f}",
                "gate.champion_version": decision.champion_version or "",
            }
        )
        for k, value in tags.items():
            self.client.set_model_version_tag(self.name, v, k, value)

    def promote(self, version: str, reason: str) -> None:
        """Move ``champion`` to ``version`` and append it to the champion history."""
        self.version(version)  # fail before moving anything
        rollout = self.current_rollout()
        if rollout is not None and rollout.challenger != str(version):  # another version won meanwhile
            self._tag(
                rollout.challenger, {"rollout.reason": f"superseded: v{version} promoted", "rollout": "superseded"}
            )
        history = self._history()
        self.client.set_registered_model_alias(self.name, CHAMPION, version)
        history.append(str(version))
        self.client.set_registered_model_tag(self.name, _HISTORY, json.dumps(history))
        self.client.set_model_version_tag(self.name, version, "promoted", reason)

    def rollout(self) -> tuple[str | None, str | None]:
        """(champion, challenger) versions; the challenger is None when it is the champion or unset."""
        aliases = self.aliases()
        champion, challenger = aliases.get(CHAMPION), aliases.get(CHALLENGER)
        return champion, None if challenger == champion else challenger

    def current_rollout(self) -> Rollout | None:
        """The rollout in progress (the challenger's ``rollout*`` tags), or None."""
        champion, challenger = self.rollout()
        if champion is None or challenger is None:
            return None
        tags = self.version(challenger).tags
        if tags.get("rollout") not in ROLLOUT_MODES or "rollout.since" not in tags:
            return None
        since = datetime.fromisoformat(tags["rollout.since"])
        return Rollout(
            mode=tags["rollout"],
            champion=champion,
            challenger=challenger,
            step=int(tags.get("rollout.step", "0")),
            percent=float(tags.get("rollout.percent", "0")),
            since=since,
            step_since=datetime.fromisoformat(tags.get("rollout.step_since", tags["rollout.since"])),
        )

    def start_rollout(self, version: str, mode: str | None = None) -> Rollout:
        """Put ``version`` beside the champion as ``challenger`` in ``mode`` (``serve.rollout.mode``
        by default): shadowed, or answering the first canary step's share of entities."""
        mode = mode or self.cfg.serve.rollout.mode
        if mode not in ROLLOUT_MODES:
            raise RegistryError(
                f"serve.rollout.mode is {mode!r}: there is no rollout to start",
                fix="set serve.rollout.mode to shadow or canary (or promote the version directly)",
            )
        champion = self.champion()
        self.version(version)  # fail before tagging anything
        if champion is None or str(champion.version) == str(version):
            raise RegistryError(
                f"version {version} cannot be rolled out: "
                + ("there is no champion beside it" if champion is None else "it is the champion"),
                fix="a rollout puts a new version beside the champion; `raylane registry list CONFIG` shows them",
            )
        at = datetime.now(UTC).isoformat(timespec="seconds")
        previous = self.current_rollout()
        if previous is not None and previous.challenger != str(version):  # a newer model replaces it
            self._tag(previous.challenger, {"rollout.reason": f"superseded by v{version}", "rollout": "superseded"})
        first = self.cfg.serve.rollout.steps[0] if mode == "canary" else 0.0
        self._tag(version, {"rollout.step": "0", "rollout.percent": f"{first:g}", "rollout.since": at})
        self._tag(version, {"rollout.step_since": at, "rollout": mode})
        self.client.set_registered_model_alias(self.name, CHALLENGER, version)
        started = self.current_rollout()
        assert started is not None
        return started

    def advance_rollout(self, rollout: Rollout, step: int) -> None:
        """Take the canary to ``step`` (its percent from ``serve.rollout.steps``)."""
        percent = self.cfg.serve.rollout.steps[step]
        at = datetime.now(UTC).isoformat(timespec="seconds")
        self._tag(rollout.challenger, {"rollout.step_since": at, "rollout.percent": f"{percent:g}"})
        self._tag(rollout.challenger, {"rollout.step": str(step)})

    def end_rollout(self, action: str, reason: str) -> Rollout:
        """``promote`` the challenger (``champion`` moves; the old one is the rollback target) or
        ``abort`` (it stays ``challenger``, tagged aborted: all traffic to the champion), with the
        reason recorded on its version. Returns the rollout as it was."""
        rollout = self.current_rollout()
        if rollout is None:
            champion, challenger = self.rollout()
            raise RegistryError(
                f"registered model {self.name!r} has no rollout to {action}: the challenger is"
                + (f" v{challenger}, not in a rollout" if challenger else " the champion" if champion else " not set"),
                fix="`raylane rollout start CONFIG VERSION`, or train with serve.rollout.mode shadow or canary",
            )
        if action == "promote":
            self.promote(rollout.challenger, f"rollout ({rollout.mode}) promoted: {reason}")
        at = datetime.now(UTC).isoformat(timespec="seconds")
        self._tag(rollout.challenger, {"rollout.reason": reason, "rollout.ended_at": at, "rollout": _ENDED[action]})
        return rollout

    def _tag(self, version: str, tags: dict[str, str]) -> None:
        for k, value in tags.items():
            self.client.set_model_version_tag(self.name, version, k, value)

    def rollback(self) -> tuple[str, str]:
        """Move ``champion`` back to the previous champion; returns (from, to) versions."""
        history = self._history()
        current = self.champion()
        if current is None or len(history) < 2:
            raise RegistryError(
                f"registered model {self.name!r} has no previous champion to roll back to",
                fix="promote a version first: `raylane registry promote CONFIG VERSION`",
            )
        history.pop()
        previous = history[-1]
        self.client.set_registered_model_alias(self.name, CHAMPION, previous)
        self.client.set_registered_model_tag(self.name, _HISTORY, json.dumps(history))
        self.client.set_model_version_tag(
            self.name, str(current.version), "rolled_back", f"champion back to v{previous}"
        )
        return str(current.version), previous

    def _history(self) -> list[str]:
        tags = self.client.get_registered_model(self.name).tags
        return list(json.loads(tags.get(_HISTORY, "[]")))


def decide(
    version: str,
    metric: str,
    mode: str,
    challenger: float,
    *,
    champion: float | None,
    champion_version: str | None,
    floor: float | None,
    margin: float,
    holdout_rows: int,
) -> GateDecision:
    """The gate's decision, from the numbers alone (no MLflow, no data).

    A first model (``champion`` is None) passes when it clears ``floor`` (or there is none); a
    challenger passes when it beats the champion's metric on the same holdout by ``margin`` (a tie
    passes only with a zero margin). ``mode`` is ``max`` or ``min`` (lower is better). A NaN
    metric never passes.
    """
    if champion is None:
        if math.isnan(challenger):
            return GateDecision(version, False, metric, challenger, None, None, f"first model; {metric} is NaN")
        if floor is None or _better_or_equal(challenger, floor, mode):
            reason = f"first model; {metric} {challenger:.4f}" + (
                f" clears the floor {floor}" if floor is not None else ""
            )
            return GateDecision(version, True, metric, challenger, None, None, reason)
        reason = f"first model; {metric} {challenger:.4f} misses the floor {floor}"
        return GateDecision(version, False, metric, challenger, None, None, reason)
    target = champion + margin if mode == "max" else champion - margin
    passed = _better_or_equal(challenger, target, mode) and not math.isnan(challenger)
    if passed and challenger == champion:  # only a zero margin lets a tie through
        verb, by = "ties", " (with the margin 0, a tie passes)"
    else:
        verb, by = ("beats" if passed else "does not beat"), f" by the margin {margin}"
    reason = (
        f"{metric} {challenger:.4f} {verb} champion v{champion_version}'s {champion:.4f}{by}"
        f" on the same holdout ({holdout_rows:,} rows)"
    )
    return GateDecision(version, passed, metric, challenger, champion, champion_version, reason)


def _better_or_equal(value: float, target: float, mode: str) -> bool:
    return value >= target if mode == "max" else value <= target
