"""The package's architecture, enforced: no module imports a higher layer, no import cycles.

Layers, lowest first: the top-level helpers (``errors``, ``io_utils``, ``paths``, ...); ``data``
and ``models``; ``training``, ``evaluation`` and ``generative``; ``inference``, ``detection``
and ``search``; ``app`` and ``cli``. Every import counts, function-level and ``TYPE_CHECKING``
ones included: a lazy import is still a dependency. Only ``galaxymorph/__init__.py``, the
public facade that lazily re-exports the API, may reach every layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "galaxymorph"
LAYERS = {"data": 1, "models": 1, "training": 2, "evaluation": 2, "generative": 2,
          "inference": 3, "detection": 3, "search": 3, "app": 4, "cli": 4}
FACADE = PACKAGE


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, int]]:
    """``(imported galaxymorph module, line)`` for every import statement in the file."""
    is_package = path.name == "__init__.py"
    here = name.split(".") if is_package else name.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:  # `from pkg import submodule` imports pkg.submodule
                sub = f"{target}.{alias.name}"
                found.append((sub if sub in MODULES else target, node.lineno))
    return [(t, line) for t, line in found if t == PACKAGE or t.startswith(PACKAGE + ".")]


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:
        return max(LAYERS.values()) + 1  # the facade
    return LAYERS.get(parts[1], 0)  # top-level helper modules are the bottom layer


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_layers_are_known():
    subpackages = {p.name for p in (SRC / PACKAGE).iterdir()
                   if p.is_dir() and (p / "__init__.py").exists()}
    assert subpackages == set(LAYERS), "a new subpackage needs its place in LAYERS"
    assert len(MODULES) > 50  # the walk found the package


def test_no_module_imports_a_higher_layer():
    bad = [f"{MODULES[m].relative_to(SRC)}:{line} imports {t}"
           for m, imports in GRAPH.items() if m != FACADE
           for t, line in imports if _layer(t) > _layer(m)]
    assert not bad, "imports of a higher layer:\n" + "\n".join(sorted(set(bad)))


def test_no_import_cycle_between_modules():
    graph = {m: {t for t, _ in imports if t in MODULES and t != m} for m, imports in GRAPH.items()}
    assert _cycles(graph) == []


def test_no_import_cycle_between_subpackages():
    graph: dict[str, set[str]] = {}
    for m, imports in GRAPH.items():
        if m == FACADE:
            continue
        graph.setdefault(_package(m), set()).update(
            _package(t) for t, _ in imports if _package(t) != _package(m) and t != FACADE)
    assert _cycles(graph) == []


@pytest.mark.parametrize("source, expected", [
    ("from galaxymorph.data import specs\n", ["galaxymorph.data.specs"]),
    ("def f():\n    from galaxymorph.inference.loading import load_classifier\n",
     ["galaxymorph.inference.loading"]),
    ("from ..models.network import GalaxyNet\n", ["galaxymorph.models.network"]),
    ("import galaxymorph.errors as e\nimport numpy\n", ["galaxymorph.errors"]),
])
def test_the_checker_sees_every_kind_of_import(tmp_path, source, expected):
    # A module inside galaxymorph.training, to resolve relative imports against.
    path = tmp_path / "mod.py"
    path.write_text(source)
    assert [t for t, _ in _imports("galaxymorph.training.mod", path)] == expected
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
