"""The way through graphc goes one direction: a package imports only packages below it.

ir -> passes -> backend -> codegen_cpu / codegen_cuda and runtime -> data, models,
interop -> training -> bench -> cli. Packages on one layer do not import each other: the runtime reaches a
backend through ``graphc.backend.target``, never by importing it. Every import counts,
also one inside a function. Only ``graphc/__init__.py`` (the public API) sees everything,
and only the command line, on top, imports it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PACKAGE = Path(__file__).resolve().parent.parent / "graphc"

LAYERS = [
    {"ir"},
    {"passes"},
    {"backend"},
    {"codegen_cpu", "codegen_cuda", "runtime"},
    {"data", "models", "interop"},
    {"training"},
    {"bench"},
    {"cli"},
]
LAYER_OF = {name: rank for rank, names in enumerate(LAYERS) for name in names}


def package_of(module: str) -> str | None:
    """The first-level package of a ``graphc.x.y`` module name ('' for ``graphc`` itself)."""
    parts = module.split(".")
    if parts[0] != "graphc":
        return None
    return parts[1] if len(parts) > 1 else ""


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in a file, the names of ``from graphc import x`` too."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            found.append((node.lineno, "." * node.level + (node.module or "")))
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "graphc":
                found += [(node.lineno, f"graphc.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, node.module))
    return found


def violations(root: Path = PACKAGE) -> list[str]:
    problems = []
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root)
        if relative == Path("__init__.py"):
            continue
        home = relative.parts[0].removesuffix(".py")
        if home not in LAYER_OF:
            problems.append(f"{relative}: package {home!r} has no layer in tests/test_layers.py")
            continue
        for line, module in imported_modules(path):
            if module.startswith("."):
                problems.append(f"{relative}:{line}: relative import {module}; name the package")
                continue
            target = package_of(module)
            if target is None or target == home:
                continue
            if target == "":  # the public API, which imports every package
                allowed = LAYER_OF[home] == len(LAYERS) - 1
            else:
                allowed = target in LAYER_OF and LAYER_OF[target] < LAYER_OF[home]
            if not allowed:
                problems.append(f"{relative}:{line}: {home} imports {module}")
    return problems


def test_no_package_imports_one_above_it_or_beside_it():
    assert violations() == []


def test_the_check_catches_an_upward_import(tmp_path):
    (tmp_path / "ir").mkdir()
    (tmp_path / "ir" / "bad.py").write_text("def f():\n    from graphc.runtime import bind\n")
    (tmp_path / "runtime").mkdir()
    (tmp_path / "runtime" / "side.py").write_text("import graphc.codegen_cpu.conv\n")
    (tmp_path / "passes").mkdir()
    (tmp_path / "passes" / "root.py").write_text("from graphc import metric\n")
    (tmp_path / "passes" / "near.py").write_text("from .root import metric\n")
    assert violations(tmp_path) == [
        "ir/bad.py:2: ir imports graphc.runtime",
        "passes/near.py:1: relative import .root; name the package",
        "passes/root.py:1: passes imports graphc.metric",
        "runtime/side.py:1: runtime imports graphc.codegen_cpu.conv",
    ]
