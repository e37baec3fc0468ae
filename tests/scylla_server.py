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

#: Partitions a table may have deleted (tombstones) before it is truncated instead.
DELETED_PARTITIONS = 900
#: Written ``USING TIMESTAMP`` <a small counter> under a fixed key: a delete's
#: tombstone would hide the next test's writes, so these always truncate.
TRUNCATED_TABLES = frozenset({"feed_head"})


class ScyllaServer:
    """One keyspace per test session on the server named by ``CHATD_TEST_SCYLLA``.

    A keyspace with all its tables takes seconds to create and drop on one node,
    emptying the tables a test wrote a fraction of that, so every test gets the
    session's keyspace emptied first (``clean``; measured: docs/architecture.md).
    The keyspace is dropped when the session ends.
    """

    def __init__(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        self.host, self.port = host or address, int(port) if host else 9042
        self.keyspace = f"chatd_test_{uuid.uuid4().hex[:12]}"
        self._session: Any = None
        self._schema = False
        self._keys: dict[str, list[str]] | None = None
        #: Partitions deleted per table since it was last truncated.
        self._deleted: dict[str, int] = {}

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
        """Empty every table of the keyspace that holds a row (blocking).

        Rows go by ``DELETE`` of each partition rather than ``TRUNCATE``: a
        truncation flushes and waits on the node, and doing it for every test cost
        about half of Cassandra's CPU in the ScyllaDB tests (53 tests: 46-50 s with
        TRUNCATE, 33 s with DELETE). A table truncates instead when its partitions
        deleted so far would pass ``DELETED_PARTITIONS`` (tombstones that range
        scans read, kept under Cassandra's warning threshold of 1,000), and always
        for ``TRUNCATED_TABLES``.
        """
        session = self._admin()
        ks = self.keyspace
        tables = session.execute(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (ks,)
        ).all()
        names = [t.table_name for t in tables if t.table_name != "schema_migrations"]
        probes = [session.execute_async(f"SELECT * FROM {ks}.{n} LIMIT 1") for n in names]
        used = [n for n, f in zip(names, probes, strict=True) if f.result().one() is not None]
        keys = self._partition_keys()
        truncating: list[str] = []
        deleting: list[Any] = []
        for name in used:
            columns = keys[name]
            listed = session.execute_async(
                f"SELECT DISTINCT {', '.join(columns)} FROM {ks}.{name} "
                f"LIMIT {DELETED_PARTITIONS + 1}"
            )
            deleting.append((name, columns, listed))
        deletes = []
        for name, columns, listed in deleting:
            partitions = listed.result().all()
            deleted = self._deleted.get(name, 0) + len(partitions)
            if name in TRUNCATED_TABLES or deleted > DELETED_PARTITIONS:
                truncating.append(name)
                self._deleted[name] = 0
                continue
            self._deleted[name] = deleted
            where = " AND ".join(f"{c} = %s" for c in columns)
            statement = f"DELETE FROM {ks}.{name} WHERE {where}"
            deletes += [session.execute_async(statement, tuple(p)) for p in partitions]
        deletes += [session.execute_async(f"TRUNCATE {ks}.{n}", timeout=60) for n in truncating]
        for future in deletes:
            future.result()

    def _partition_keys(self) -> dict[str, list[str]]:
        """Each table's partition key columns, in order."""
        if self._keys is None:
            rows = self._admin().execute(
                "SELECT table_name, column_name, kind, position FROM system_schema.columns "
                "WHERE keyspace_name = %s",
                (self.keyspace,),
            )
            found: dict[str, list[tuple[int, str]]] = {}
            for row in rows:
                if row.kind == "partition_key":
                    found.setdefault(row.table_name, []).append((row.position, row.column_name))
            self._keys = {t: [c for _, c in sorted(cols)] for t, cols in found.items()}
        return self._keys

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
