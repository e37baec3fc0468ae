"""Open WebSocket sessions of this node, and delivery of events to them.

Each session has a bounded send queue drained by one writer task. Publishing
never waits: a session whose queue is full is closed (the client reconnects and
resyncs from its watermarks), so one stuck client cannot slow the others or grow
the server's memory. An event is encoded once, however many sockets it goes to.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from chatd.core.auth import Caller
from chatd.core.events import Event
from chatd.core.ids import now_ms
from chatd.metrics import Metrics

log = logging.getLogger(__name__)

CLOSE_POLICY = 1008  # token revoked or account banned: do not reconnect with it
CLOSE_TRY_AGAIN = 1013  # too slow to keep up: reconnect and resync
CLOSE_RESTART = 1012  # server restarting
CLOSE_GOING_AWAY = 1001  # silent for three heartbeat intervals
CLOSE_WITHIN_S = 2.0  # a close handshake that takes longer is cut short
MAX_COALESCED = 256  # frames written in one system call at most
WRITE_BUFFER_HIGH = 256 * 1024  # bytes waiting in the kernel-side buffer before we pause


def text_frame(payload: bytes) -> bytes:
    """A complete server-to-client WebSocket text frame around ``payload``."""
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 65536:
        return bytes((0x81, 126)) + size.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + size.to_bytes(8, "big") + payload


class Session:
    """One socket of one device."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        caller: Caller,
        max_frames: int,
        metrics: Metrics,
        transport: asyncio.Transport | None = None,
    ) -> None:
        self.ws = ws
        self._transport = transport
        self.caller = caller
        self._metrics = metrics
        self._queue: asyncio.Queue[tuple[bytes, int]] = asyncio.Queue(max_frames)
        self._max_frames = max_frames
        #: While history is replayed, live new_message events wait here, so the
        #: device sees each chat's messages in seq order.
        self.syncing = True
        self._held: list[tuple[Event, bytes]] = []
        self._writer: asyncio.Task[None] | None = None
        self.closing = False
        #: Loop time of the last frame received; the registry's sweep closes
        #: sessions silent for too long (one timer for all, not one a frame).
        self.last_active = asyncio.get_running_loop().time()

    def start(self) -> None:
        self._writer = asyncio.create_task(self._write_loop())

    def offer(self, frame: bytes, event: Event | None = None) -> None:
        """Queue a frame without waiting; a full queue closes the session."""
        if self.closing:
            return
        if self.syncing and event is not None and event.chat_id is not None:
            if len(self._held) >= self._max_frames:
                self._overflow()
            else:
                self._held.append((event, frame))
            return
        try:
            self._queue.put_nowait((frame, event.created_at if event and event.chat_id else 0))
        except asyncio.QueueFull:
            self._overflow()

    async def put(self, frame: bytes, created_at: int = 0) -> None:
        """Queue a frame, waiting for room (history replay paces itself this way)."""
        if not self.closing:
            await self._queue.put((frame, created_at))

    def end_sync(self, replayed: dict[str, int]) -> None:
        """Replay is done: release held live events it did not already cover."""
        self.syncing = False
        held, self._held = self._held, []
        for event, frame in held:
            if event.seq > replayed.get(event.chat_id or "", 0):
                self.offer(frame, event)

    def close(self, code: int, reason: str) -> None:
        if self.closing:
            return
        self.closing = True
        asyncio.get_running_loop().create_task(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        """Close politely, but never wait on a peer that stopped reading for long.

        aiohttp's close waits for room in a full send buffer before it sends
        the close frame; a stuck client never makes room, so after a bound the
        connection is aborted, which ends the handler and its clean-up.
        """
        try:
            async with asyncio.timeout(CLOSE_WITHIN_S):
                await self.ws.close(code=code, message=reason.encode()[:120])
        except Exception:  # timed out, or the transport broke meanwhile
            if self._transport is not None:
                self._transport.abort()

    def _overflow(self) -> None:
        self._metrics.frames_dropped.inc()
        log.info("closing slow connection of device %s", self.caller.device_id)
        self.close(CLOSE_TRY_AGAIN, "send queue full; reconnect to resync")

    async def _write_loop(self) -> None:
        """Drain the queue, writing every frame that is ready in one system call.

        Frames are framed here (text, final, unmasked, uncompressed: RFC 6455
        5.2) when the socket's transport is at hand, so a burst of N events
        costs one ``writev`` instead of N writes; otherwise aiohttp frames them.
        """
        ws, queue, transport = self.ws, self._queue, self._transport
        latency, out = self._metrics.delivery_latency, self._metrics.messages_out
        try:
            while True:
                frame, created_at = await queue.get()
                if self.closing or ws.closed:
                    return
                if transport is None:
                    await ws.send_frame(frame, WSMsgType.TEXT)
                    stamps = [created_at]
                else:
                    chunks, stamps = [text_frame(frame)], [created_at]
                    while len(chunks) < MAX_COALESCED and not queue.empty():
                        frame, created_at = queue.get_nowait()
                        chunks.append(text_frame(frame))
                        stamps.append(created_at)
                    if transport.is_closing():
                        return
                    transport.writelines(chunks)
                    while transport.get_write_buffer_size() > WRITE_BUFFER_HIGH:
                        if transport.is_closing():  # the client reads slowly: wait for it
                            return
                        await asyncio.sleep(0.005)
                now = now_ms()
                for stamp in stamps:
                    if stamp:
                        out.inc()
                        latency.observe(max(0, now - stamp) / 1000)
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            pass

    async def flush(self, within: float) -> None:
        """Wait (bounded) until the queue is written, e.g. a final ``reconnect`` frame."""
        with contextlib.suppress(asyncio.TimeoutError):
            async with asyncio.timeout(within):
                while not self._queue.empty() and not self.ws.closed:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer


class SessionRegistry:
    """This node's sessions by user and device; the local ``EventSink``."""

    def __init__(self) -> None:
        self._by_user: dict[str, dict[str, set[Session]]] = {}
        #: Clean-ups of closed connections still running; shutdown waits for them
        #: so they finish before the storage closes.
        self.cleanups: set[asyncio.Future[None]] = set()
        #: Set when shutdown starts: a socket that arrives later is sent away at once.
        self.closing = False

    def add(self, session: Session) -> None:
        devices = self._by_user.setdefault(session.caller.user_id, {})
        devices.setdefault(session.caller.device_id, set()).add(session)
        if self.closing:  # it upgraded while shutdown began: send it away too
            session.offer(_goodbye())
            session.close(CLOSE_RESTART, "server restarting")

    def remove(self, session: Session) -> None:
        devices = self._by_user.get(session.caller.user_id)
        if not devices:
            return
        sessions = devices.get(session.caller.device_id)
        if sessions is not None:
            sessions.discard(session)
            if not sessions:
                del devices[session.caller.device_id]
        if not devices:
            del self._by_user[session.caller.user_id]

    def __len__(self) -> int:
        return sum(len(s) for d in self._by_user.values() for s in d.values())

    def publish(
        self, user_ids: Iterable[str], event: Event, *, skip_device: str | None = None
    ) -> None:
        frame: bytes | None = None
        for user_id in user_ids:
            devices = self._by_user.get(user_id)
            if not devices:
                continue
            if frame is None:
                frame = encode(event.type, event.data)
            for device_id, sessions in devices.items():
                if device_id == skip_device:
                    continue
                for session in sessions:
                    session.offer(frame, event)

    def disconnect_devices(self, device_ids: Iterable[str], reason: str) -> None:
        wanted = set(device_ids)
        for devices in self._by_user.values():
            for device_id in wanted & devices.keys():
                for session in devices[device_id]:
                    session.close(CLOSE_POLICY, reason)

    async def sweep_silent(self, heartbeat_s: float) -> None:
        """Close every session that sent nothing for three heartbeat intervals."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(heartbeat_s / 2)
            deadline = loop.time() - 3 * heartbeat_s
            for session in self.all():
                if session.last_active < deadline:
                    session.close(CLOSE_GOING_AWAY, "no heartbeat")

    def online_users(self, user_ids: Iterable[str]) -> list[str]:
        return [u for u in user_ids if u in self._by_user]

    def all(self) -> list[Session]:
        return [s for d in self._by_user.values() for ss in d.values() for s in ss]

    async def shutdown(self, retry_after_ms: int = 1000) -> None:
        """Tell every client to come back later, then close with 1012."""
        self.closing = True
        frame = _goodbye(retry_after_ms)
        sessions = self.all()
        for session in sessions:
            session.offer(frame)
        await asyncio.gather(*(s.flush(1.0) for s in sessions))
        for session in sessions:
            session.close(CLOSE_RESTART, "server restarting")

    async def wait_for_cleanups(self, within: float) -> None:
        if self.cleanups:
            await asyncio.wait(self.cleanups, timeout=within)


def _goodbye(retry_after_ms: int = 1000) -> bytes:
    return encode("reconnect", {"reason": "server shutting down", "retry_after_ms": retry_after_ms})


def encode(type_: str, data: Any, id_: Any = None, *, with_id: bool = False) -> bytes:
    if with_id:
        return orjson.dumps({"type": type_, "id": id_, "data": data})
    return orjson.dumps({"type": type_, "data": data})
