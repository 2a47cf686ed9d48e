"""The package's rooms: every import goes to the same layer or a lower one, and none closes a cycle.

The imports are read from the source (module level, inside functions and under TYPE_CHECKING alike),
so a lazy import cannot hide a cycle or a reach upward. `docs/architecture.md` draws the same layers.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "platform" / "raylane"

# Low → high. A module may import from its own layer or a lower one. The first name after
# `raylane.` decides the layer; the package `raylane` itself is the public façade (it may import
# anything, and nothing inside the package imports it).
LAYERS: list[set[str]] = [
    {"errors", "lineage", "timing", "labels", "processes", "_version"},
    {
        "config",
        "runtime",
        "profiling",
        "inference_log",
        "bundle",
        "model",
        "contract",
        "model_code",
        "preprocess",
        "mlflow_model",
        "feast_stores",
        "feast_offline",
        "examples",
    },
    {"ingest", "as_of", "features"},
    {"registry", "training", "sweep", "retrain"},
    {"cluster", "jobs"},
    {"monitoring", "batch"},
    {"serving"},
    {"pipeline", "manifests", "demo", "testing"},
    {"cli", "__main__"},
]
MAX_LINES = 450


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ["raylane", *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _resolve(name: str) -> str | None:
    """The raylane module an import names (the longest prefix that is a module), or None if not ours."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in MODULES:
            return candidate
        parts.pop()
    return None


def _imports(module: str, path: Path) -> set[str]:
    return _imports_of(module, path.read_text(), is_package=path.name == "__init__.py")


def _imports_of(module: str, source: str, *, is_package: bool) -> set[str]:
    tree = ast.parse(source)
    out: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join([*base, node.module] if node.module else base)
            else:
                prefix = node.module or ""
            # `from raylane.serving import deploy` names the module raylane.serving.deploy.
            names = [f"{prefix}.{a.name}" for a in node.names] + [prefix]
            names = [n for n in names if _resolve(n) != prefix] or [prefix]
        for name in names:
            target = _resolve(name)
            if target is not None and target != module:
                out.add(target)
    return out


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def _layer(module: str) -> int:
    top = module.split(".")[1]
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module}: not in any layer of {__file__}; add it where it belongs")


def test_every_module_has_a_layer() -> None:
    for module in MODULES:
        if module != "raylane":
            _layer(module)


def test_no_import_reaches_up_a_layer() -> None:
    upward = []
    for module, targets in GRAPH.items():
        if module == "raylane":
            continue
        for target in sorted(targets):
            if target == "raylane":
                upward.append(f"{module} imports the package façade `raylane` (import from the module itself)")
            elif _layer(target) > _layer(module):
                upward.append(f"{module} (layer {_layer(module)}) imports {target} (layer {_layer(target)})")
    assert not upward, "\n".join(upward)


def test_no_import_cycle() -> None:
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []
    cycles: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" → ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)
    assert not cycles, "\n".join(cycles)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_is_one_room(module: str) -> None:
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[module]} has {lines} lines (> {MAX_LINES}): split it by concern"


def test_the_walk_sees_every_kind_of_import() -> None:
    # The checker itself: lazy, TYPE_CHECKING, relative and from-package imports all count as edges.
    source = """
from typing import TYPE_CHECKING
if TYPE_CHECKING:
    from raylane.cli import app
def later():
    import raylane.pipeline
    from raylane.serving import deploy
from . import registry
"""
    found = _imports_of("raylane.errors", source, is_package=False)
    assert {"raylane.cli", "raylane.pipeline", "raylane.serving.deploy", "raylane.registry"} <= found
