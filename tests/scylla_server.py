"""The test session's ScyllaDB/Cassandra server (``CHATD_TEST_SCYLLA=host:port``).

Shared by the storage contract suite and the feature tests that run a chatd app
on ScyllaDB: one keyspace per test session, emptied before each test that uses
it, dropped when the session ends (``tests/conftest.py``).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest


class ScyllaServer:
    """One keyspace per test session on the server named by ``CHATD_TEST_SCYLLA``.

    A keyspace with all its tables takes seconds to create and drop on one node,
    truncating the tables a test wrote about 25 ms each, so every test gets the
    session's keyspace with its written tables truncated first (measured:
    docs/architecture.md). The keyspace is dropped when the session ends.
    """

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self.host, self.port = host or address, int(port) if host else 9042
        self.keyspace = f"chatd_test_{uuid.uuid4().hex[:12]}"
        self._session: Any = None
        self._schema = False

    async def ready(self) -> None:
        """The keyspace with every table, emptied: what each test starts from.

        The schema is made once, by chatd's own migrations, with a patient request
        timeout: on a loaded machine one CREATE can take longer than chatd's 10 s,
        and the first chatd to open the keyspace may be a child process that would
        give up.
        """
        if not self._schema:
            from chatd.storage.scylla import ScyllaStorage

            storage = ScyllaStorage(request_timeout=120, **self.options())
            await storage.open()
            await storage.aclose()
            self._schema = True
        await asyncio.to_thread(self.clean)

    def options(self) -> dict[str, Any]:
        return {"contact_points": [self.host], "port": self.port, "keyspace": self.keyspace}

    def _admin(self) -> Any:
        if self._session is None:
            from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile
            from cassandra.io.libevreactor import LibevConnection
            from cassandra.policies import RoundRobinPolicy

            profile = ExecutionProfile(load_balancing_policy=RoundRobinPolicy())
            cluster = Cluster(
                [self.host],
                port=self.port,
                connection_class=LibevConnection,
                execution_profiles={EXEC_PROFILE_DEFAULT: profile},
            )
            self._session = cluster.connect()
        return self._session

    def execute(self, query: str, params: Any = None) -> list[Any]:
        """Raw CQL on the session keyspace (blocking), for tests that stage failures."""
        return list(self._admin().execute(query.replace("{ks}", self.keyspace), params))

    def fill(self, chat_id: str, first: int, last: int, sender_id: str) -> None:
        """Store messages ``first..last`` of bucket 0 directly (blocking): a long chat,
        staged in a second instead of ten thousand appends."""
        from cassandra.query import BatchStatement, BatchType

        session = self._admin()
        insert = session.prepare(
            f"INSERT INTO {self.keyspace}.messages (chat_id, bucket, seq, message_id, "
            "sender_id, sender_device_id, type, content, client_msg_id, created_at) "
            "VALUES (?, 0, ?, ?, ?, 'staged', 'text', 'staged', ?, 0)"
        )
        futures = []
        for start in range(first, last + 1, 200):
            batch = BatchStatement(batch_type=BatchType.UNLOGGED)
            for seq in range(start, min(start + 200, last + 1)):
                batch.add(insert, (chat_id, seq, f"0-{seq:09d}", sender_id, f"staged-{seq}"))
            futures.append(session.execute_async(batch))
        for future in futures:
            future.result()

    def clean(self) -> None:
        """Truncate every table of the keyspace that holds a row (blocking)."""
        session = self._admin()
        tables = session.execute(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s",
            (self.keyspace,),
        ).all()
        names = [t.table_name for t in tables if t.table_name != "schema_migrations"]
        probes = [
            session.execute_async(f"SELECT * FROM {self.keyspace}.{n} LIMIT 1") for n in names
        ]
        used = [n for n, f in zip(names, probes, strict=True) if f.result().one() is not None]
        for future in [
            session.execute_async(f"TRUNCATE {self.keyspace}.{n}", timeout=60) for n in used
        ]:
            future.result()

    def drop(self) -> None:
        if self._session is not None:
            self._session.execute(f"DROP KEYSPACE IF EXISTS {self.keyspace}", timeout=120)
            self._session.cluster.shutdown()
            self._session = None


_scylla: ScyllaServer | None = None


def scylla_server() -> ScyllaServer:
    """The session's server; skips (or, with CI=true, fails) when none is configured."""
    global _scylla
    address = os.environ.get("CHATD_TEST_SCYLLA", "").strip()
    if not address:
        if os.environ.get("CI") == "true":
            pytest.fail("CHATD_TEST_SCYLLA (host:port) is not set; CI=true runs the ScyllaDB tests")
        pytest.skip("CHATD_TEST_SCYLLA (host:port) is not set: ScyllaDB tests skipped")
    if _scylla is None:
        _scylla = ScyllaServer(address)
    return _scylla


def drop_session_keyspace() -> None:
    if _scylla is not None:
        _scylla.drop()


_emptied: set[Path] = set()


def scylla(settings: Mapping[str, Any], context: Any) -> Any:
    """The storage kit's factory for ScyllaDB: the real plugin on the session keyspace.

    The keyspace is emptied when a test builds its first store (a ``data_dir`` the
    kit has not used before); later builds in that test (a second node, a restart)
    share its data, as the kit requires.
    """
    from chatd.storage.scylla import create

    server = scylla_server()
    if context.data_dir not in _emptied:
        server.clean()
        _emptied.add(context.data_dir)
    return create({**server.options(), **settings}, context)
