"""`load_config`: read the YAML, expand ``${ENV}``, apply overrides, validate, and explain every error."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ValidationError,
)

from raylane.config.project import ProjectConfig
from raylane.errors import ConfigError

ENV_PREFIX = "RAYLANE__"

# --------------------------------------------------------------------------- loading


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-(.*?))?\}")


# Free text is published (``description`` becomes the service's OpenAPI page): never expanded, so
# no environment value (a secret, a path) can leak through it.
LITERAL_FIELDS = frozenset({"description"})


def _expand_env(node: Any, env: Mapping[str, str], where: str, file: Path) -> Any:
    if isinstance(node, dict):
        return {
            k: v if k in LITERAL_FIELDS else _expand_env(v, env, f"{where}.{k}" if where else str(k), file)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_expand_env(v, env, f"{where}.{i}", file) for i, v in enumerate(node)]
    if isinstance(node, str):

        def sub(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            raise ConfigError(
                f"{file}: {where}: environment variable ${{{name}}} is not set",
                fix=f"export {name}=… or write ${{{name}:-default}} in the config",
            )

        return _ENV_REF.sub(sub, node)
    return node


def _set_path(doc: dict[str, Any], dotted: str, value: Any, origin: str) -> None:
    parts = dotted.split(".")
    if not dotted or any(p == "" for p in parts):
        raise ConfigError(f"{origin}: {dotted!r} is not a field path", fix="write it as a.b.c=value")
    node: Any = doc
    i = 0
    while i < len(parts):
        part = parts[i]
        if isinstance(node, dict):
            # A key may itself hold dots (`tune.space.train.learning_rate.high`): the longest one present wins.
            for j in range(len(parts), i + 1, -1):
                if ".".join(parts[i:j]) in node:
                    part, i = ".".join(parts[i:j]), j - 1
                    break
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(
                    f"{origin}: {'.'.join(parts[:i])} is a list of {len(node)}; {part!r} is not an index in it",
                    fix=f"use an index from 0 to {len(node) - 1}",
                )
            if last:
                node[int(part)] = value
            else:
                node = node[int(part)]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
        else:
            raise ConfigError(f"{origin}: {'.'.join(parts[:i])} is a value, not a section", fix="check the field path")
        i += 1


def _parse_override(item: str, origin: str) -> tuple[str, Any]:
    if "=" not in item:
        raise ConfigError(f"{origin}: {item!r} has no '='", fix="write overrides as a.b.c=value")
    path, raw = item.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return path.strip(), value


def _did_you_mean(loc: tuple[int | str, ...], model: type[BaseModel]) -> str:
    # Walk the models along ``loc`` to find the fields that were allowed where the unknown key sits.
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int) or current is None:
            continue
        field = getattr(current, "model_fields", {}).get(part)
        current = _model_of(field.annotation) if field is not None else None
    if current is None or not hasattr(current, "model_fields"):
        return ""
    allowed = list(current.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"{hint}allowed here: {', '.join(allowed)}"


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _format_errors(exc: ValidationError, file: Path, overridden: set[str]) -> ConfigError:
    lines: list[str] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        path = ".".join(str(p) for p in loc) or "(top level)"
        origin = " (from an override)" if path in overridden else ""
        kind = err["type"]
        if kind == "extra_forbidden":
            hint = _did_you_mean(loc, ProjectConfig)
            lines.append(f"{path}: unknown field{origin}; remove it or fix its spelling ({hint})")
        elif kind == "missing":
            lines.append(f"{path}: required field is missing; add `{loc[-1]}`")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            got = err.get("input")
            shown = "" if isinstance(got, (dict, list)) or got is None else f" (got {got!r})"
            # Cross-field checks of the whole project raise at the top level and name their own field.
            lines.append(f"{msg}{shown}" if not loc else f"{path}: {msg}{shown}{origin}")
    body = "\n  ".join(lines)
    return ConfigError(
        f"{file}: invalid config\n  {body}",
        fix="correct the field(s) above; `raylane config schema` lists every field, its type and meaning",
    )


def load_config(
    path: str | os.PathLike[str],
    overrides: Iterable[str] = (),
    *,
    env: Mapping[str, str] | None = None,
) -> ProjectConfig:
    """Load, expand, override and validate a project config.

    Args:
        path: The YAML file.
        overrides: ``a.b.c=value`` strings, applied last; values parse as YAML scalars.
        env: Environment for ``${VAR}`` and ``RAYLANE__A__B`` overrides; ``os.environ`` when omitted.

    Raises:
        ConfigError: the file is missing or malformed, or a value is invalid.
    """
    env = os.environ if env is None else env
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(
            f"config file not found: {file}",
            fix="pass the path of a project YAML, e.g. configs/churn.yaml",
        )
    try:
        doc = yaml.safe_load(file.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{file}: not valid YAML{where}: {exc}", fix="fix the YAML syntax") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{file}: not UTF-8 text", fix="save the config as UTF-8") from None
    if not isinstance(doc, dict):
        raise ConfigError(
            f"{file}: the top level must be a mapping of sections, got {type(doc).__name__}",
            fix="start from configs/churn.yaml",
        )
    doc = _expand_env(doc, env, "", file)
    overridden: set[str] = set()
    for name in sorted(k for k in env if k.startswith(ENV_PREFIX)):
        dotted = ".".join(p.lower() for p in name[len(ENV_PREFIX) :].split("__"))
        _, value = _parse_override(f"{dotted}={env[name]}", f"environment {name}")
        _set_path(doc, dotted, value, f"environment {name}")
        overridden.add(dotted)
    for item in overrides:
        dotted, value = _parse_override(item, f"--set {item}")
        _set_path(doc, dotted, value, f"--set {item}")
        overridden.add(dotted)
    try:
        cfg = ProjectConfig.model_validate(doc, context={"base_dir": file.resolve().parent})
    except ValidationError as exc:
        raise _format_errors(exc, file, overridden) from None
    return cfg.with_base_dir(file.resolve().parent)
