"""SQLite connections with group commit.

One writer connection owns every write. Writes are queued as operations; the
writer takes everything queued, runs it in one transaction and commits once, so
a burst of N messages costs one fsync, not N. Futures resolve only after COMMIT
returns, so nothing is acknowledged before it is durable. A separate read-only
connection (aiosqlite) serves reads concurrently (WAL lets readers run beside
the writer).

Operations of one kind are handed to their ``Batch`` together, so hot paths
(message appends, receipts) can use one statement for many operations instead
of one statement per operation; anything else runs as a generic job inside a
SAVEPOINT, so one failed job does not undo its neighbours.

The writer is a plain ``sqlite3`` connection owned by one thread of our own
(a one-worker executor): a whole transaction, BEGIN to COMMIT, runs there in one
hand-off, so batches and jobs are plain functions of that connection. Every
hand-off is a trip to that thread and back, and each trip has to win the GIL
from the busy event loop (up to the 5 ms switch interval): a dozen statements
awaited one by one made a commit take tens of milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
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

    Called in the writer's thread with its connection. It sets ``op.result`` to a
    value or to an exception meant for that caller. An exception it raises means
    the batch itself failed: the writer rolls back and retries each operation alone.
    """

    def run_sync(self, conn: sqlite3.Connection, ops: Sequence[WriteOp]) -> None: ...


class JobOp(WriteOp):
    __slots__ = ("job",)

    def __init__(self, job: Callable[[sqlite3.Connection], Any]) -> None:
        super().__init__()
        self.job = job


class JobBatch:
    """Generic jobs, each in its own savepoint."""

    def run_sync(self, conn: sqlite3.Connection, ops: Sequence[WriteOp]) -> None:
        for op in ops:
            assert isinstance(op, JobOp)
            conn.execute("SAVEPOINT job")
            try:
                op.result = op.job(conn)
            except ChatdError as exc:
                conn.execute("ROLLBACK TO job")
                op.result = exc
            conn.execute("RELEASE job")


_JOBS = JobBatch()
_STOP = object()


def _transaction(conn: sqlite3.Connection, batches: list[tuple[Batch, Sequence[WriteOp]]]) -> None:
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
        self._writer: sqlite3.Connection | None = None
        #: Set when a write fails for a reason other than a refusal (disk full,
        #: I/O error), cleared by the next commit that succeeds; /health reports it.
        self.writes_failing = False
        self._probed_at = 0.0
        self._thread: ThreadPoolExecutor | None = None  # the writer's, and only its
        self._reader: aiosqlite.Connection | None = None
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._accepting = False  # False while closing, so no write lands behind _STOP
        self._batches: dict[type[WriteOp], Batch] = {JobOp: _JOBS}

    def register(self, op_type: type[WriteOp], batch: Batch) -> None:
        self._batches[op_type] = batch

    async def _in_writer(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the writer's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def open(self) -> None:
        try:
            await self._open()
        except BaseException:
            await self._close_connections()
            raise

    async def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._writer = await self._in_writer(self._connect_writer)
        await self._in_writer(_migrate, self._writer)
        self._reader = await aiosqlite.connect(self.path, isolation_level=None)
        await self._reader.execute("PRAGMA query_only=ON")
        await self._reader.execute("PRAGMA busy_timeout=10000")
        self._task = asyncio.create_task(self._write_loop(), name="sqlite-writer")
        self._accepting = True

    def _connect_writer(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            for pragma in (
                "journal_mode=WAL",
                f"synchronous={self._synchronous}",
                "foreign_keys=ON",
                "busy_timeout=10000",
            ):
                conn.execute(f"PRAGMA {pragma}")
        except BaseException:
            conn.close()
            raise
        return conn

    async def aclose(self) -> None:
        self._accepting = False
        if self._task is not None:
            self._queue.put_nowait(_STOP)
            await self._task
            self._task = None
        await self._close_connections()

    async def _close_connections(self) -> None:
        """Close what is open; the threads behind them would keep the process alive."""
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await self._reader.close()
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await self._in_writer(self._writer.close)
        if self._thread is not None:
            self._thread.shutdown(wait=False)  # idle: its worker exits at once
        self._reader = self._writer = self._thread = None

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

    async def writable(self) -> bool:
        """False while writes fail (a full disk, an I/O error) until one succeeds again.

        After a failure, a write twice the size of a large message (128 KiB,
        inserted and deleted in one transaction: a message's write also touches
        its chat, member and index pages, so one the size of the message alone
        could fit where the message did not) probes the file, at most once a second,
        so health recovers by itself once an operator frees space, even if no
        client writes meanwhile.
        """
        if not self.writes_failing:
            return True
        now = time.monotonic()
        if now - self._probed_at < 1.0:
            return False
        self._probed_at = now

        def probe(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO write_probe (id, body) VALUES (1, zeroblob(131072))")
            conn.execute("DELETE FROM write_probe")

        try:
            await self.job(probe)
        except ChatdError:
            return False
        return not self.writes_failing

    async def job(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in the writer's thread and transaction; it may raise ChatdError
        to refuse (its writes are undone, its neighbours' kept)."""
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
            self.writes_failing = False
        except Exception:
            if len(batch) == 1:
                log.exception("write failed")
                batch[0].result = ChatdError("unavailable", "storage write failed")
                self.writes_failing = True
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
        assert self._writer is not None
        by_kind: dict[type[WriteOp], list[WriteOp]] = {}
        for op in batch:
            by_kind.setdefault(type(op), []).append(op)
        batches = [(self._batches[kind], ops) for kind, ops in by_kind.items()]
        await self._in_writer(_transaction, self._writer, batches)


def _migrate(conn: sqlite3.Connection) -> None:
    """Apply ``migrations/NNNN_*.sql`` in order, each atomically, once."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations "
        "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)"
    )
    done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
    folder = resources.files("chatd.storage.sqlite") / "migrations"
    scripts = sorted(p for p in folder.iterdir() if p.name.endswith(".sql"))
    for script in scripts:
        version = int(script.name.split("_", 1)[0])
        if version in done:
            continue
        log.info("applying migration %s", script.name)
        body = script.read_text(encoding="utf-8")
        conn.executescript(
            f"BEGIN IMMEDIATE;\n{body}\n"
            f"INSERT INTO schema_migrations VALUES ({version}, '{script.name}', "
            f"{int(time.time() * 1000)});\nCOMMIT;"
        )
