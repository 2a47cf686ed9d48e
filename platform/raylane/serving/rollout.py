"""A replica's side of a rollout (`raylane.registry.Rollout`): the challenger shadowed, or
answering the canary's share of entities.

The registry is the one source of truth: every ``serve.model_poll_s`` each replica reads the
rollout from the challenger's version tags (the monitor, or ``raylane rollout``, moves them) and
follows. In ``shadow`` the challenger scores what the champion answered (`raylane.serving.shadow`);
in ``canary`` a request whose (first) entity falls in the step's share is answered by the
challenger alone, and the answer names it (``model.version``, ``model.alias: challenger``). The
share is decided by the entity key's SHA-256, the same on every replica and after any restart:
one entity always sees one model at a step, and an entity in the canary stays in it as the share
grows. When the rollout ends (promoted, aborted, by the monitor or by hand) every replica is back
on the champion alone within one poll.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from raylane.registry import Rollout
    from raylane.serving.shadow import Shadow

__all__ = ["RolloutFollower", "bucket"]

log = logging.getLogger("ray.serve")


def bucket(key: Any) -> float:
    """The entity's place in [0, 100): it is in the canary when below the step's percent."""
    digest = hashlib.sha256(str(key).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


class RolloutFollower:
    """What one replica does for the rollout in progress."""

    def __init__(self, shadow: Shadow) -> None:
        self.shadow = shadow
        self.rollout: Rollout | None = None
        self._challenger: Any = None  # the challenger's LoadedModel while a rollout runs
        self._canary: tuple[Any, float] | None = None  # (model, percent), read in one step

    def follow(self, rollout: Rollout | None, champion: str, load: Callable[[str], Any]) -> None:
        """Take ``rollout`` (None: no rollout); ``load(version)`` loads the challenger once."""
        version = None if rollout is None or rollout.challenger == champion else rollout.challenger
        if version is None:
            model = None
        elif self._challenger is not None and self._challenger.version == version:
            model = self._challenger
        else:
            model = load(version)
        if rollout != self.rollout:
            shown = "none" if rollout is None else f"{rollout.mode} of v{rollout.challenger} at {rollout.percent:g}%"
            log.info("raylane: rollout now %s (champion v%s)", shown, champion)
        self._challenger, self.rollout = model, rollout if model is not None else None
        mode = rollout.mode if rollout is not None and model is not None else None
        self.shadow.use(model if mode == "shadow" else None)
        self._canary = (model, rollout.percent) if mode == "canary" and rollout is not None else None

    def route(self, key: Any) -> Any:
        """The challenger's model when ``key`` is in the canary's share, else None (the champion)."""
        canary = self._canary
        if canary is not None and bucket(key) < canary[1]:
            return canary[0]
        return None

    def state(self) -> dict[str, Any]:
        """The rollout as this replica follows it (/metadata)."""
        r = self.rollout
        if r is None:
            return {"active": None}
        active: dict[str, Any] = {
            "mode": r.mode,
            "challenger": r.challenger,
            "champion": r.champion,
            "since": r.since.isoformat(),
        }
        if r.mode == "canary":
            active |= {"step": r.step, "percent": r.percent, "step_since": r.step_since.isoformat()}
        return {"active": active, **({"shadow": self.shadow.state()} if r.mode == "shadow" else {})}
