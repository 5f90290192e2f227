"""The package graph runs one way: fronts -> core -> {repository, advisor, runtimes} -> the
leaves (spec, errors, tensors, ...). A test rather than a convention: every `import` in
src/modelyard, those inside functions and under TYPE_CHECKING included, is read from the
source and checked against the layers below."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "modelyard"

#: Each unit (a subpackage, or a top-level module) and its layer; a unit may import units of
#: a lower layer, and itself. The application layer (CLI, server, serving) may import all.
LEAVES = ("errors", "tensors", "spec", "threads", "settings", "model")
LAYERS: dict[str, int] = {
    "errors": 0,
    **dict.fromkeys(["tensors", "threads", "settings"], 1),
    "spec": 2,
    "model": 3,  # the user's Model: it offers spec's ModelCalls as self.models
    "runtimes": 4,
    "advisor": 5,
    "repository": 6,
    "core": 7,
    "fronts": 8,
}
APPLICATION = 9


def _unit(module: str) -> str:
    """`modelyard.core.llm` -> `core`; `modelyard.errors` -> `errors`; `modelyard` -> ``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _layer(unit: str) -> int:
    return LAYERS.get(unit, APPLICATION)


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every modelyard module `path` imports (`from modelyard import x` counts as
    `modelyard.x` when x is a module, else as the package itself)."""
    tree = ast.parse(path.read_text(), str(path))
    package = (
        _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    )
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("modelyard")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parents = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parents, base]).rstrip(".")
            if not base.startswith("modelyard"):
                continue
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                is_module = (SRC.parent / Path(*candidate.split("."))).with_suffix(
                    ".py"
                ).exists() or (SRC.parent / Path(*candidate.split("."))).is_dir()
                found.add(candidate if is_module else base)
    return found


def _edges() -> list[tuple[str, str]]:
    edges = []
    for path in sorted(SRC.rglob("*.py")):
        source = _module_name(path)
        edges += [(source, target) for target in sorted(_imports(path))]
    return edges


def test_every_import_points_down() -> None:
    wrong = []
    for source, target in _edges():
        here, there = _unit(source), _unit(target)
        if not there or here == there or not here:
            continue  # the package root (__version__), or within one unit
        if _layer(there) >= _layer(here) and _layer(here) != APPLICATION:
            wrong.append(f"{source} imports {target}")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_fronts_reach_only_the_core_and_the_leaves() -> None:
    allowed = {"core", "fronts", *LEAVES}
    wrong = [
        f"{source} imports {target}"
        for source, target in _edges()
        if _unit(source) == "fronts" and _unit(target) and _unit(target) not in allowed
    ]
    assert not wrong, "\n".join(wrong)


def test_no_cycle_between_units() -> None:
    graph: dict[str, set[str]] = {}
    for source, target in _edges():
        here, there = _unit(source), _unit(target)
        if here and there and here != there:
            graph.setdefault(here, set()).add(there)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in graph.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    cycles = [unit for unit in graph if reaches(unit, unit, {unit})]
    assert not cycles, f"units on an import cycle: {sorted(cycles)}"


@pytest.mark.parametrize("stdlib", ["inspect", "types", "typing", "json", "logging", "io", "queue"])
def test_no_module_shadows_the_standard_library(stdlib: str) -> None:
    assert not (SRC / f"{stdlib}.py").exists()


def test_the_reader_sees_every_kind_of_import() -> None:
    edges = set(_edges())
    assert ("modelyard.core.models", "modelyard.repository.loader") in edges  # module level
    assert ("modelyard.cli", "modelyard.serving") in edges  # inside a function
    assert ("modelyard.core.entries", "modelyard.core.models") in edges  # TYPE_CHECKING
