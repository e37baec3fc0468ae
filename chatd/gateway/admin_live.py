"""``GET /admin/live``: a WebSocket with a ``stats`` frame every second and a
``log`` frame for each log record at INFO or above.

Every connection has a bounded queue of frames (``QUEUE_FRAMES``): a frame that
finds it full is dropped and counted (``LiveHub.dropped``), so an admin client
that stops reading costs at most its queue and the socket's write buffer, and
never slows the server or its logging. Log records may come from any thread
(the SQLite writer, the ScyllaDB driver): they are handed to the event loop.
The log handler is on the root logger only while some admin is connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from chatd.core.ids import format_ts
from chatd.gateway.context import services
from chatd.logs import RedactTokens

QUEUE_FRAMES = 256
MAX_LOG_MESSAGE = 4096
STATS_INTERVAL_S = 1.0


class _Handler(logging.Handler):
    def __init__(self, hub: LiveHub) -> None:
        super().__init__(logging.INFO)
        self._hub = hub
        self.addFilter(RedactTokens())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            frame = _frame(
                "log",
                {
                    "time": format_ts(int(record.created * 1000)),
                    "level": record.levelname,
                    "logger": record.name,
                    "message": record.getMessage()[:MAX_LOG_MESSAGE],
                },
            )
        except Exception:  # a record that cannot be formatted is not shown
            return
        self._hub.offer_threadsafe(frame)


class LiveHub:
    """The open ``/admin/live`` connections of one app, and what they dropped."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[bytes]] = set()
        self._handler = _Handler(self)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        #: Frames dropped because a connection's queue was full, since start.
        self.dropped = 0
        self.sockets: set[web.WebSocketResponse] = set()

    def join(self) -> asyncio.Queue[bytes]:
        queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_FRAMES)
        if not self._queues:
            self._loop = asyncio.get_running_loop()
            self._loop_thread = threading.get_ident()
            logging.getLogger().addHandler(self._handler)
        self._queues.add(queue)
        return queue

    def leave(self, queue: asyncio.Queue[bytes]) -> None:
        self._queues.discard(queue)
        if not self._queues:
            logging.getLogger().removeHandler(self._handler)

    def offer(self, frame: bytes, queues: Any = None) -> None:
        for queue in list(queues or self._queues):
            try:
                queue.put_nowait(frame)
            except asyncio.QueueFull:
                self.dropped += 1

    def offer_threadsafe(self, frame: bytes) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if threading.get_ident() == self._loop_thread:
            self.offer(frame)
        else:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self.offer, frame)

    def close(self) -> None:
        logging.getLogger().removeHandler(self._handler)
        self._queues.clear()


LIVE_HUB = web.AppKey("admin_live", LiveHub)


def _frame(type_: str, data: dict[str, Any]) -> bytes:
    return orjson.dumps({"type": type_, "data": data})


async def live(request: web.Request) -> web.StreamResponse:
    """The admin is checked by ``admin_only`` before the upgrade."""
    svc = services(request)
    hub = request.app[LIVE_HUB]
    ws = web.WebSocketResponse(heartbeat=30.0, compress=False, timeout=2.0, max_msg_size=4096)
    await ws.prepare(request)
    queue = hub.join()
    hub.sockets.add(ws)
    tasks = [
        asyncio.create_task(_write(ws, queue), name="admin-live-writer"),
        asyncio.create_task(_tick(svc, hub, queue), name="admin-live-stats"),
    ]
    try:
        async for message in ws:  # nothing to read but the close
            if message.type in (WSMsgType.ERROR, WSMsgType.CLOSE):
                break
    finally:
        hub.leave(queue)
        hub.sockets.discard(ws)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await task
        await ws.close()
    return ws


async def _tick(svc: Any, hub: LiveHub, queue: asyncio.Queue[bytes]) -> None:
    while True:
        try:
            stats = await svc.stats.snapshot()
        except Exception as exc:  # storage down: the dashboard says so, the socket stays
            stats = {"error": str(exc)[:200]}
        hub.offer(_frame("stats", stats), [queue])
        await asyncio.sleep(STATS_INTERVAL_S)


async def _write(ws: web.WebSocketResponse, queue: asyncio.Queue[bytes]) -> None:
    while True:
        frame = await queue.get()
        await ws.send_str(frame.decode())


def install(app: web.Application) -> None:
    """Give ``app`` its hub; its admin sockets are closed when the server stops."""
    app[LIVE_HUB] = LiveHub()

    async def going_away(app: web.Application) -> None:
        hub = app[LIVE_HUB]
        for ws in list(hub.sockets):
            await ws.close(code=1001, message=b"server shutting down")
        hub.close()

    app.on_shutdown.append(going_away)
