"""House rules, checked: the core imports no adapter, the gateway never imports storage."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

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
