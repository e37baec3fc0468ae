"""House rules, checked: the core imports no adapter, the gateway never imports storage."""

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


def test_scylla_statement_names_are_unique_across_modules():
    """The adapter prepares every module's ``CQL`` under one name space; a repeated
    name would silently run another module's statement."""
    pytest.importorskip("cassandra")

    package = importlib.import_module("chatd.storage.scylla")
    owners: dict[str, str] = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"chatd.storage.scylla.{info.name}")
        for name in getattr(module, "CQL", {}):
            assert name not in owners, f"{name} is defined in {owners[name]} and {info.name}"
            owners[name] = info.name
    assert owners
