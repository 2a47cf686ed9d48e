"""Preprocessing fitted on one frame (`fit_frame`, no Ray): scaling, missing values, vocabularies, targets, JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from raylane.preprocess import Preprocessor, fit_frame, merge_stats

DTYPES = {"age": "int64", "spend": "float64", "plan": "string", "at": "timestamp"}


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "age": [20, 30, 40, None],
            "spend": [1.0, 2.0, 3.0, 4.0],
            "plan": ["a", "b", "a", None],
            "at": pd.to_datetime(["2026-01-01"] * 4, utc=True),
            "y": [0, 1, 0, 1],
        }
    )


def _fit(frame: pd.DataFrame, task: str = "binary", max_categories: int = 10) -> Preprocessor:
    return fit_frame(frame, dtypes=DTYPES, label="y", task=task, max_categories=max_categories)  # type: ignore[arg-type]


def test_columns_by_type_and_timestamps_are_not_features() -> None:
    pre = _fit(_frame())
    assert pre.numeric == ["age", "spend"] and pre.categorical == ["plan"]
    assert pre.num_width == 4 and pre.cardinalities == [3]


def test_numeric_scaling_ignores_missing_values_and_flags_them() -> None:
    pre = _fit(_frame())
    assert pre.mean["age"] == pytest.approx(30.0) and pre.std["age"] == pytest.approx(np.std([20, 30, 40]))
    x = pre.transform(_frame())["x_num"]
    assert x.dtype == np.float32 and x.shape == (4, 4)
    assert x[0, 0] == pytest.approx(-10 / np.std([20, 30, 40]), rel=1e-5)
    assert x[3, 0] == 0.0 and x[3, 2] == 1.0 and x[0, 2] == 0.0  # missing age: 0, indicator set


def test_a_constant_column_has_unit_scale() -> None:
    frame = _frame().assign(spend=5.0)
    assert _fit(frame).std["spend"] == 1.0


def test_vocabulary_by_frequency_capped_and_unseen_go_to_bucket_zero() -> None:
    pre = _fit(_frame(), max_categories=1)
    assert pre.vocab["plan"] == ["a"]  # the most frequent
    x = pre.transform(pd.DataFrame({"age": [1], "spend": [1.0], "plan": ["zzz"]}))["x_cat"]
    assert x.tolist() == [[0]]
    assert _fit(_frame()).transform(_frame())["x_cat"][:, 0].tolist() == [1, 2, 1, 0]


def test_targets_per_task() -> None:
    reg = _fit(_frame().assign(y=[1.0, 2.0, 3.0, 4.0]), task="regression")
    assert reg.target_mean == pytest.approx(2.5)
    assert reg.encode_target(pd.Series([2.5])).tolist() == [0.0]
    multi = _fit(_frame().assign(y=["x", "z", "y", "x"]), task="multiclass")
    assert multi.classes == ["x", "y", "z"]
    assert multi.encode_target(pd.Series(["z", "never"])).tolist() == [2, -100]  # unseen class is ignored
    assert _fit(_frame()).classes == [0, 1]


def test_blocks_merge_to_the_same_state_as_one_frame() -> None:
    from raylane.preprocess import _block_stats

    frame = _frame()
    docs = [
        json.loads(_block_stats(part, ["age", "spend"], ["plan"], "y", "binary")["stats"][0])
        for part in (frame.iloc[:2], frame.iloc[2:])
    ]
    merged = merge_stats(
        docs, numeric=["age", "spend"], categorical=["plan"], label="y", task="binary", max_categories=10
    )
    whole = _fit(frame)
    assert merged.mean == pytest.approx(whole.mean) and merged.std == pytest.approx(whole.std)
    assert merged.vocab == whole.vocab


def test_the_state_round_trips_as_json() -> None:
    pre = _fit(_frame())
    again = Preprocessor.from_json(pre.to_json())
    assert again == pre
    np.testing.assert_array_equal(again.transform(_frame())["x_num"], pre.transform(_frame())["x_num"])


def test_values_that_overflow_the_models_float32_are_named() -> None:
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "c": ["a", "b", "a", "b"], "y": [0, 1, 0, 1]})
    pre = fit_frame(frame, dtypes={"x": "float64", "c": "string"}, label="y", task="binary", max_categories=10)
    pre.std["x"] = 1e-3  # a small spread: a finite value scales past float32
    probe = pd.DataFrame({"x": [2.0, 3e38, None, 1e308], "c": ["a"] * 4})
    assert pre.out_of_range(probe) == [[], ["x"], [], ["x"]]
    assert not np.isfinite(pre.transform(probe)["x_num"][1, 0])  # what out_of_range warns about


def test_a_model_artifact_that_declares_more_than_its_weights_is_refused(tmp_path: Path) -> None:
    from raylane.bundle import ModelBundle
    from raylane.config import ModelConfig

    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "c": ["a", "b", "a", "b"], "y": [0, 1, 0, 1]})
    pre = fit_frame(frame, dtypes={"x": "float64", "c": "string"}, label="y", task="binary", max_categories=10)
    cfg = ModelConfig(task="binary", hidden_layers=[8, 4])
    params = {"hidden_layers": [8, 4], "dropout": 0.1, "activation": "relu", "embedding_dim": 4}
    bundle = ModelBundle.create(cfg, pre, ["x", "c"], params)
    folder = bundle.save(tmp_path / "b")
    assert ModelBundle.load(folder).features == ["x", "c"]
    spec = json.loads((folder / "spec.json").read_text())
    spec["params"]["hidden_layers"] = [16384] * 8  # ~2e9 parameters: 8 GB before a weight is read
    (folder / "spec.json").write_text(json.dumps(spec))
    with pytest.raises(ValueError, match=r"declare .* parameters, but model\.pt has only"):
        ModelBundle.load(folder)
    spec["params"]["hidden_layers"] = [10**9]
    (folder / "spec.json").write_text(json.dumps(spec))
    with pytest.raises(ValueError, match="less than or equal to 16384"):
        ModelBundle.load(folder)
    spec["params"]["hidden_layers"] = [8, 4]
    spec["params"]["embedding_dim"] = 64  # within the bound and the file's size, but not its shapes
    (folder / "spec.json").write_text(json.dumps(spec))
    with pytest.raises(ValueError, match=r"model\.pt does not fit spec\.json"):
        ModelBundle.load(folder)
    spec["params"]["embedding_dim"] = 10**9
    (folder / "spec.json").write_text(json.dumps(spec))
    with pytest.raises(ValueError, match="less than or equal to 16384"):
        ModelBundle.load(folder)


def test_loading_a_model_counts_its_parameters_without_importing_torch_dynamo(tmp_path: Path) -> None:
    """The size check builds the model on the meta device with its initializers skipped: in a
    fresh process, loading a bundle with embeddings leaves ``torch._dynamo`` unimported (~0.9 s)."""
    import subprocess
    import sys

    from raylane.bundle import ModelBundle
    from raylane.config import ModelConfig

    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "c": ["a", "b", "a", "b"], "y": [0, 1, 0, 1]})
    pre = fit_frame(frame, dtypes={"x": "float64", "c": "string"}, label="y", task="binary", max_categories=10)
    params = {"hidden_layers": [8], "dropout": 0.1, "activation": "relu", "embedding_dim": 4}
    bundle = ModelBundle.create(ModelConfig(task="binary", hidden_layers=[8]), pre, ["x", "c"], params)
    folder = bundle.save(tmp_path / "b")
    probe = (
        "import sys; from pathlib import Path; import pandas as pd; from raylane.bundle import ModelBundle;"
        f"b = ModelBundle.load(Path({str(folder)!r}));"
        "p = b.predict(pd.DataFrame({'x': [1.0, 9.0], 'c': ['a', 'z']}));"
        "print(len(p), 'torch._dynamo' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["2", "False"]
    expected = bundle.predict(pd.DataFrame({"x": [1.0, 9.0], "c": ["a", "z"]}))
    assert np.allclose(ModelBundle.load(folder).predict(pd.DataFrame({"x": [1.0, 9.0], "c": ["a", "z"]})), expected)
