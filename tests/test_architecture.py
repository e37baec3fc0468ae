"""House rules, checked: the core imports no adapter, the gateway never imports storage,
no module imports itself back through others."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "chatd"


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_core_imports_only_the_stdlib_and_itself():
    for path in (ROOT / "core").rglob("*.py"):
        for name in imports(path):
            top = name.split(".")[0]
            allowed = (
                top in sys.stdlib_module_names
                or name.startswith("chatd.core")
                or top == "__future__"
            )
            assert allowed, f"{path.relative_to(ROOT)} imports {name}"


def test_gateway_never_imports_storage_adapters():
    for path in (ROOT / "gateway").rglob("*.py"):
        for name in imports(path):
            assert not name.startswith("chatd.storage"), f"{path.name} imports {name}"


def test_client_is_independent_of_the_server():
    for path in (ROOT / "client").rglob("*.py"):
        for name in imports(path):
            assert not (name.startswith("chatd.") and not name.startswith("chatd.client")), (
                f"{path.name} imports {name}"
            )


def test_admin_console_reaches_chatd_only_through_the_client():
    """The TUI works on a remote server: the wire (``chatd.client``), never the server's code."""
    for path in (ROOT.parent / "admin_tui").rglob("*.py"):
        for name in imports(path):
            assert not (name.startswith("chatd.") and not name.startswith("chatd.client")), (
                f"admin_tui/{path.relative_to(ROOT.parent / 'admin_tui')} imports {name}"
            )


def test_scylla_statement_names_are_unique_across_modules():
    """The adapter prepares every module's ``CQL`` under one name space; a repeated
    name would silently run another module's statement."""
    pytest.importorskip("cassandra")

    package = importlib.import_module("chatd.storage.scylla")
    owners: dict[str, str] = {}
    for info in pkgutil.walk_packages(package.__path__, "chatd.storage.scylla."):
        module = importlib.import_module(info.name)
        for name in getattr(module, "CQL", {}):
            assert name not in owners, f"{name} is defined in {owners[name]} and {info.name}"
            owners[name] = info.name
    assert owners


def module_graph() -> dict[str, set[str]]:
    """chatd module -> the chatd modules it imports, wherever the import statement is
    (inside functions and ``if TYPE_CHECKING:`` too: a cycle deferred is still one)."""
    modules: dict[str, Path] = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in node.names:  # ``from package import module`` names a module
                    found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Groups of modules that import each other, directly or through others (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_cycles_are_found():
    graph = {"a.x": {"a.y"}, "a.y": {"a.z"}, "a.z": {"a.x"}, "a.w": {"a.x"}}
    assert cycles(graph) == [["a.x", "a.y", "a.z"]]
    assert cycles({"a.x": {"a.y"}, "a.y": set()}) == []


def test_no_import_cycles():
    """Modules of a package import one another one way only (a cycle makes import
    order matter and both modules impossible to understand alone)."""
    graph = module_graph()
    assert "chatd.migrate.steps" in graph["chatd.migrate.runner"]  # the graph sees imports
    assert cycles(graph) == []
