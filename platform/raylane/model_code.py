"""A model's own code: captured from the working tree once, logged with the model, imported from that copy.

`ModelCode` holds the ``.py`` files behind ``model.entrypoint`` (the entrypoint file's folder, or
its top-level package) by relative path, and the factory's module and attribute in them. Training
captures it once; the workers, the bundle (``code/``) and every later load import *that* copy
through `ModelCode.factory`, never the working tree, so editing the file after training changes
nothing already trained or registered. Its `hash` is the lineage's ``model_code_hash``.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raylane.errors import ConfigError

__all__ = ["MAX_CODE_BYTES", "ModelCode", "first_line", "python_sources"]

MAX_CODE_BYTES = 5 << 20
"""The most ``.py`` source a model's code folder may hold (it is logged with every model)."""

_SKIP_DIRS = {"__pycache__", ".git", ".venv", "venv", "node_modules", ".raylane", ".mypy_cache", ".pytest_cache"}


@dataclass(frozen=True)
class ModelCode:
    """A model's source: ``.py`` files by relative path, and the factory's module and attribute in them."""

    files: dict[str, str]
    module: str
    attr: str
    origin: str = ""  # where it was captured from (for messages): the entrypoint as configured
    key: str = "model.entrypoint"  # the config field it came from (for messages): or `train.loop`

    @property
    def hash(self) -> str:
        """``sha256`` over every file's path and content: the ``model_code_hash`` of lineage."""
        h = hashlib.sha256()
        for rel in sorted(self.files):
            h.update(rel.encode() + b"\0" + self.files[rel].encode() + b"\0")
        h.update(f"{self.module}:{self.attr}".encode())
        return h.hexdigest()

    # ----- capture, save, load

    @classmethod
    def capture(cls, entrypoint: str, base_dir: Path | None, key: str = "model.entrypoint") -> ModelCode:
        """The source behind ``entrypoint`` as it is now in the working tree (or the installed package).

        Raises:
            ConfigError: a malformed entrypoint, a missing file or module, or too much code.
        """
        target, attr = _split(entrypoint, key)
        if target.endswith(".py") or "/" in target or "\\" in target:
            file = Path(target).expanduser()
            if not file.is_absolute() and base_dir is not None:
                file = base_dir / file
            if not file.is_file():
                raise ConfigError(
                    f"{key}: file {file} does not exist",
                    fix="give a .py file relative to the config's folder, e.g. models/net.py:MyNet",
                )
            root, module = file.resolve().parent, file.stem
        else:
            root, module = _package_root(target, f"{key} {entrypoint}")
        files = python_sources(root, f"{key} {entrypoint}")
        return cls(files, module, attr, origin=entrypoint, key=key)

    def save(self, folder: Path) -> None:
        """Write the files under ``folder`` and ``entrypoint.json`` beside them."""
        for rel, text in self.files.items():
            path = folder / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        doc = {
            "module": self.module,
            "attr": self.attr,
            "origin": self.origin,
            "key": self.key,
            "files": sorted(self.files),
        }
        (folder / "entrypoint.json").write_text(json.dumps(doc, indent=1))

    @classmethod
    def load(cls, folder: Path) -> ModelCode:
        doc = json.loads((folder / "entrypoint.json").read_text())
        files = {rel: (folder / rel).read_text() for rel in doc["files"]}
        return cls(files, doc["module"], doc["attr"], doc.get("origin", ""), doc.get("key", "model.entrypoint"))

    def to_dict(self) -> dict[str, Any]:
        return {"files": self.files, "module": self.module, "attr": self.attr, "origin": self.origin, "key": self.key}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> ModelCode:
        return cls(
            dict(doc["files"]), doc["module"], doc["attr"], doc.get("origin", ""), doc.get("key", "model.entrypoint")
        )

    # ----- import

    def factory(self) -> Callable[..., Any]:
        """The factory, imported from this copy of the code (never from the working tree).

        The files are written once to a folder named by their hash and imported as the package
        ``raylane_model_<hash>``, so two versions of one model (a hot swap) live side by side, and
        the model's modules import each other relatively (``from .layers import Block``).
        """
        package = f"raylane_model_{self.hash[:16]}"
        if package not in sys.modules:
            root = Path(tempfile.gettempdir()) / "raylane-model-code" / self.hash
            if not (root / "entrypoint.json").exists():
                staging = root.with_name(f"{self.hash}.{uuid.uuid4().hex}.tmp")
                self.save(staging)
                try:
                    staging.rename(root)
                except OSError:  # another process wrote the same code first
                    shutil.rmtree(staging, ignore_errors=True)
            spec = importlib.util.spec_from_loader(package, loader=None, is_package=True)
            assert spec is not None
            mod = importlib.util.module_from_spec(spec)
            mod.__path__ = [str(root)]
            sys.modules[package] = mod
        where = self.origin or f"{self.module}:{self.attr}"
        try:
            module = importlib.import_module(f"{package}.{self.module}")
        except Exception as exc:
            raise ConfigError(
                f"{self.key} {where}: importing it failed: {first_line(exc)}",
                fix="fix the error in the model's code (run the file with python to see it in full)",
            ) from exc
        found = getattr(module, self.attr, None)
        if found is None:
            names = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
            raise ConfigError(
                f"{self.key} {where}: the module has no attribute {self.attr!r}",
                fix=f"name one of its callables after the ':' ({', '.join(names[:12]) or 'it defines none'})",
            )
        if not callable(found):
            raise ConfigError(
                f"{self.key} {where}: {self.attr!r} is not callable",
                fix="point at a function (for model.entrypoint: a torch.nn.Module class, or a function returning one)",
            )
        return found  # type: ignore[no-any-return]


def _split(entrypoint: str, key: str) -> tuple[str, str]:
    target, sep, attr = entrypoint.rpartition(":")
    if not sep or not target or not attr.isidentifier():
        raise ConfigError(
            f"{key}: {entrypoint!r} is not `file.py:attr` or `package.module:attr`",
            fix="name the file (or module) and the factory, e.g. models/ticket_net.py:TicketNet",
        )
    return target, attr


def _package_root(module: str, where: str) -> tuple[Path, str]:
    """The folder to capture for an importable module and the module's name relative to it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError) as exc:
        spec, problem = None, first_line(exc)
    else:
        problem = "no such module"
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        raise ConfigError(
            f"{where}: cannot import module {module!r} ({problem})",
            fix="install the package that holds it, or give a file instead: path/to/file.py:attr",
        )
    top = module.split(".")[0]
    if top == module and not spec.submodule_search_locations:
        return Path(spec.origin).parent, module  # a single-file module: only that file
    top_spec = importlib.util.find_spec(top)
    assert top_spec is not None and top_spec.submodule_search_locations
    return Path(next(iter(top_spec.submodule_search_locations))).parent, module


def python_sources(root: Path, where: str) -> dict[str, str]:
    """The ``.py`` files under ``root`` by relative path (caches, virtualenvs and hidden folders
    skipped), at most `MAX_CODE_BYTES` in all; ``where`` names the config field in the error."""
    files: dict[str, str] = {}
    total = 0
    for path in sorted(_walk(root)):
        rel = path.relative_to(root).as_posix()
        text = path.read_text(encoding="utf-8", errors="replace")
        total += len(text)
        if total > MAX_CODE_BYTES:
            raise ConfigError(
                f"{where}: {root} holds more than {MAX_CODE_BYTES >> 20} MB of .py files,"
                " all of which would be logged with every model",
                fix="keep the code in a folder of its own (e.g. models/ or scripts/) and point the config there",
            )
        files[rel] = text
    return files


def _walk(root: Path) -> Iterator[Path]:
    for path in root.iterdir():
        if path.is_dir():
            if path.name not in _SKIP_DIRS and not path.name.startswith("."):
                yield from _walk(path)
        elif path.suffix == ".py":
            yield path


def first_line(exc: BaseException) -> str:
    lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
    text = lines[0] if lines else ""
    return f"{type(exc).__name__}: {text}"[:300] if text else type(exc).__name__
