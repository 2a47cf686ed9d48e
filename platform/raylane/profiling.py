"""Making whylogs profiles of a data frame, with the one workaround whylogs 1.6 needs under numpy 2.

Used by training (the reference profile logged with each model) and by the replicas' profile sink.
It holds no state and sends nothing: buffering live rows and shipping their profiles to the monitor
is `raylane.monitoring.sink`'s job.

whylogs 1.6 fails on pandas ``string`` and ``datetime64`` columns (``np.unicode_`` was removed in
numpy 2). `profile` converts those columns first: strings to ``object``, times to int64 epoch
microseconds. Every profile in raylane goes through here.

A text feature (``kind: text``) is profiled by its statistics, not its values: the column holds
the value's number of tokens (null stays null) and ``<column>.chars`` its length in characters, so
drift in text is drift in those distributions, at the size of two numeric columns (a categorical
profile of free text would grow with every distinct value).

Distributions use whylogs' standard KLL sketch (k=256), not its large one (k=1024, whylogs'
default): a profile's size then stops growing by about 10k rows per column (the monitor merges
millions of rows into one window at a flat size), at a quantile rank error of about 1 %, far
below what a drift test on a window of a few hundred rows can resolve.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

__all__ = ["profile", "text_statistics", "whylogs_safe"]


def whylogs_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` whose dtypes whylogs 1.6 accepts under numpy 2."""
    out: dict[str, Any] = {}
    for name in frame.columns:
        col = frame[name]
        if pd.api.types.is_datetime64_any_dtype(col):
            out[name] = pd.to_datetime(col, utc=True).astype("int64") // 1000
        elif pd.api.types.is_string_dtype(col) or isinstance(col.dtype, pd.ArrowDtype):
            if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
                out[name] = col.astype("float64") if pd.api.types.is_numeric_dtype(col) else col.astype(object)
            else:
                out[name] = col.astype(object).where(col.notna(), None)
        else:
            out[name] = col
    return pd.DataFrame(out, index=frame.index)


def text_statistics(frame: pd.DataFrame, text: list[str]) -> pd.DataFrame:
    """``frame`` with each text column replaced by its token count, and ``<column>.chars`` beside it."""
    from raylane.preprocess import tokenize

    out = frame.copy()
    for col in text:
        values = frame[col].tolist()
        null = [v is None or (isinstance(v, float) and v != v) for v in values]
        out[col] = [float("nan") if n else float(len(tokenize(v))) for v, n in zip(values, null, strict=True)]
        out[f"{col}.chars"] = [float("nan") if n else float(len(str(v))) for v, n in zip(values, null, strict=True)]
    return out


def profile(frame: pd.DataFrame, text: list[str] | None = None) -> Any:
    """A whylogs ``DatasetProfileView`` of ``frame``; ``text`` names its text columns."""
    import whylogs as why
    from whylogs.core.metrics.metrics import MetricConfig
    from whylogs.core.schema import DatasetSchema

    schema = DatasetSchema(default_configs=MetricConfig(large_kll_k=False))
    if text:
        frame = text_statistics(frame, text)
    return why.log(whylogs_safe(frame), schema=schema).view()
