"""asyncio on top of the driver's callback API, and the adapter's error policy.

The driver has no ``await``: ``execute_async`` returns a ``ResponseFuture`` whose
callbacks fire on the driver's I/O thread, so each query is bridged into the
event loop with ``call_soon_threadsafe``. Only ``current_rows`` and
``paging_state`` are read here: iterating a ResultSet past its first page would
block the loop.

Failures become ``ChatdError('unavailable')``. Every plain write of this adapter
is idempotent (an upsert of the same values, or a max register), so a timed-out
one is simply retried. A timed-out lightweight transaction may or may not have
been applied, so ``lwt`` asks the caller's ``verify`` (a SERIAL read, which also
finishes any Paxos round left in flight) instead of guessing. At most
``max_in_flight`` requests run at once: a burst queues here instead of
overloading the cluster into timeouts.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from cassandra import ConsistencyLevel, InvalidRequest, OperationTimedOut, Unavailable, WriteTimeout
from cassandra.query import BatchStatement, BatchType, PreparedStatement, Statement

from chatd.core.errors import ChatdError

log = logging.getLogger("chatd.storage.scylla")
Observer = Callable[[str, float], None]
Row = Any  # the driver's named tuples
WRITE_ATTEMPTS = 3


def unavailable(exc: BaseException | None = None) -> ChatdError:
    if exc is not None:
        log.warning("cql failed: %s: %s", type(exc).__name__, exc)
    return ChatdError("unavailable", "storage is unavailable", retry_after=1.0)


@dataclass(slots=True)
class LwtResult:
    """``applied``; else ``rows`` hold the current values the condition saw (empty
    when the outcome had to be verified: the caller re-reads)."""

    applied: bool
    rows: list[Row]


class Gate:
    """Counts writes in flight so ``aclose`` can finish them and refuse new ones."""

    def __init__(self) -> None:
        self.accepting = False
        self._count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        if not self.accepting:
            raise ChatdError("unavailable", "storage is closed")
        self._count += 1
        self._idle.clear()

    def leave(self) -> None:
        self._count -= 1
        if self._count == 0:
            self._idle.set()

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        self.enter()
        try:
            yield
        finally:
            self.leave()

    async def close(self) -> None:
        self.accepting = False
        await self._idle.wait()


class Cql:
    """One driver session with prepared statements by name, bridged to asyncio."""

    def __init__(
        self,
        session: Any,
        *,
        observe: Observer | None = None,
        serial: int = ConsistencyLevel.LOCAL_SERIAL,
        max_in_flight: int = 512,
    ) -> None:
        self.session = session
        self._slots = asyncio.Semaphore(max_in_flight)
        self.q: dict[str, PreparedStatement] = {}
        self.gate = Gate()
        self.closed = False
        self._serial = serial
        self._observe = observe or (lambda op, seconds: None)

    def prepare_all(self, texts: dict[str, str]) -> None:
        """Blocking (the driver has no async prepare): call it through ``to_thread``."""
        for name, text in texts.items():
            self.q[name] = self.session.prepare(text)

    # -- statements ------------------------------------------------------------

    def bind(self, name: str, params: Sequence[Any] = ()) -> Statement:
        return self.q[name].bind(params)

    def batch(
        self, items: Sequence[tuple[str, Sequence[Any]]], *, logged: bool = False
    ) -> BatchStatement:
        kind = BatchType.LOGGED if logged else BatchType.UNLOGGED
        batch = BatchStatement(batch_type=kind)
        for name, params in items:
            batch.add(self.q[name], params)
        return batch

    # -- execution -------------------------------------------------------------

    def _raw(
        self,
        stmt: Statement | str,
        params: Sequence[Any] | None,
        paging_state: bytes | None,
        host: Any = None,
    ) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        rf = self.session.execute_async(stmt, params, paging_state=paging_state, host=host)

        def settle(ok: bool, value: Any) -> None:
            if fut.done():
                return
            if ok:
                fut.set_result(rf.result())
            else:
                fut.set_exception(value)

        rf.add_callbacks(
            lambda _rows: loop.call_soon_threadsafe(settle, True, None),
            lambda exc: loop.call_soon_threadsafe(settle, False, exc),
        )
        return fut

    async def run(
        self,
        stmt: Statement | str,
        params: Sequence[Any] | None = None,
        *,
        op: str = "read",
        serial: bool = False,
        fetch_size: int | None = None,
        paging_state: bytes | None = None,
        host: Any = None,
    ) -> Any:
        """Execute and return the ResultSet; driver errors raise as they are."""
        if self.closed or self.session is None:
            raise ChatdError("unavailable", "storage is closed")
        if isinstance(stmt, PreparedStatement):
            stmt, params = stmt.bind(params or ()), None
        if serial:
            stmt.consistency_level = self._serial
        if fetch_size is not None:
            stmt.fetch_size = fetch_size
        async with self._slots:
            started = time.perf_counter()
            result = await self._raw(stmt, params, paging_state, host)
        self._observe(op, time.perf_counter() - started)
        return result

    async def execute(self, name: str, params: Sequence[Any] = (), **kw: Any) -> Any:
        if self.closed or self.session is None:
            raise ChatdError("unavailable", "storage is closed")
        try:
            return await self.run(self.q[name], params, **kw)
        except ChatdError:
            raise
        except InvalidRequest:
            raise
        except Exception as exc:
            raise unavailable(exc) from exc

    async def rows(self, name: str, params: Sequence[Any] = (), **kw: Any) -> list[Row]:
        return list((await self.execute(name, params, **kw)).current_rows)

    async def one(self, name: str, params: Sequence[Any] = (), **kw: Any) -> Row | None:
        rows = await self.rows(name, params, **kw)
        return rows[0] if rows else None

    async def all_rows(
        self, name: str, params: Sequence[Any] = (), *, page_size: int = 1000, **kw: Any
    ) -> list[Row]:
        """Every row, one page at a time (stateless paging)."""
        out: list[Row] = []
        state: bytes | None = None
        while True:
            rs = await self.execute(name, params, fetch_size=page_size, paging_state=state, **kw)
            out.extend(rs.current_rows)
            state = rs.paging_state
            if not state:
                return out

    async def write(self, stmt: str | Statement, params: Sequence[Any] = ()) -> None:
        """A plain (non-conditional) write: a statement name or a built batch."""
        target = self.q[stmt] if isinstance(stmt, str) else stmt
        for attempt in range(WRITE_ATTEMPTS):
            try:
                await self.run(target, params if isinstance(stmt, str) else None, op="write")
                return
            except ChatdError:
                raise
            except (WriteTimeout, OperationTimedOut) as exc:
                if attempt + 1 == WRITE_ATTEMPTS:
                    raise unavailable(exc) from exc
                await asyncio.sleep(0.05 * 4**attempt)
            except Exception as exc:
                raise unavailable(exc) from exc

    async def writes(self, items: Sequence[tuple[str | Statement, Sequence[Any]]]) -> None:
        """Independent writes, concurrently; the first failure is raised after all end."""
        results = await asyncio.gather(
            *(self.write(s, p) for s, p in items), return_exceptions=True
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def lwt(
        self,
        stmt: str | Statement,
        params: Sequence[Any] = (),
        *,
        verify: Callable[[], Awaitable[bool]],
    ) -> LwtResult:
        """A conditional write; an unknown outcome is settled by ``verify``."""
        target = self.q[stmt] if isinstance(stmt, str) else stmt
        try:
            rs = await self.run(target, params if isinstance(stmt, str) else None, op="lwt")
        except ChatdError:
            raise
        except (InvalidRequest, Unavailable) as exc:  # refused before any replica wrote
            raise unavailable(exc) from exc
        except Exception as exc:
            log.info("lwt outcome unknown (%s); verifying", type(exc).__name__)
            try:
                return LwtResult(await verify(), [])
            except ChatdError:
                raise
            except Exception as again:
                raise unavailable(again) from exc
        rows = list(rs.current_rows)
        applied = bool(rows[0][0]) if rows else True
        return LwtResult(applied, [] if applied else rows)


async def gather_limited(calls: Sequence[Awaitable[Any]], limit: int = 64) -> list[Any]:
    """``asyncio.gather`` with at most ``limit`` in flight (fan-out reads and writes)."""
    semaphore = asyncio.Semaphore(limit)

    async def one(call: Awaitable[Any]) -> Any:
        async with semaphore:
            return await call

    try:
        return list(await asyncio.gather(*(one(c) for c in calls)))
    except BaseException:
        # Cancelled (a shutdown) before some calls had their turn, or before their
        # wrapper even ran: close those that never started, so none is left
        # "never awaited".
        for call in calls:
            if inspect.iscoroutine(call) and inspect.getcoroutinestate(call) == "CORO_CREATED":
                call.close()
        raise


class KeyedLocks:
    """One asyncio lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[Any, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: Any) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)
