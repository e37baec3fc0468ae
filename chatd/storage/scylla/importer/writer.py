"""The importer: writes ``Put``s in few requests, keeps the checkpoint, reads back.

It works through an opened ``ScyllaStorage``'s bridge (``ScyllaStorage.cql``), so
it shares the adapter's session, policies and in-flight limit.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

from cassandra.query import UNSET_VALUE, BatchStatement, BatchType

from chatd.core.errors import ChatdError
from chatd.core.ids import now_ms
from chatd.storage.scylla import ScyllaStorage
from chatd.storage.scylla.bridge import gather_limited, unavailable
from chatd.storage.scylla.importer.images import Image, plain
from chatd.storage.scylla.importer.tables import PROGRESS_TABLE, TABLES, Put

#: A single-partition batch is one mutation (exempt from the batch size limits);
#: past this many bytes it is split anyway, to keep one request small.
MAX_BATCH_BYTES = 256 * 1024
#: Lone rows of different partitions go in batches of at most this many rows and
#: bytes: Cassandra's defaults for warning about a batch across partitions
#: (``unlogged_batch_across_partitions_warn_threshold``, ``batch_size_warn_threshold``).
SPREAD_ROWS = 10
SPREAD_BYTES = 5 * 1024


def _statements() -> dict[str, str]:
    out: dict[str, str] = {}
    for name, table in TABLES.items():
        for static in (False, True) if table.statics else (False,):
            cols = table.columns(static)
            marks = ", ".join("?" * len(cols))
            out[_name(name, static)] = (
                f"INSERT INTO {name} ({', '.join(cols)}) VALUES ({marks}) USING TIMESTAMP ?"
            )
        if table.scan:
            select = table.key + table.statics + table.regular
            out[f"import.scan.{name}"] = f"SELECT {', '.join(select)} FROM {name}"
    return out


def _name(table: str, static: bool) -> str:
    return f"import.{table}.{'static' if static else 'row'}"


CQL: dict[str, str] = {
    **_statements(),
    "import.epoch": "SELECT epoch, epoch_seq FROM messages WHERE chat_id = ? AND bucket = ? "
    "LIMIT 1",
    "import.progress": f"SELECT step, position, done, info FROM {PROGRESS_TABLE} "
    "WHERE source = 'sqlite'",
    "import.save": f"INSERT INTO {PROGRESS_TABLE} (source, step, position, done, info, "
    "updated_at) VALUES ('sqlite', ?, ?, ?, ?, ?)",
}

#: Tables whose first row tells whether chatd already wrote to a keyspace.
_USED_BY_CHATD = ("users", "chat_members", "messages", "devices")


class Importer:
    """Writes ``Put``s into an opened ``ScyllaStorage``'s keyspace, keeps the import's
    checkpoint there, and reads tables back for verification."""

    def __init__(self, storage: ScyllaStorage, *, batch_rows: int = 200) -> None:
        self.storage = storage
        self._cql = storage.cql
        self._keyspace = storage.keyspace
        self._batch_rows = max(1, batch_rows)

    async def open(self) -> None:
        """Create the checkpoint table (not part of chatd's schema) and prepare statements."""
        await self._run(
            f"CREATE TABLE IF NOT EXISTS {PROGRESS_TABLE} (source text, step text, "
            "position text, done boolean, info text, updated_at bigint, "
            "PRIMARY KEY (source, step))"
        )
        await asyncio.to_thread(self._cql.prepare_all, CQL)

    async def _run(self, text: str, params: Sequence[Any] | None = None) -> Any:
        try:
            return await self._cql.run(text, params)
        except ChatdError:
            raise
        except Exception as exc:
            raise unavailable(exc) from exc

    async def used_by_chatd(self) -> bool:
        """Whether the keyspace already holds chatd data (a first import needs it empty)."""
        for table in _USED_BY_CHATD:
            rs = await self._run(f"SELECT * FROM {table} LIMIT 1")
            if rs.current_rows:
                return True
        return False

    # -- writes --------------------------------------------------------------------

    async def write(self, puts: Sequence[Put]) -> None:
        """Write ``puts`` in as few requests as the cluster takes without complaint.

        Rows of one partition: unlogged batches (split past ``batch_rows`` rows or
        ``MAX_BATCH_BYTES``), one mutation each. Lone rows (the id index, the
        idempotency keys...): small unlogged batches of rows whose partitions have
        the same first replica (token-aware routing sends a batch to a replica of
        its first row, so the coordinator holds the others too, or most of them),
        within Cassandra's default warning thresholds for batches across partitions
        (``SPREAD_ROWS`` partitions, ``SPREAD_BYTES``). One request per lone row
        made the importer's own CPU the bottleneck (about 1,000 messages/s against
        5,000). Idempotent: writing the same puts again leaves the same cells.
        """
        partitions: dict[tuple[str, tuple[Any, ...]], list[Put]] = {}
        for p in dict.fromkeys(puts):  # drop exact repeats (a shared directory row)
            width = len(TABLES[p.table].partition)
            partitions.setdefault((p.table, p.values[:width]), []).append(p)
        requests: list[tuple[Any, Sequence[Any]]] = []
        spread: dict[Any, tuple[BatchStatement, int]] = {}
        for group in partitions.values():
            if len(group) == 1:
                p = group[0]
                bound = self._cql.q[_name(p.table, p.static)].bind(_bind(p))
                owner = self._replica(bound.routing_key)
                batch, size = spread.get(owner) or (_batch(), 0)
                weight = _weight(p)
                if len(batch) and (len(batch) >= SPREAD_ROWS or size + weight > SPREAD_BYTES):
                    requests.append((batch, ()))
                    batch, size = _batch(), 0
                batch.add(bound)
                spread[owner] = (batch, size + weight)
                continue
            batch, size = _batch(), 0
            for p in group:
                weight = _weight(p)
                if len(batch) and (
                    len(batch) >= self._batch_rows or size + weight > MAX_BATCH_BYTES
                ):
                    requests.append((batch, ()))
                    batch, size = _batch(), 0
                batch.add(self._cql.q[_name(p.table, p.static)], _bind(p))
                size += weight
            requests.append((batch, ()))
        requests += [(batch, ()) for batch, _ in spread.values()]
        await self._cql.writes(requests)

    def _replica(self, routing_key: bytes | None) -> Any:
        """The first replica of a partition (None when the driver has no token map)."""
        token_map = self._cql.session.cluster.metadata.token_map
        if token_map is None or routing_key is None:
            return None
        replicas = token_map.get_replicas(
            self._keyspace, token_map.token_class.from_key(routing_key)
        )
        return replicas[0] if replicas else None

    # -- checkpoint ------------------------------------------------------------------

    async def progress(self) -> dict[str, tuple[Any, bool, Any]]:
        """Each step's (position, done, info), as saved."""
        rows = await self._cql.all_rows("import.progress", ())
        return {
            r.step: (
                json.loads(r.position) if r.position else None,
                bool(r.done),
                json.loads(r.info) if r.info else None,
            )
            for r in rows
        }

    async def save(self, step: str, position: Any, done: bool = False, info: Any = None) -> None:
        """Record a step's progress: called only once what it covers is written."""
        await self._cql.write(
            "import.save",
            (
                step,
                json.dumps(position) if position is not None else UNSET_VALUE,
                done,
                json.dumps(info) if info is not None else UNSET_VALUE,
                now_ms(),
            ),
        )

    # -- reads, for verification ---------------------------------------------------------

    async def scan(self, table: str, page_size: int = 2000) -> AsyncIterator[list[Image]]:
        """Every row of ``table`` (a full scan, page by page) as images.

        For a table with static columns, each partition's statics are one image
        (``static=True``) and each of its rows another.
        """
        spec = TABLES[table]
        width, cut = len(spec.key), len(spec.key) + len(spec.statics)
        state: bytes | None = None
        last_partition: tuple[Any, ...] | None = None
        while True:
            rs = await self._cql.execute(
                f"import.scan.{table}", (), fetch_size=page_size, paging_state=state
            )
            page: list[Image] = []
            for row in rs.current_rows:
                values = tuple(plain(v) for v in row)
                if spec.statics:
                    partition = values[: len(spec.partition)]
                    if partition != last_partition:
                        last_partition = partition
                        statics = tuple(
                            (c, v)
                            for c, v in zip(spec.statics, values[width:cut], strict=True)
                            if v is not None
                        )
                        if statics:
                            page.append(Image(table, True, partition, statics))
                    if values[len(spec.partition)] is None:
                        continue  # a partition with statics only
                cells = tuple(
                    (c, v) for c, v in zip(spec.regular, values[cut:], strict=True) if v is not None
                )
                page.append(Image(table, False, values[:width], cells))
            yield page
            state = rs.paging_state
            if not state:
                return

    async def epochs(self, chat_id: str, buckets: Sequence[int]) -> list[tuple[int, int] | None]:
        """The (epoch, epoch_seq) statics of a chat's message buckets (None: unset)."""
        rows = await gather_limited(
            [self._cql.one("import.epoch", (chat_id, b)) for b in buckets], 32
        )
        return [
            (int(r.epoch), int(r.epoch_seq or 0)) if r is not None and r.epoch is not None else None
            for r in rows
        ]


def _weight(p: Put) -> int:
    """A row's size, roughly: its text plus a fixed cost per row."""
    return 64 + sum(len(v) for v in p.values if isinstance(v, str))


def _batch() -> BatchStatement:
    return BatchStatement(batch_type=BatchType.UNLOGGED)


def _bind(p: Put) -> tuple[Any, ...]:
    return (*(UNSET_VALUE if v is None else v for v in p.values), p.ts)
