"""Preprocessing for tabular features, fitted on the training split only and saved with the model.

- numeric columns: standardized with the training mean and standard deviation; a missing value
  becomes the training mean (0 after scaling) and sets a per-column missing indicator;
- categorical (string, bool) columns: the ``max_categories`` most frequent training values get
  indices 1…k; index 0 is the bucket for unseen values and nulls;
- text columns (``kind: text``): lower-cased word tokens (`tokenize`); the ``vocab_size`` most
  frequent training tokens get ids 2…, every other token id 1, and each value becomes
  ``max_length`` ids, cut or padded with 0.

At inference an unseen category goes to bucket 0 and an all-null column gives the training means
with every missing indicator set: the model still predicts, from the other columns.

The fitted state is plain JSON (`Preprocessor.to_json`), so loading a model never unpickles.
Fitting is one Ray Data pass of mergeable per-block statistics (`fit_preprocessor`; `fit_frame` fits
one pandas frame the same way, without Ray); the transform is a pure function of a pandas frame,
used by Ray Data in training and by serving alike.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from raylane.config import ColumnType

if TYPE_CHECKING:
    from raylane.contract import ModelInputs

__all__ = ["Preprocessor", "fit_frame", "fit_preprocessor", "merge_stats", "tokenize"]

NUMERIC: tuple[ColumnType, ...] = ("int64", "float64")
PAD, OOV = 0, 1  # token ids: padding, and a token outside the vocabulary

_TOKEN = re.compile(r"\w+")


def tokenize(text: Any) -> list[str]:
    """The tokens of a text value: lower-cased runs of word characters (nothing for a null)."""
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return []
    return _TOKEN.findall(str(text).lower())


@dataclass
class Preprocessor:
    """Fitted preprocessing state. Build it with `fit_preprocessor` (or `fit_frame`)."""

    numeric: list[str]
    categorical: list[str]
    mean: dict[str, float]
    std: dict[str, float]
    vocab: dict[str, list[str]]
    label: str
    task: str
    classes: list[Any] = field(default_factory=list)
    target_mean: float = 0.0
    target_std: float = 1.0
    text: dict[str, dict[str, Any]] = field(default_factory=dict)  # column -> {"vocab": [...], "max_length": n}

    @property
    def num_width(self) -> int:
        """Width of the numeric input: the scaled values, then their missing indicators."""
        return 2 * len(self.numeric)

    @property
    def cardinalities(self) -> list[int]:
        """Embedding sizes per categorical column (bucket 0 included)."""
        return [len(self.vocab[c]) + 1 for c in self.categorical]

    def inputs(self) -> ModelInputs:
        """What the model factory is told about these inputs (`raylane.contract.ModelInputs`)."""
        from raylane.contract import ModelInputs, TextInput, output_dim

        return ModelInputs(
            task=self.task,
            out_dim=output_dim(self.task, self.classes),
            num_width=self.num_width,
            numeric=tuple(self.numeric),
            cardinalities=dict(zip(self.categorical, self.cardinalities, strict=True)),
            text={c: TextInput(len(t["vocab"]) + 2, int(t["max_length"])) for c, t in self.text.items()},
            classes=tuple(self.classes),
        )

    @property
    def features(self) -> list[str]:
        return [*self.numeric, *self.categorical, *self.text]

    def transform(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """Model inputs from a frame with the feature columns: ``x_num`` (float32), ``x_cat`` (int64)
        and one ``[rows, max_length]`` int64 array of token ids per text column."""
        n = len(frame)
        x_num = np.zeros((n, self.num_width), dtype=np.float32)
        for i, col in enumerate(self.numeric):
            values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            missing = ~np.isfinite(values)
            with np.errstate(over="ignore", invalid="ignore"):  # an overflow is `out_of_range`'s to report
                x_num[:, i] = np.where(missing, 0.0, (values - self.mean[col]) / self.std[col])
            x_num[:, len(self.numeric) + i] = missing
        x_cat = np.zeros((n, len(self.categorical)), dtype=np.int64)
        for i, col in enumerate(self.categorical):
            index = {v: j + 1 for j, v in enumerate(self.vocab[col])}
            x_cat[:, i] = [index.get(_key(v), 0) for v in frame[col].tolist()]
        out: dict[str, np.ndarray] = {"x_num": x_num, "x_cat": x_cat}
        for col, spec in self.text.items():
            ids = {tok: j + 2 for j, tok in enumerate(spec["vocab"])}
            length = int(spec["max_length"])
            tokens = np.zeros((n, length), dtype=np.int64)
            for row, value in enumerate(frame[col].tolist()):
                seq = [ids.get(t, OOV) for t in tokenize(value)[:length]]
                tokens[row, : len(seq)] = seq
            out[col] = tokens
        return out

    def out_of_range(self, frame: pd.DataFrame) -> list[list[str]]:
        """Per row, the numeric columns whose scaled value overflows float32 (the model's precision)."""
        bad = np.zeros((len(frame), len(self.numeric)), dtype=bool)
        with np.errstate(over="ignore", invalid="ignore"):
            for i, col in enumerate(self.numeric):
                values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
                scaled = ((values - self.mean[col]) / self.std[col]).astype(np.float32)
                bad[:, i] = np.isfinite(values) & ~np.isfinite(scaled)
        return [[self.numeric[j] for j in np.flatnonzero(row)] for row in bad]

    def encode_target(self, values: pd.Series) -> np.ndarray:
        """The label as the model's training target."""
        if self.task == "regression":
            return ((values.to_numpy(dtype=np.float64) - self.target_mean) / self.target_std).astype(np.float32)
        if self.task == "binary":
            return values.to_numpy(dtype=np.float32)
        # A class the training split never saw gets -100, which the loss and metrics ignore.
        index = {str(c): i for i, c in enumerate(self.classes)}
        return np.array([index.get(str(v), -100) for v in values.tolist()], dtype=np.int64)

    def batch(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """Inputs and target for a training batch (a Ray Data ``map_batches`` function)."""
        out = self.transform(frame)
        out["y"] = self.encode_target(frame[self.label])
        return out

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Preprocessor:
        return cls(**json.loads(text))


def _key(value: Any) -> Any:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return str(value)


def _block_stats(
    frame: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    label: str,
    task: str,
    text: list[str] | None = None,
) -> pd.DataFrame:
    """Mergeable statistics of one block, as a one-row frame holding a JSON document."""
    doc: dict[str, Any] = {"n": len(frame), "num": {}, "cat": {}, "label": {}, "text": {}}
    for col in text or []:
        tokens: dict[str, int] = {}
        for value in frame[col].tolist():
            for tok in tokenize(value):
                tokens[tok] = tokens.get(tok, 0) + 1
        doc["text"][col] = tokens
    for col in numeric:
        v = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        v = v[np.isfinite(v)]
        doc["num"][col] = [int(v.size), float(v.sum()), float((v * v).sum())]
    for col in categorical:
        counts = frame[col].dropna().astype(str).value_counts()
        doc["cat"][col] = {str(k): int(c) for k, c in counts.items()}
    y = frame[label]
    if task == "regression":
        v = y.to_numpy(dtype=np.float64)
        doc["label"] = {"sum": float(v.sum()), "sq": float((v * v).sum()), "n": int(v.size)}
    else:
        doc["label"] = {"classes": sorted({str(c) if task == "multiclass" else c for c in y.dropna().tolist()})}
    return pd.DataFrame({"stats": [json.dumps(doc)]})


def fit_frame(
    frame: pd.DataFrame,
    *,
    dtypes: dict[str, ColumnType],
    label: str,
    task: str,
    max_categories: int,
    text: dict[str, tuple[int, int]] | None = None,
) -> Preprocessor:
    """Fit on one pandas frame (the training split): the same statistics as `fit_preprocessor`, without Ray."""
    numeric, categorical = _columns(dtypes, text)
    stats = _block_stats(frame, numeric, categorical, label, task, list(text or {}))
    return merge_stats(
        [json.loads(stats["stats"][0])],
        numeric=numeric,
        categorical=categorical,
        label=label,
        task=task,
        max_categories=max_categories,
        text=text,
    )


def fit_preprocessor(
    ds: Any,
    *,
    dtypes: dict[str, ColumnType],
    label: str,
    task: str,
    max_categories: int,
    text: dict[str, tuple[int, int]] | None = None,
) -> Preprocessor:
    """Fit on a Ray Dataset (the training split) in one pass. ``text``: per text column, its
    (vocabulary size, max length)."""
    numeric, categorical = _columns(dtypes, text)
    parts = ds.map_batches(
        _block_stats,
        batch_format="pandas",
        fn_kwargs={
            "numeric": numeric,
            "categorical": categorical,
            "label": label,
            "task": task,
            "text": list(text or {}),
        },
    ).take_all()
    return merge_stats(
        [json.loads(p["stats"]) for p in parts],
        numeric=numeric,
        categorical=categorical,
        label=label,
        task=task,
        max_categories=max_categories,
        text=text,
    )


def _columns(dtypes: dict[str, ColumnType], text: dict[str, Any] | None = None) -> tuple[list[str], list[str]]:
    """The numeric and the categorical feature columns (timestamps and text are neither)."""
    numeric = [c for c, t in dtypes.items() if t in NUMERIC]
    categorical = [c for c, t in dtypes.items() if t not in NUMERIC and t != "timestamp" and c not in (text or {})]
    return numeric, categorical


def merge_stats(
    docs: list[dict[str, Any]],
    *,
    numeric: list[str],
    categorical: list[str],
    label: str,
    task: str,
    max_categories: int,
    text: dict[str, tuple[int, int]] | None = None,
) -> Preprocessor:
    """The fitted state from the per-block statistics of every block of the training split."""
    mean: dict[str, float] = {}
    std: dict[str, float] = {}
    for col in numeric:
        n = sum(d["num"][col][0] for d in docs)
        s = sum(d["num"][col][1] for d in docs)
        sq = sum(d["num"][col][2] for d in docs)
        m = s / n if n else 0.0
        var = max(sq / n - m * m, 0.0) if n else 0.0
        mean[col], std[col] = m, (var**0.5 if var > 1e-12 else 1.0)
    vocab = {col: _most_frequent([d["cat"][col] for d in docs], max_categories) for col in categorical}
    tokens: dict[str, dict[str, Any]] = {
        col: {"vocab": _most_frequent([d.get("text", {}).get(col, {}) for d in docs], size), "max_length": length}
        for col, (size, length) in (text or {}).items()
    }
    pre = Preprocessor(
        numeric=numeric,
        categorical=categorical,
        mean=mean,
        std=std,
        vocab=vocab,
        label=label,
        task=task,
        text=tokens,
    )
    if task == "regression":
        n = sum(d["label"]["n"] for d in docs)
        s = sum(d["label"]["sum"] for d in docs)
        sq = sum(d["label"]["sq"] for d in docs)
        pre.target_mean = s / n
        pre.target_std = max(sq / n - pre.target_mean**2, 1e-12) ** 0.5
    elif task == "multiclass":
        pre.classes = sorted({c for d in docs for c in d["label"]["classes"]})
    else:
        pre.classes = [0, 1]
    return pre


def _most_frequent(counts: list[dict[str, int]], k: int) -> list[str]:
    """The ``k`` most frequent values over per-block counts (ties: alphabetical, for determinism)."""
    total: Counter[str] = Counter()
    for block in counts:
        total.update(block)
    return [v for v, _ in sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]
