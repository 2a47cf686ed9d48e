"""A deterministic generator for the second example project: support-ticket routing.

This is example data, not platform code: no stage of raylane imports it. It writes two raw
sources that `configs/tickets.yaml` declares:

- ``tickets.parquet``: one row per ticket at its creation time: a short free-text ``subject``
  and ``body``, the customer's ``tier`` (categorical) and ``account_age_days`` (numeric, some
  missing).
- ``labels.parquet``: per ticket, when it was resolved and the ``team`` that resolved it (one of
  `TEAMS`: a multiclass label).

The text is what tells the teams apart: each team has its own words, mixed with words every
team shares and, in a fraction of tickets, words of another team. Tier and account age only
shift the odds a little (enterprise customers open more technical tickets, new accounts more
account ones), so a model that reads the text reaches a macro-F1 far above one that does not.

The drift knob: from ``drift_start_day`` on, a new product launch brings a new vocabulary into
technical tickets and more shipping tickets arrive, so a model trained before it decays after.

The same seed and sizes always give the same bytes of data.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["SIZES", "TEAMS", "TicketDataSpec", "generate", "write"]

EPOCH = datetime(2025, 1, 1, tzinfo=UTC)

TEAMS = ["billing", "technical", "account", "shipping", "sales"]
TIERS = np.array(["free", "pro", "enterprise"])


def _words(text: str) -> list[str]:
    return text.split()


_WORDS: dict[str, list[str]] = {
    "billing": _words(
        "invoice charge charged refund payment card billed overcharged receipt vat price subscription"
        " renewal credit declined"
    ),
    "technical": _words(
        "error crash bug login timeout api server slow broken install update sync outage exception freeze"
    ),
    "account": _words(
        "password reset email username profile delete close locked verify security two factor access rename"
    ),
    "shipping": _words(
        "delivery package tracking shipped courier arrived damaged address parcel late lost warehouse return label"
    ),
    "sales": _words(
        "quote pricing demo upgrade plan discount seats trial contract enterprise purchase licence partner offer"
    ),
}
_COMMON = _words("please help hi hello thanks issue problem question urgent my our the a with since today again")
_SHARED = [*_COMMON, "account", "order", "team", "customer", "support", "need"]
_LAUNCH = ["hub", "gateway", "widget", "firmware", "pairing", "bluetooth"]  # the drift's new vocabulary


@dataclass(frozen=True)
class TicketDataSpec:
    """Sizes and knobs of a generated data set."""

    tickets: int = 2_000
    days: int = 60
    seed: int = 11
    noise: float = 0.15  # fraction of a ticket's topical words taken from another team
    drift_start_day: int | None = None


SIZES: dict[str, TicketDataSpec] = {
    "tiny": TicketDataSpec(tickets=2_000),
    "small": TicketDataSpec(tickets=20_000, days=120),
    "medium": TicketDataSpec(tickets=200_000, days=120),
}


def _ts(days: np.ndarray) -> pd.DatetimeIndex:
    # Whole seconds keep parquet round trips exact.
    return pd.to_datetime(EPOCH) + pd.to_timedelta(np.round(days * 86400.0), unit="s")


def _text(rng: np.random.Generator, team: int, n_topic: int, n_shared: int, noise: float, launch: bool) -> str:
    words: list[str] = []
    for _ in range(n_topic):
        source = int(rng.integers(len(TEAMS))) if rng.random() < noise else team
        vocab = _LAUNCH if launch and TEAMS[source] == "technical" and rng.random() < 0.5 else _WORDS[TEAMS[source]]
        words.append(vocab[int(rng.integers(len(vocab)))])
    words += [_SHARED[int(i)] for i in rng.integers(len(_SHARED), size=n_shared)]
    rng.shuffle(words)
    return " ".join(words)


def generate(spec: TicketDataSpec) -> dict[str, pd.DataFrame]:
    """Generate the raw tables: ``tickets`` and ``labels``."""
    rng = np.random.default_rng(spec.seed)
    n = spec.tickets
    created = np.sort(rng.uniform(0, spec.days, n))
    launch = created >= spec.drift_start_day if spec.drift_start_day is not None else np.zeros(n, dtype=bool)
    tier = rng.choice(3, n, p=[0.5, 0.35, 0.15])
    age = rng.gamma(2.0, 200.0, n)
    # Tier and account age shift the team odds a little; the text decides.
    logits = np.zeros((n, len(TEAMS)))
    logits[:, TEAMS.index("technical")] += 0.6 * (tier == 2)
    logits[:, TEAMS.index("account")] += 0.8 * (age < 60)
    logits[:, TEAMS.index("sales")] += 0.4 * (tier == 0)
    logits[:, TEAMS.index("shipping")] += 0.8 * launch
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    team = (p.cumsum(1) > rng.random((n, 1))).argmax(1)
    subjects, bodies = [], []
    for i in range(n):
        subjects.append(
            _text(rng, team[i], int(rng.integers(1, 3)), int(rng.integers(1, 4)), spec.noise, bool(launch[i]))
        )
        bodies.append(
            _text(rng, team[i], int(rng.integers(2, 6)), int(rng.integers(6, 16)), spec.noise, bool(launch[i]))
        )
    ids = np.arange(1, n + 1, dtype=np.int64) * 7 + 100_000
    ages = np.where(rng.random(n) < 0.05, np.nan, np.round(age))
    tickets = pd.DataFrame(
        {
            "ticket_id": ids,
            "subject": pd.array(subjects, dtype=object),
            "body": pd.array(bodies, dtype=object),
            "tier": TIERS[tier].astype(object),
            "account_age_days": pd.array(ages, dtype="Int64"),  # an integer column with nulls, as users have them
            "created_at": _ts(created),
        }
    )
    labels = pd.DataFrame(
        {
            "ticket_id": ids,
            "resolved_at": _ts(created + rng.uniform(1 / 24, 2.0, n)),
            "team": np.array(TEAMS, dtype=object)[team],
        }
    )
    return {"tickets": tickets, "labels": labels}


def write(spec: TicketDataSpec, out_dir: Path) -> dict[str, Path]:
    """Generate and write the raw sources into ``out_dir``; returns the file of each table."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tables = generate(spec)
    paths = {name: out_dir / f"{name}.parquet" for name in tables}
    for name, frame in tables.items():
        frame.to_parquet(paths[name], index=False)
    return paths
