"""The store's boundary holds: no module of `baton` outside `baton.store` reaches past it.

Outside `src/baton/store/`, a module asks the store through the methods its consumers' protocols
declare, so it never tests which store it holds (`isinstance(..., SQLStore)`), never runs work
of its own on the store's `runner` (`.runner`, `getattr(x, "runner")`), and never imports a
private name (`from baton.store... import _name`). Each of these let a caller depend on how the
SQL store is built rather than on what it does; this test finds them in the syntax tree.
"""

from __future__ import annotations

import ast
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[2] / "src" / "baton"
STORE = SOURCE / "store"


def _outside_the_store() -> list[Path]:
    return sorted(path for path in SOURCE.rglob("*.py") if STORE not in path.parents)


def _names(node: ast.expr) -> set[str]:
    """The names an expression mentions (`SQLStore`, `sql.SQLStore`, a tuple of them)."""
    found = set()
    for inner in ast.walk(node):
        if isinstance(inner, ast.Name):
            found.add(inner.id)
        elif isinstance(inner, ast.Attribute):
            found.add(inner.attr)
    return found


def crossings(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, what) for each way `tree` reaches past the store's boundary."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            name = node.func.id
            if name == "isinstance" and len(node.args) == 2 and "SQLStore" in _names(node.args[1]):
                found.append((node.lineno, "isinstance(..., SQLStore)"))
            if node.func.id in {"getattr", "hasattr"} and len(node.args) >= 2:
                attribute = node.args[1]
                if isinstance(attribute, ast.Constant) and attribute.value == "runner":
                    found.append((node.lineno, f'{name}(..., "runner")'))
        elif isinstance(node, ast.Attribute) and node.attr == "runner":
            found.append((node.lineno, ".runner"))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("baton.store"):
            for alias in node.names:
                if alias.name.startswith("_"):
                    found.append((node.lineno, f"from {node.module} import {alias.name}"))
    return sorted(found)


def test_no_module_outside_the_store_reaches_past_its_boundary() -> None:
    modules = _outside_the_store()
    assert len(modules) > 50  # the walk found the package
    crossed = [
        f"{path.relative_to(SOURCE.parent)}:{line}: {what}"
        for path in modules
        for line, what in crossings(ast.parse(path.read_text(), str(path)))
    ]
    assert crossed == []


def test_each_crossing_is_found() -> None:
    """The walk itself: each kind of crossing, written as a module would write it."""
    source = """
from baton.store.sql import SQLStore, _revoke_grant
from baton.store import sql
isinstance(store, SQLStore)
isinstance(store, (int, sql.SQLStore))
store.runner.write(work)
getattr(store, "runner", None)
isinstance(store, dict)
store.purge(now, retention)
"""
    assert [what for _, what in crossings(ast.parse(source))] == [
        "from baton.store.sql import _revoke_grant",
        "isinstance(..., SQLStore)",
        "isinstance(..., SQLStore)",
        ".runner",
        'getattr(..., "runner")',
    ]
