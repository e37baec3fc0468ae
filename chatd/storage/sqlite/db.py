"""SQLite connections with group commit.

One writer connection owns every write. Writes are queued as operations; the
writer takes everything queued, runs it in one transaction and commits once, so
a burst of N messages costs one fsync, not N. Futures resolve only after COMMIT
returns, so nothing is acknowledged before it is durable. A separate read-only
connection serves reads concurrently (WAL lets readers run beside the writer).

Operations of one kind are handed to their ``Batch`` together, so hot paths
(message appends, receipts) can use one statement for many operations instead of
one statement per operation; anything else runs as a generic job inside a SAVEPOINT, so one failed
job does not undo its neighbours.

The hot paths' batches are synchronous (``SyncBatch``): a transaction made of
them only runs in the writer's thread, BEGIN to COMMIT, in one hand-off. Each
``await`` on aiosqlite is a trip to its thread and back, and each trip has to
win the GIL from the busy event loop (up to the 5 ms switch interval), so a
dozen statements awaited one by one made a commit take tens of milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Protocol, TypeVar

import aiosqlite

from chatd.core.errors import ChatdError

log = logging.getLogger(__name__)
T = TypeVar("T")
Observer = Callable[[str, float], None]


class WriteOp:
    """One queued write; ``result`` is set by its batch, the future after COMMIT."""

    __slots__ = ("future", "result")

    def __init__(self) -> None:
        self.future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.result: Any = None


class Batch(Protocol):
    """Runs a list of operations of one kind inside the writer's open transaction.

    It sets ``op.result`` to a value or to an exception meant for that caller. An
    exception it raises means the batch itself failed: the writer rolls back and
    retries each operation alone.
    """

    async def run(self, conn: aiosqlite.Connection, ops: Sequence[WriteOp]) -> None: ...


class SyncBatch(Protocol):
    """A ``Batch`` that runs in the writer's thread on the plain sqlite3 connection."""

    def run_sync(self, conn: sqlite3.Connection, ops: Sequence[WriteOp]) -> None: ...


class JobOp(WriteOp):
    __slots__ = ("job",)

    def __init__(self, job: Callable[[aiosqlite.Connection], Awaitable[Any]]) -> None:
        super().__init__()
        self.job = job


class JobBatch:
    """Generic jobs, each in its own savepoint."""

    async def run(self, conn: aiosqlite.Connection, ops: Sequence[WriteOp]) -> None:
        for op in ops:
            assert isinstance(op, JobOp)
            await conn.execute("SAVEPOINT job")
            try:
                op.result = await op.job(conn)
            except ChatdError as exc:
                await conn.execute("ROLLBACK TO job")
                op.result = exc
            await conn.execute("RELEASE job")


_JOBS = JobBatch()
_STOP = object()


def _transaction(
    conn: sqlite3.Connection, batches: list[tuple[SyncBatch, Sequence[WriteOp]]]
) -> None:
    """BEGIN, every batch, COMMIT, in the writer's thread; ROLLBACK and raise on failure."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for batch, ops in batches:
            batch.run_sync(conn, ops)
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(Exception):
            conn.execute("ROLLBACK")
        raise


class Database:
    def __init__(
        self,
        path: Path,
        *,
        synchronous: str = "FULL",
        max_batch: int = 1024,
        observe: Observer | None = None,
    ) -> None:
        self.path = path
        self._synchronous = synchronous
        self._max_batch = max_batch
        self._observe = observe or (lambda op, seconds: None)
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._accepting = False  # False while closing, so no write lands behind _STOP
        self._batches: dict[type[WriteOp], Batch | SyncBatch] = {JobOp: _JOBS}

    def register(self, op_type: type[WriteOp], batch: Batch | SyncBatch) -> None:
        self._batches[op_type] = batch

    async def open(self) -> None:
        try:
            await self._open()
        except BaseException:
            # aiosqlite's threads keep the process alive: close what was opened.
            for conn in (self._reader, self._writer):
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()
            self._reader = self._writer = None
            raise

    async def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = await aiosqlite.connect(self.path, isolation_level=None)
        for pragma in (
            "journal_mode=WAL",
            f"synchronous={self._synchronous}",
            "foreign_keys=ON",
            "busy_timeout=10000",
        ):
            await self._writer.execute(f"PRAGMA {pragma}")
        await self._migrate(self._writer)
        self._reader = await aiosqlite.connect(self.path, isolation_level=None)
        await self._reader.execute("PRAGMA query_only=ON")
        await self._reader.execute("PRAGMA busy_timeout=10000")
        self._task = asyncio.create_task(self._write_loop(), name="sqlite-writer")
        self._accepting = True

    async def aclose(self) -> None:
        self._accepting = False
        if self._task is not None:
            self._queue.put_nowait(_STOP)
            await self._task
            self._task = None
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._reader = self._writer = None

    # -- reads ---------------------------------------------------------------

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        assert self._reader is not None, "database is not open"
        started = time.perf_counter()
        try:
            rows = await self._reader.execute_fetchall(sql, tuple(params))
        except (aiosqlite.Error, ValueError) as exc:  # ValueError: connection closed
            log.warning("read failed: %s: %s", sql, exc)
            raise ChatdError("unavailable", "storage is unavailable") from exc
        self._observe("read", time.perf_counter() - started)
        return list(rows)  # type: ignore[arg-type]

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> tuple[Any, ...] | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    # -- writes --------------------------------------------------------------

    async def submit(self, op: WriteOp) -> Any:
        """Queue a write and wait until it is committed; raises what its batch set."""
        return await self.submit_nowait(op)

    def submit_nowait(self, op: WriteOp) -> asyncio.Future[Any]:
        """Queue a write; its future resolves after COMMIT (no coroutine, no task)."""
        if self._task is None or not self._accepting:
            raise ChatdError("unavailable", "storage is closed")
        self._queue.put_nowait(op)
        return op.future

    async def job(self, fn: Callable[[aiosqlite.Connection], Awaitable[T]]) -> T:
        """Run ``fn`` in the writer's transaction; it may raise ChatdError to refuse."""
        return await self.submit(JobOp(fn))

    async def _write_loop(self) -> None:
        stopping = False
        while not stopping:
            item = await self._queue.get()
            if item is _STOP:
                break
            batch = [item]
            while len(batch) < self._max_batch and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is _STOP:
                    stopping = True
                    break
                batch.append(item)
            await self._commit(batch)

    async def _commit(self, batch: list[WriteOp]) -> None:
        started = time.perf_counter()
        try:
            await self._run_in_transaction(batch)
        except Exception:
            if len(batch) == 1:
                log.exception("write failed")
                batch[0].result = ChatdError("unavailable", "storage write failed")
            else:
                log.warning("batch of %d failed; retrying one by one", len(batch))
                for op in batch:
                    await self._commit([op])
                return
        self._observe("commit", time.perf_counter() - started)
        for op in batch:
            if op.future.done():
                continue
            if isinstance(op.result, BaseException):
                op.future.set_exception(op.result)
            else:
                op.future.set_result(op.result)

    async def _run_in_transaction(self, batch: list[WriteOp]) -> None:
        conn = self._writer
        assert conn is not None
        by_kind: dict[type[WriteOp], list[WriteOp]] = {}
        for op in batch:
            by_kind.setdefault(type(op), []).append(op)
        batches = [(self._batches[kind], ops) for kind, ops in by_kind.items()]
        if all(hasattr(runner, "run_sync") for runner, _ in batches):
            # aiosqlite's way to run a callable in its thread (not public API).
            await conn._execute(_transaction, conn._conn, batches)
            return
        await conn.execute("BEGIN IMMEDIATE")
        try:
            for runner, ops in batches:
                if hasattr(runner, "run_sync"):
                    await conn._execute(runner.run_sync, conn._conn, ops)
                else:
                    await runner.run(conn, ops)  # type: ignore[union-attr]
            await conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):
                await conn.execute("ROLLBACK")
            raise

    # -- schema --------------------------------------------------------------

    async def _migrate(self, conn: aiosqlite.Connection) -> None:
        """Apply ``migrations/NNNN_*.sql`` in order, each atomically, once."""
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
        )
        done = {
            row[0] for row in await conn.execute_fetchall("SELECT version FROM schema_migrations")
        }
        folder = resources.files("chatd.storage.sqlite") / "migrations"
        scripts = sorted(p for p in folder.iterdir() if p.name.endswith(".sql"))
        for script in scripts:
            version = int(script.name.split("_", 1)[0])
            if version in done:
                continue
            log.info("applying migration %s", script.name)
            body = script.read_text(encoding="utf-8")
            await conn.executescript(
                f"BEGIN IMMEDIATE;\n{body}\n"
                f"INSERT INTO schema_migrations VALUES ({version}, '{script.name}', "
                f"{int(time.time() * 1000)});\nCOMMIT;"
            )
