"""ScyllaDB-only cases: failures staged inside the adapter, several nodes, the schema.

They use the storage kit's ``Backend`` and builders on the ScyllaDB plugin (the
session keyspace, emptied first), and run only when ``--storage`` names scylla.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chatd.testing.storage.kit import (
    Backend,
    draft,
    make_device,
    make_direct,
    make_user,
    second_node,
    send,
    storage,
)
from tests.conftest import selected_storages
from tests.scylla_server import scylla

__all__ = [
    "draft",
    "make_device",
    "make_direct",
    "make_user",
    "second_node",
    "send",
    "storage",
]


def needs_scylla(request: pytest.FixtureRequest) -> None:
    if "scylla" not in selected_storages(request.config):
        pytest.skip("ScyllaDB-only tests: run with --storage=scylla")


@pytest.fixture
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    """The ScyllaDB store of this test (``storage`` and ``second_node`` open on it)."""
    needs_scylla(request)
    pytest.importorskip("cassandra", reason="scylla-driver is not installed")
    data_dir = tmp_path / "store"
    data_dir.mkdir()
    b = Backend("scylla", scylla, data_dir)
    try:
        yield b
    finally:
        await b.close_all()
