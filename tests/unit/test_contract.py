"""The model contract without Ray: entrypoint checks through the CLI, logged code, text preprocessing."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from raylane.cli import main
from raylane.config import load_config
from raylane.contract import ModelCode, check_entrypoint, check_output
from raylane.errors import ConfigError
from raylane.preprocess import fit_frame, tokenize

ROOT = Path(__file__).resolve().parents[2]
GOOD = """
import torch
from torch import nn


class Net(nn.Module):
    def __init__(self, inputs, *, hidden: int = 8, scale: float = 1.0) -> None:
        super().__init__()
        self.text = list(inputs.text)
        self.bags = nn.ModuleList(nn.EmbeddingBag(t.vocab_size, 4, padding_idx=0) for t in inputs.text.values())
        self.lin = nn.Linear(inputs.num_width + 4 * len(self.bags), inputs.out_dim)

    def forward(self, batch):
        parts = [batch["x_num"], *(b(batch[n]) for n, b in zip(self.text, self.bags))]
        return self.lin(torch.cat(parts, dim=1))


def needs(inputs, *, width):
    return Net(inputs)


def not_a_module(inputs):
    return 42


def wrong_shape(inputs):
    class Bad(nn.Module):
        def forward(self, batch):
            return batch["x_num"][:, :1].repeat(1, 7)
    return Bad()
"""


def _project(
    tmp_path: Path, model: dict[str, Any], code: str | None = GOOD, train: dict[str, Any] | None = None
) -> Path:
    doc = {
        "project": "tix",
        "data": {
            "sources": [
                {
                    "name": "t",
                    "path": "raw/t.parquet",
                    "timestamp_column": "ts",
                    "columns": {
                        "tid": "int64",
                        "age": "int64",
                        "tier": "string",
                        "body": {"dtype": "string", "kind": "text", "max_length": 8},
                    },
                },
                {
                    "name": "labels",
                    "path": "raw/l.parquet",
                    "timestamp_column": "ts",
                    "columns": {"tid": "int64", "y": "string"},
                },
            ],
            "labels": {"source": "labels", "column": "y"},
        },
        "entity": {"name": "ticket", "join_key": "tid"},
        "features": {"views": [{"name": "v", "source": "t", "ttl": "7d"}]},
        "model": {"task": "multiclass", "num_classes": 3, **model},
        **({"train": train} if train else {}),
    }
    if code is not None:
        (tmp_path / "models").mkdir(exist_ok=True)
        (tmp_path / "models" / "net.py").write_text(code)
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_a_good_entrypoint_validates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _project(tmp_path, {"entrypoint": "models/net.py:Net", "params": {"hidden": 4}})
    code, text = _cli(capsys, "config", "validate", str(path))
    assert code == 0, text
    assert "net.py:Net" in text and "1 file(s) logged" in text


BAD = [
    ("missing file", {"entrypoint": "models/nope.py:Net"}, GOOD, "nope.py does not exist"),
    ("missing module", {"entrypoint": "no_such_pkg.models:Net"}, GOOD, "cannot import module 'no_such_pkg.models'"),
    ("malformed", {"entrypoint": "models/net.py"}, GOOD, "is not `file.py:attr`"),
    ("missing attribute", {"entrypoint": "models/net.py:Nett"}, GOOD, "has no attribute 'Nett'"),
    (
        "import error",
        {"entrypoint": "models/net.py:Net"},
        "import torch\nraise RuntimeError('boom at import')\n",
        "RuntimeError: boom at import",
    ),
    ("syntax error", {"entrypoint": "models/net.py:Net"}, "def (:\n", "SyntaxError"),
    ("unknown param", {"entrypoint": "models/net.py:Net", "params": {"hiden": 3}}, GOOD, "does not accept hiden"),
    ("missing param", {"entrypoint": "models/net.py:needs"}, GOOD, "requires width"),
    ("not a module", {"entrypoint": "models/net.py:not_a_module"}, GOOD, "returned int, not a torch.nn.Module"),
    (
        "wrong output",
        {"entrypoint": "models/net.py:wrong_shape"},
        GOOD,
        "forward returned shape [2, 7] for a batch of 2; expected [2, 3]",
    ),
    (
        "raising forward",
        {"entrypoint": "models/net.py:Net", "params": {"hidden": 4}},
        GOOD.replace("parts = [", "parts = [1/0, "),
        "forward(batch) raised ZeroDivisionError",
    ),
]


@pytest.mark.parametrize(("case", "model", "code", "needle"), BAD, ids=[b[0] for b in BAD])
@pytest.mark.parametrize("command", ["validate", "train"])
def test_each_bad_entrypoint_is_exit_2_naming_it(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    case: str,
    model: dict[str, Any],
    code: str,
    needle: str,
    command: str,
) -> None:
    path = _project(tmp_path, model, code)
    args = ["config", "validate", str(path)] if command == "validate" else ["train", str(path)]
    exit_code, text = _cli(capsys, *args)
    assert exit_code == 2, text
    assert needle in text, text
    assert "Traceback" not in text and "fix:" in text
    target = model["entrypoint"].rpartition(":")[0] or model["entrypoint"]
    assert Path(target).name.split(".")[0] in text or "no_such_pkg" in text  # names the file or module
    assert not (tmp_path / ".raylane").exists()  # nothing written under the storage root


LOOPS = (
    GOOD
    + """

def my_loop(ctx):
    pass


def no_args():
    pass


LOOP = 3
"""
)
BAD_LOOPS = [
    ("missing file", "models/nope.py:my_loop", "train.loop: file", "nope.py does not exist"),
    ("missing attribute", "models/net.py:my_lop", "train.loop", "has no attribute 'my_lop'"),
    ("not callable", "models/net.py:LOOP", "train.loop", "'LOOP' is not callable"),
    ("wrong signature", "models/net.py:no_args", "train.loop", "cannot be called as no_args(ctx)"),
]


@pytest.mark.parametrize(("case", "loop", "key", "needle"), BAD_LOOPS, ids=[b[0] for b in BAD_LOOPS])
@pytest.mark.parametrize("command", ["validate", "train"])
def test_each_bad_train_loop_is_exit_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str, loop: str, key: str, needle: str, command: str
) -> None:
    path = _project(tmp_path, {"entrypoint": "models/net.py:Net"}, LOOPS, train={"loop": loop})
    args = ["config", "validate", str(path)] if command == "validate" else ["train", str(path)]
    exit_code, text = _cli(capsys, *args)
    assert exit_code == 2, text
    assert needle in text and key in text and "fix:" in text and "Traceback" not in text, text
    assert not (tmp_path / ".raylane").exists()
    good = _project(tmp_path, {}, LOOPS, train={"loop": "models/net.py:my_loop"})
    exit_code, text = _cli(capsys, "config", "validate", str(good))
    assert exit_code == 0 and "training loop" in text and "net.py:my_loop" in text, text


def test_params_rules_in_the_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for model, needle in [
        ({"params": {"hidden": 3}}, "`params` is for `entrypoint` models"),
        ({"entrypoint": "models/net.py:Net", "hidden_layers": [8]}, "shapes the built-in MLP"),
    ]:
        code, text = _cli(capsys, "config", "validate", str(_project(tmp_path, model)))
        assert code == 2 and needle in text, text
    doc = yaml.safe_load(_project(tmp_path, {"entrypoint": "models/net.py:Net"}).read_text())
    doc["tune"] = {"space": {"model.params.widht": {"type": "choice", "values": [1, 2]}}}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc))
    code, text = _cli(capsys, "config", "validate", str(tmp_path / "p.yaml"))
    assert code == 2 and "model.params.widht is not a parameter" in text and "hidden, scale" in text, text
    doc["model"] = {"task": "multiclass"}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(doc))
    code, text = _cli(capsys, "config", "validate", str(tmp_path / "p.yaml"))
    assert code == 2 and "entrypoint model's arguments" in text, text


def test_the_logged_code_is_imported_not_the_working_tree(tmp_path: Path) -> None:
    path = _project(tmp_path, {"entrypoint": "models/net.py:Net"})
    cfg = load_config(path)
    code = check_entrypoint(cfg)
    assert code is not None and set(code.files) == {"net.py"} and len(code.hash) == 64
    (tmp_path / "models" / "net.py").write_text(GOOD.replace("hidden: int = 8", "hidden: int = 9"))
    saved = tmp_path / "saved"
    code.save(saved)
    again = ModelCode.load(saved)
    assert again == code and again.hash == code.hash  # the copy, not the edited file
    assert ModelCode.capture(str(cfg.model.entrypoint), None).hash != code.hash
    shutil.rmtree(saved)
    assert again.factory() is code.factory()  # one import per code version, even with its folder gone


def test_docs_models_example_validates_as_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """docs/models.md's model file and config fragment, copied as a user would, pass validation."""
    blocks = (ROOT / "docs" / "models.md").read_text().split("```")
    source = next(b for b in blocks if b.startswith("python\n# models/my_net.py"))
    fragment = yaml.safe_load(next(b for b in blocks if b.startswith("yaml\nmodel:")).removeprefix("yaml\n"))
    path = _project(tmp_path, fragment["model"], code=None)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "my_net.py").write_text(source.removeprefix("python\n"))
    code, text = _cli(capsys, "config", "validate", str(path))
    assert code == 0, text
    tickets = ROOT / "configs" / "tickets.yaml"
    code, text = _cli(capsys, "config", "validate", str(tickets))
    assert code == 0 and "ticket_net.py:TicketNet" in text, text


def test_text_preprocessing_is_fitted_on_the_training_split() -> None:
    frame = pd.DataFrame(
        {"body": ["Refund my card", "card declined!", None, "crash on login"], "y": ["a", "b", "a", "c"]}
    )
    pre = fit_frame(
        frame, dtypes={"body": "string"}, label="y", task="multiclass", max_categories=5, text={"body": (3, 4)}
    )
    assert pre.categorical == [] and pre.text["body"]["vocab"] == ["card", "crash", "declined"]
    x = pre.transform(pd.DataFrame({"body": ["CARD card unknown", None, "crash declined card refund more"]}))
    np.testing.assert_array_equal(x["body"], [[2, 2, 1, 0], [0, 0, 0, 0], [3, 4, 2, 1]])
    assert tokenize("Don't crash, please!") == ["don", "t", "crash", "please"]
    again = type(pre).from_json(pre.to_json())
    assert again.inputs().text["body"].vocab_size == 5 and again.inputs().text["body"].max_length == 4


def test_the_builtin_mlp_reads_text_and_a_user_loss_is_used() -> None:
    from raylane.contract import ModelInputs, TextInput
    from raylane.model import compute_loss, loss_fn, tabular_mlp

    inputs = ModelInputs(task="binary", out_dim=1, num_width=2, cardinalities={"c": 3}, text={"t": TextInput(10, 5)})
    model = tabular_mlp(inputs, hidden_layers=[4])
    out = model(inputs.probe_batch(3))
    assert out.shape == (3, 1)
    y = torch.tensor([0.0, 1.0, 1.0])
    assert compute_loss(model, "binary", loss_fn("binary"), out, y).shape == ()

    class Own(torch.nn.Module):
        def loss(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return torch.tensor(42.0)

    assert float(compute_loss(Own(), "binary", loss_fn("binary"), out, y)) == 42.0
    with pytest.raises(ConfigError, match="forward returned dict"):
        check_output(torch.nn.Identity(), inputs, where="identity")
