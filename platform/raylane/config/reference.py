"""The config described from its models: the JSON Schema and the Markdown reference (docs/config.md)."""

from __future__ import annotations

import json
import types
import typing
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel

from raylane.config.project import ProjectConfig


def config_schema() -> dict[str, Any]:
    """JSON Schema of the project config (for editors and the docs)."""
    schema = ProjectConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "raylane project config"
    return schema


def config_reference() -> str:
    """The config reference (Markdown), generated from the models: every field's path, type,
    default and description (``raylane config reference``; ``docs/config.md`` is its output)."""
    out = [
        "# Config reference",
        "",
        "Generated from raylane's config models by `raylane config reference` (do not edit by hand).",
        "Every field can also be set with `--set a.b=value` or `RAYLANE__A__B=value`; `raylane config schema`",
        "prints the same as JSON Schema for editors.",
        "",
    ]
    seen: set[tuple[str, type[BaseModel]]] = set()
    pending: list[tuple[type[BaseModel], str]] = [(ProjectConfig, "")]
    while pending:  # depth first, each section followed by its own subsections
        model, prefix = pending.pop(0)
        if (prefix, model) in seen:
            continue
        seen.add((prefix, model))
        nested = _section(model, prefix, out)
        pending[:0] = nested
    return "\n".join(out).rstrip() + "\n"


def _section(model: type[BaseModel], prefix: str, out: list[str]) -> list[tuple[type[BaseModel], str]]:
    """Append one section's table to ``out``; its subsections, in field order."""
    title = prefix.rstrip(".") or "top level"
    doc = (model.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
    out.extend([f"## `{title}`", "", doc, "", "| field | type | default | description |", "|---|---|---|---|"])
    nested: list[tuple[type[BaseModel], str]] = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        subs = _models_in(annotation)
        origin = typing.get_origin(annotation)
        path = f"{prefix}{name}"
        if subs and origin is list:
            nested += [(m, f"{path}[].") for m in subs]
        elif subs and origin is dict:
            nested += [(m, f"{path}.<name>.") for m in subs]
        elif subs:
            nested += [(m, f"{path}.") for m in subs]
        shown = _type_name(annotation) if not subs or origin in (list, dict) else "section"
        description = (field.description or "").replace("|", "\\|").replace("\n", " ")
        out.append(f"| `{path}` | {shown} | {_default(field)} | {description} |")
    out.append("")
    return nested


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return {"timedelta": "duration", "Path": "path", "NoneType": "null"}.get(
            annotation.__name__, annotation.__name__
        )
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return _type_name(args[0])
    if origin is Literal:
        return " \\| ".join(f"`{a}`" for a in args)
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(a) for a in args)
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(_type_name(a) for a in args)}]"
    return str(annotation)


def _default(field: Any) -> str:
    from pydantic_core import PydanticUndefined

    extra = field.json_schema_extra
    if isinstance(extra, dict) and "x-default" in extra:  # a default derived from other fields
        return f"`{extra['x-default']}`"
    if field.default is not PydanticUndefined:
        value = field.default
    elif field.default_factory is not None:
        value = field.default_factory()
        if isinstance(value, BaseModel):
            return "—"
    else:
        return "**required**"
    if isinstance(value, timedelta):
        return f"`{int(value.total_seconds())}s`"
    return f"`{json.dumps(value, default=str)}`"
