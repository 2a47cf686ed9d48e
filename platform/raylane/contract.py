"""The model contract: what every model raylane trains is, the built-in MLP and a user's own alike.

A model comes from a *factory* called as ``factory(inputs, **params)`` that returns a
``torch.nn.Module``. `ModelInputs` tells it what the preprocessed batch holds; ``forward(batch)``
takes a dict of tensors (``x_num`` float ``[B, num_width]``, ``x_cat`` long ``[B, n_categorical]``,
and one long ``[B, max_length]`` tensor of token ids per text column, keyed by the column's name)
and returns logits (classification) or values (regression), ``[B, out_dim]``. An optional
``loss(outputs, target)`` method replaces the task's default loss.

``model.entrypoint`` names the factory: ``path/to/file.py:attr`` (relative to the config's folder)
or ``package.module:attr``. Its source is captured as a `ModelCode` (the ``.py`` files of the
entrypoint's folder, or of its top-level package) when training starts; the workers, the bundle
and every later load import *that* copy, never the working tree, so editing the file after
training changes nothing already trained or registered. Without an entrypoint the factory is the
built-in `raylane.model.tabular_mlp`, with ``model.hidden_layers`` … as its params.

`check_entrypoint` is what ``raylane config validate`` (and every training command) runs before
anything starts: it imports the entrypoint and probes it on a 2-row batch, and turns each way it
can be wrong into a `ConfigError` naming the file, the attribute and the fix.
"""

from __future__ import annotations

import inspect
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raylane.config import ProjectConfig
from raylane.config.training import BUILTIN_PARAMS
from raylane.errors import ConfigError
from raylane.model_code import ModelCode, first_line

__all__ = [
    "BUILTIN_PARAMS",
    "BatchKeys",
    "ModelCode",
    "ModelInputs",
    "TextInput",
    "accepted_params",
    "check_entrypoint",
    "check_loop",
    "factory_params",
    "output_dim",
    "probe_inputs",
]


class BatchKeys:
    """Keys of a preprocessed batch besides the text columns."""

    NUM = "x_num"
    CAT = "x_cat"
    TARGET = "y"
    RESERVED = (NUM, CAT, TARGET)


@dataclass(frozen=True)
class TextInput:
    """One text column: token ids are ``0`` (padding), ``1`` (a token outside the vocabulary) and
    ``2 … vocab_size-1`` (the training split's most frequent tokens)."""

    vocab_size: int
    max_length: int


@dataclass(frozen=True)
class ModelInputs:
    """What a model factory is told about its inputs (``factory(inputs, **params)``).

    Attributes:
        task: ``binary``, ``multiclass`` or ``regression``.
        out_dim: Width of the output: the number of classes for ``multiclass``, else 1.
        num_width: Width of ``batch["x_num"]``: the scaled numeric features, then one missing
            indicator per numeric feature.
        numeric: The numeric features, in ``x_num`` order.
        cardinalities: Per categorical feature (in ``x_cat`` column order), the number of ids it
            takes: ``0`` is unseen or null, ``1 …`` the training split's values.
        text: Per text feature (each one a key of the batch), its vocabulary size and max length.
        classes: The classes, in output order (``multiclass``), or ``[0, 1]`` (binary).
    """

    task: str
    out_dim: int
    num_width: int
    numeric: tuple[str, ...] = ()
    cardinalities: dict[str, int] = field(default_factory=dict)
    text: dict[str, TextInput] = field(default_factory=dict)
    classes: tuple[Any, ...] = ()

    @property
    def categorical(self) -> tuple[str, ...]:
        return tuple(self.cardinalities)

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Every feature the model sees: numeric, categorical, then text."""
        return (*self.numeric, *self.categorical, *self.text)

    def probe_batch(self, rows: int = 2) -> dict[str, Any]:
        """A batch of ``rows`` rows of valid inputs (zeros, id 1, a few tokens)."""
        import torch

        batch: dict[str, Any] = {
            BatchKeys.NUM: torch.zeros(rows, self.num_width),
            BatchKeys.CAT: torch.ones(rows, len(self.cardinalities), dtype=torch.long),
        }
        for name, t in self.text.items():
            ids = torch.zeros(rows, t.max_length, dtype=torch.long)
            ids[:, : min(3, t.max_length)] = min(2, t.vocab_size - 1)
            batch[name] = ids
        return batch


# --------------------------------------------------------------------------- params and the probe


def factory_params(cfg: ProjectConfig) -> dict[str, Any]:
    """The keyword arguments the factory is called with: ``model.params``, or the built-in's fields."""
    if cfg.model.entrypoint:
        return dict(cfg.model.params)
    return {name: getattr(cfg.model, name) for name in BUILTIN_PARAMS}


def accepted_params(factory: Callable[..., Any]) -> tuple[list[str], list[str], bool]:
    """The factory's keyword parameters after ``inputs``: (all, required, takes ``**kwargs``)."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return [], [], True
    params = list(sig.parameters.values())[1:]  # the first one is `inputs`
    names = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    required = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.default is p.empty]
    return names, required, any(p.kind == p.VAR_KEYWORD for p in params)


def output_dim(task: str, classes: list[Any]) -> int:
    """The model's output width: the number of classes for ``multiclass``, else 1."""
    return len(classes) if task == "multiclass" else 1


def probe_inputs(cfg: ProjectConfig) -> ModelInputs:
    """`ModelInputs` as the config implies them before any data is read (the probe's inputs)."""
    specs = cfg.feature_specs()
    numeric = tuple(f for f, s in specs.items() if s.dtype in ("int64", "float64"))
    text = {f: TextInput(s.text_vocab + 2, s.text_length) for f, s in specs.items() if s.is_text}
    categorical = {
        f: cfg.model.max_categories + 1
        for f, s in specs.items()
        if s.dtype not in ("int64", "float64", "timestamp") and not s.is_text
    }
    classes = tuple(range(cfg.model.num_classes or 3)) if cfg.model.task == "multiclass" else (0, 1)
    return ModelInputs(
        task=cfg.model.task,
        out_dim=output_dim(cfg.model.task, list(classes)),
        num_width=2 * len(numeric),
        numeric=numeric,
        cardinalities=categorical,
        text=text,
        classes=classes,
    )


def check_entrypoint(cfg: ProjectConfig, code: ModelCode | None = None) -> ModelCode | None:
    """Import ``model.entrypoint`` (or use ``code``), check its params and probe it on a 2-row batch.

    Returns the captured code (``None`` for the built-in MLP, which is checked by the config).

    Raises:
        ConfigError: naming the entrypoint and what is wrong with it: a missing file, module or
            attribute, an import error, params it does not accept or requires, a construction or
            forward that raises, or an output that is not ``[batch, inputs.out_dim]``.
    """
    if code is None and not cfg.model.entrypoint:
        return None
    code = code or ModelCode.capture(str(cfg.model.entrypoint), cfg.base_dir)
    where = code.origin or f"{code.module}:{code.attr}"
    factory = code.factory()
    names, required, var_kw = accepted_params(factory)
    params = factory_params(cfg)
    unknown = sorted(set(params) - set(names)) if not var_kw else []
    if unknown:
        raise ConfigError(
            f"model.params: {where} does not accept {', '.join(unknown)}",
            fix=f"its parameters are: {', '.join(names) or '(none besides inputs)'}",
        )
    searched = sorted(k.removeprefix("model.params.") for k in cfg.tune.space if k.startswith("model.params."))
    unknown = sorted(set(searched) - set(names)) if not var_kw else []
    if unknown:
        raise ConfigError(
            f"tune.space: model.params.{unknown[0]} is not a parameter of {where}",
            fix=f"search one of its parameters: {', '.join(names) or '(it takes none besides inputs)'}",
        )
    missing = [n for n in required if n not in params and n not in searched]
    if missing:
        raise ConfigError(
            f"model.params: {where} requires {', '.join(missing)}",
            fix=f"set model.params.{missing[0]} in the config",
        )
    for name in searched:  # probed with one of the sweep's candidates
        dim = cfg.tune.space[f"model.params.{name}"]
        params.setdefault(
            name, dim.values[0] if dim.values else int(dim.low or 0) if dim.type == "randint" else dim.low
        )
    inputs = probe_inputs(cfg)
    model = build(factory, inputs, params, where=where)
    check_output(model, inputs, where=where)
    return code


def check_loop(cfg: ProjectConfig, code: ModelCode | None = None) -> ModelCode | None:
    """Import ``train.loop`` (or use ``code``) and check it can be called as ``loop(ctx)``.

    Returns the captured code (``None`` for raylane's own epoch loop).

    Raises:
        ConfigError: naming the loop: a missing file, module or attribute, an import error, or a
            function that cannot be called with one argument.
    """
    if code is None and not cfg.train.loop:
        return None
    code = code or ModelCode.capture(str(cfg.train.loop), cfg.base_dir, key="train.loop")
    loop = code.factory()
    try:
        inspect.signature(loop).bind(object())
    except TypeError:
        raise ConfigError(
            f"train.loop {code.origin or code.attr}: {code.attr} cannot be called as {code.attr}(ctx)",
            fix="define it as `def train_loop(ctx):` (ctx: raylane.training.TrainContext, docs/models.md)",
        ) from None
    except ValueError:  # a builtin without a signature: called as it is
        pass
    return code


def build(factory: Callable[..., Any], inputs: ModelInputs, params: dict[str, Any], *, where: str) -> Any:
    """``factory(inputs, **params)``, checked to be a ``torch.nn.Module``."""
    from torch import nn

    try:
        model = factory(inputs, **params)
    except Exception as exc:
        raise ConfigError(
            f"model.entrypoint {where}: building the model raised {first_line(exc)}",
            fix=f"fix the factory or model.params ({_user_frame(exc)})",
        ) from exc
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"model.entrypoint {where}: the factory returned {type(model).__name__}, not a torch.nn.Module",
            fix="return the module itself (a class deriving from torch.nn.Module, or a function returning one)",
        )
    return model


def check_output(model: Any, inputs: ModelInputs, *, where: str) -> None:
    """Run ``forward`` on a 2-row probe batch: it must return ``[2, out_dim]``."""
    import torch

    model.eval()
    try:
        with torch.no_grad():
            out = model(inputs.probe_batch(2))
    except Exception as exc:
        raise ConfigError(
            f"model.entrypoint {where}: forward(batch) raised {first_line(exc)} on a 2-row probe batch",
            fix=f"forward takes one dict of tensors: x_num, x_cat and one per text column ({_user_frame(exc)})",
        ) from exc
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else None
    if shape not in ((2, inputs.out_dim), *([(2,)] if inputs.out_dim == 1 else [])):
        got = f"shape {list(shape)}" if shape is not None else type(out).__name__
        raise ConfigError(
            f"model.entrypoint {where}: forward returned {got} for a batch of 2; expected [2, {inputs.out_dim}]",
            fix=f"return one row per example and inputs.out_dim ({inputs.out_dim}) columns: logits or values",
        )


def _user_frame(exc: BaseException) -> str:
    """Where in the user's code an exception was raised: ``file:line``."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "raylane-model-code" in f.filename]
    if not frames:
        return "see the model's code"
    f = frames[-1]
    return f"at {Path(f.filename).name}:{f.lineno}"
