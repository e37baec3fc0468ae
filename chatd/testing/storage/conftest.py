"""The storage conformance kit as a pytest plugin (the cases are the ``test_*.py`` beside it).

pytest --pyargs chatd.testing.storage --storage-factory=my_plugin:create
"""

from __future__ import annotations

import pytest

from chatd.testing.storage.kit import (
    backend,
    draft,
    make_device,
    make_direct,
    make_user,
    parametrize_backend,
    second_node,
    send,
    storage,
)

__all__ = [
    "backend",
    "draft",
    "make_device",
    "make_direct",
    "make_user",
    "second_node",
    "send",
    "storage",
]


def pytest_collectstart(collector: pytest.Collector) -> None:
    """Every case is a coroutine: run them with pytest-asyncio whatever its mode."""
    if isinstance(collector, pytest.Module):
        collector.add_marker(pytest.mark.asyncio)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_backend(metafunc)
