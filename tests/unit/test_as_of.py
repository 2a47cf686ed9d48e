"""The (key, time) pair numbering behind raylane's point-in-time join."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from raylane.as_of import number_pairs


@pytest.mark.parametrize("key_kind", ["int", "str"])
def test_pairs_are_numbered_in_order_of_first_appearance(key_kind: str) -> None:
    rng = np.random.default_rng(1)
    raw = rng.integers(0, 20, 5000)
    keys = pd.Series(raw if key_kind == "int" else [f"c{k}" for k in raw])
    times = pd.Series(pd.to_datetime(rng.integers(0, 30, 5000), unit="D", utc=True))
    times[::97] = pd.NaT  # a missing time is a value of its own
    codes, firsts = number_pairs(keys, times)
    numbers: dict[tuple[object, object], int] = {}
    expected = [
        numbers.setdefault((k, None if pd.isna(t) else t), len(numbers)) for k, t in zip(keys, times, strict=True)
    ]
    assert codes.tolist() == expected
    assert firsts.tolist() == [expected.index(n) for n in range(len(numbers))]
