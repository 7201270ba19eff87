"""The house's layout: god's wings import only what their docstrings allow, and no two modules
import each other, directly or around a circle (imports under TYPE_CHECKING count too)."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WINGS = ("store", "journal", "rules", "transport", "operator")
#: god's modules outside the wings: the process and command line on top, and the defaults
#: every wing may read.
TOP = {"god", "god.__main__", "god.cli", "god.service", "god.trim", "god.defaults"}
PACKAGES = ("god", "producer", "consumer", "shared")


def _module(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module(p): p for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project's modules that a module imports, anywhere in it."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{name}: the house imports absolutely, not 'from .'"
            base = node.module or ""
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)  # ``from god.journal import schema``
    return {m for m in found if m in known and m != name}


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(name, path, set(mods)) for name, path in mods.items()}


def _wing(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "god" and parts[1] in WINGS else None


def _allowed(wing: str) -> set[str]:
    """The wings a wing's docstring says it may import (its ``May import:`` paragraph)."""
    doc = importlib.import_module(f"god.{wing}").__doc__ or ""
    said = doc.partition("May import:")[2].split("\n\n")[0]
    return {m.split(".")[1] for m in re.findall(r"``(god\.\w+)``", said)} - {"defaults"}


def test_every_module_of_god_is_in_a_wing_or_on_top() -> None:
    loose = [m for m in _modules() if m.startswith("god") and _wing(m) is None and m not in TOP
             and m.removeprefix("god.") not in WINGS]
    assert loose == []


@pytest.mark.parametrize("wing", WINGS)
def test_a_wing_imports_only_the_wings_its_docstring_names(wing: str) -> None:
    allowed = _allowed(wing) | {wing}
    assert all(w in WINGS for w in allowed), f"god.{wing}'s docstring names a wing that is not one: {allowed}"
    wrong = sorted(f"{m} imports {d}" for m, deps in _graph().items() if _wing(m) == wing
                   for d in deps if d.startswith("god") and _wing(d) not in allowed
                   and d not in ("god", "god.defaults") and d.removeprefix("god.") not in allowed)
    assert wrong == []


def test_the_wings_are_layered_lowest_first() -> None:
    """A wing may import only wings below it in WINGS: so no two wings import each other."""
    for i, wing in enumerate(WINGS):
        assert _allowed(wing) <= set(WINGS[:i]), f"god.{wing} may import a wing above it"


def test_no_module_imports_itself_around_a_circle() -> None:
    graph = _graph()
    circles = [sorted(c) for c in _strongly_connected(graph) if len(c) > 1]
    assert circles == []


def _strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            # A package's __init__ runs before its modules: importing it is no circle with them.
            if v.startswith(w + "."):
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            c: set[str] = set()
            while True:
                w = stack.pop()
                on.discard(w)
                c.add(w)
                if w == v:
                    break
            out.append(c)

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_test_module_imports_another() -> None:
    """Tests share code through tests/support/ only (and fixtures through conftest.py)."""
    tests = {_module(p): p for p in sorted((REPO / "tests").rglob("*.py"))}
    wrong = sorted(f"{m} imports {d}" for m, p in tests.items() for d in _imports(m, p, set(tests))
                   if not d.startswith("tests.support") and d != "tests")
    assert wrong == []
