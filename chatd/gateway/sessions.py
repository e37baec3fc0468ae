"""Open WebSocket sessions of this node, and delivery of events to them.

Each session has a bounded list of frames waiting to be written. Publishing
never waits: it appends to that list, and one callback per event-loop turn (the
``Outbox``) writes every session that has something waiting, each in one
``writelines`` call, so a burst of events costs one system call per socket and
no task per socket or per frame. A session whose list is full (a client that
stopped reading) is closed: the client reconnects and resyncs from its
watermarks, so one stuck client cannot slow the others or grow the server's
memory. An event is encoded and framed once, however many sockets it goes to, except
for the devices it carries fields of their own for (``Event.per_device``: an
end-to-end encrypted message's ciphertext), which get a copy each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

import orjson
from aiohttp import web

from chatd.core.auth import Caller
from chatd.core.events import Event
from chatd.core.ids import now_ms
from chatd.gateway.rawsocket import Transport, text_frame
from chatd.metrics import Metrics

log = logging.getLogger(__name__)

CLOSE_POLICY = 1008  # token revoked or account banned: do not reconnect with it
CLOSE_TRY_AGAIN = 1013  # too slow to keep up: reconnect and resync
CLOSE_RESTART = 1012  # server restarting
CLOSE_GOING_AWAY = 1001  # silent for three heartbeat intervals
CLOSE_WITHIN_S = 2.0  # a close handshake that takes longer is cut short
WRITE_BUFFER_HIGH = 256 * 1024  # bytes waiting in the transport before we hold frames back
PAUSED_RETRY_S = 0.005  # how soon a session held back by a full buffer is tried again


class Outbox:
    """Writes every session with frames waiting once per event-loop turn.

    Frames queued while callbacks of one turn run (the results of one group
    commit, the acks of one burst) go out together, one ``writelines`` per
    socket. A socket whose transport holds more than ``WRITE_BUFFER_HIGH``
    bytes (the client reads slowly) keeps its frames and is retried shortly;
    its list is bounded, so a client that stops reading is cut off.
    """

    __slots__ = ("_dirty", "_handle", "_paused", "_retry")

    def __init__(self) -> None:
        self._dirty: list[Session] = []
        self._paused: list[Session] = []
        self._handle: asyncio.Handle | None = None
        self._retry: asyncio.TimerHandle | None = None

    def schedule(self, session: Session) -> None:
        self._dirty.append(session)
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_soon(self._run)

    def _run(self) -> None:
        self._handle = None
        dirty, self._dirty = self._dirty, []
        now = now_ms()
        tally: dict[tuple[Metrics, int], int] = {}
        for session in dirty:
            try:
                if session._write(now, tally):
                    self._paused.append(session)
            except Exception:  # never leave the others unwritten
                log.exception("writing to device %s failed", session.caller.device_id)
                session._drop()
        for (metrics, stamp), count in tally.items():
            metrics.messages_out.inc(count)
            metrics.observe_delivery(max(0, now - stamp) / 1000, count)
        if self._paused and self._retry is None:
            self._retry = asyncio.get_running_loop().call_later(PAUSED_RETRY_S, self._resume)

    def _resume(self) -> None:
        self._retry = None
        paused, self._paused = self._paused, []
        for session in paused:
            self.schedule(session)


class SocketLimits:
    """What one socket may hold before it is cut off; shared by every session.

    ``frames`` and ``bytes`` bound the frames waiting for the transport (live
    frames past either close the socket with 1013; the replay waits below half
    of each instead); ``stall_s`` is how long a replay may wait for a client
    that does not read before the socket is closed the same way.
    """

    __slots__ = ("bytes", "frames", "stall_s")

    def __init__(self, frames: int = 4096, bytes: int = 8 << 20, stall_s: float = 30.0) -> None:
        self.frames = frames
        self.bytes = bytes
        self.stall_s = stall_s


class Session:
    """One socket of one device.

    Slots and lazily created lists keep an idle session small: it holds no
    task and no queue, only a few references, until something is sent.
    """

    __slots__ = (
        "_held",
        "_held_bytes",
        "_limits",
        "_metrics",
        "_out",
        "_out_bytes",
        "_outbox",
        "_replayed",
        "_room",
        "_stamps",
        "_transport",
        "caller",
        "closing",
        "draining",
        "last_active",
        "syncing",
        "ws",
    )

    def __init__(
        self,
        ws: web.WebSocketResponse,
        caller: Caller,
        limits: SocketLimits,
        metrics: Metrics,
        transport: Transport | None,
        outbox: Outbox,
    ) -> None:
        self.ws = ws
        self._transport = transport
        self.caller = caller
        self._metrics = metrics
        self._outbox = outbox
        self._limits = limits
        #: Framed bytes waiting for the outbox; None when nothing waits. Not None
        #: exactly while the session is scheduled with the outbox.
        self._out: list[bytes] | None = None
        self._out_bytes = 0
        #: Accept times (ms) of the new_message frames in ``_out``, for metrics.
        self._stamps: list[int] | None = None
        #: While history is replayed, live new_message events wait here, so the
        #: device sees each chat's messages in seq order.
        self.syncing = True
        self._held: list[tuple[Event, bytes]] | None = None
        self._held_bytes = 0
        #: After the replay: per chat, the last seq it sent, until a later live one
        #: comes (a message stored before the replay read it may be released to
        #: the sockets after: the replay's copy is the one kept).
        self._replayed: dict[str, int] | None = None
        #: Resolved when queued frames were written (the replay waits on it).
        self._room: asyncio.Future[None] | None = None
        self.closing = False
        #: Closing, but what was queued before still goes out (a goodbye frame).
        self.draining = False
        #: Loop time of the last frame received; the registry's sweep closes
        #: sessions silent for too long (one timer for all, not one a frame).
        self.last_active = asyncio.get_running_loop().time()

    def offer(self, payload: bytes) -> None:
        """Queue a frame for this socket alone (ack, error, hello) without waiting."""
        if not self.closing:
            self._push(text_frame(payload), 0)

    def deliver(self, framed: bytes, event: Event) -> None:
        """Queue an already framed event; held back while the replay runs."""
        if self.closing:
            return
        if self.syncing and event.chat_id is not None:
            held = self._held
            if held is None:
                held = self._held = []
            self._held_bytes += len(framed)
            if len(held) >= self._limits.frames or self._held_bytes > self._limits.bytes:
                self._overflow()
            else:
                held.append((event, framed))
            return
        if event.chat_id is None:
            self._push(framed, 0)
            return
        replayed = self._replayed
        if replayed is not None and event.chat_id in replayed:
            if event.seq <= replayed[event.chat_id]:
                return  # the replay sent it already
            del replayed[event.chat_id]  # later ones are all new
            if not replayed:
                self._replayed = None
        self._push(framed, event.created_at)

    def _push(self, framed: bytes, stamp: int) -> None:
        out = self._out
        size = len(framed)
        if out is None:
            out = self._out = []
            self._out_bytes = 0
            self._outbox.schedule(self)
        elif len(out) >= self._limits.frames or self._out_bytes + size > self._limits.bytes:
            self._overflow()
            return
        out.append(framed)
        self._out_bytes += size
        if stamp:
            stamps = self._stamps
            if stamps is None:
                self._stamps = [stamp]
            else:
                stamps.append(stamp)

    async def put(self, payload: bytes, created_at: int = 0) -> None:
        """Queue a frame, waiting for room first (history replay paces itself this way).

        It waits while half of either bound is taken, leaving the rest to live
        frames (acks, receipts), so a long replay to a slow reader neither
        crowds them out nor grows memory: the next page of history is read only
        as the socket drains. A client that reads nothing for ``stall_s`` is
        closed (1013) and resyncs when it reconnects.
        """
        limits = self._limits
        frames, size = limits.frames // 2, limits.bytes // 2
        try:
            async with asyncio.timeout(limits.stall_s):
                while (
                    not self.closing
                    and self._out is not None
                    and (len(self._out) >= frames or self._out_bytes >= size)
                ):
                    if self._room is None:
                        self._room = asyncio.get_running_loop().create_future()
                    await self._room
        except TimeoutError:
            self._overflow()
            return
        if not self.closing:
            self._push(text_frame(payload), created_at)

    def _write(self, now: int, tally: dict[tuple[Metrics, int], int]) -> bool:
        """Write what waits; True if the transport is too full and it must wait."""
        out, transport = self._out, self._transport
        if out is None:
            return False
        if (self.closing and not self.draining) or transport is None or transport.is_closing():
            self._drop()
            return False
        if transport.get_write_buffer_size() > WRITE_BUFFER_HIGH:
            return True  # the client reads slowly: keep the frames, try again shortly
        stamps = self._stamps
        self._out = self._stamps = None
        self._out_bytes = 0
        try:
            transport.writelines(out)
        except (ConnectionError, RuntimeError):
            self._drop()
            return False
        if stamps:
            metrics = self._metrics
            for stamp in stamps:
                key = (metrics, stamp)
                tally[key] = tally.get(key, 0) + 1
        self._wake()
        return False

    def _drop(self) -> None:
        self._out = self._stamps = None
        self._out_bytes = 0
        self._wake()

    def _wake(self) -> None:
        room = self._room
        if room is not None:
            self._room = None
            if not room.done():
                room.set_result(None)

    def end_sync(self, replayed: dict[str, int]) -> None:
        """Replay is done: release held live events it did not already cover."""
        self.syncing = False
        held, self._held = self._held, None
        self._held_bytes = 0
        self._replayed = dict(replayed) or None
        for event, framed in held or ():
            self.deliver(framed, event)

    def close(self, code: int, reason: str, *, drain: bool = False) -> None:
        """Close the socket; with ``drain``, frames already queued are written first."""
        if self.closing:
            return
        self.closing = True
        self.draining = drain
        self._held = None
        self._held_bytes = 0
        self._wake()
        asyncio.get_running_loop().create_task(self._close(code, reason))

    async def _close(self, code: int, reason: str) -> None:
        """Close politely, but never wait on a peer that stopped reading for long.

        aiohttp's close waits for room in a full send buffer before it sends
        the close frame; a stuck client never makes room, so after a bound the
        connection is aborted, which ends the handler and its clean-up.
        """
        try:
            async with asyncio.timeout(CLOSE_WITHIN_S):
                while self.draining and self._out is not None:  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
                await self.ws.close(code=code, message=reason.encode()[:120])
        except Exception:  # timed out, or the transport broke meanwhile
            if self._transport is not None:
                self._transport.abort()

    def _overflow(self) -> None:
        self._metrics.frames_dropped.inc()
        log.info("closing slow connection of device %s", self.caller.device_id)
        self.close(CLOSE_TRY_AGAIN, "send queue full; reconnect to resync")

    async def flush(self, within: float) -> None:
        """Wait (bounded) until the queue is written, e.g. a final ``reconnect`` frame."""
        with contextlib.suppress(asyncio.TimeoutError):
            async with asyncio.timeout(within):
                while self._out is not None and not self.ws.closed:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """The socket is done: drop whatever still waits and wake a waiting replay."""
        self.closing = True
        self._held = None
        self._drop()


class SessionRegistry:
    """This node's sessions by user and device: the router's ``LocalDelivery`` here."""

    def __init__(self) -> None:
        #: user -> device -> its sessions (a tuple: almost always one, and a
        #: 1-tuple is a fifth of an empty set, per idle socket).
        self._by_user: dict[str, dict[str, tuple[Session, ...]]] = {}
        self._count = 0
        #: Writes every session's waiting frames once per loop turn.
        self.outbox = Outbox()
        #: Clean-ups of closed connections still running; shutdown waits for them
        #: so they finish before the storage closes.
        self.cleanups: set[asyncio.Future[None]] = set()
        #: Set when shutdown starts: a socket that arrives later is sent away at once.
        self.closing = False

    def add(self, session: Session) -> None:
        devices = self._by_user.setdefault(session.caller.user_id, {})
        device_id = session.caller.device_id
        devices[device_id] = (*devices.get(device_id, ()), session)
        self._count += 1
        if self.closing:  # it upgraded while shutdown began: send it away too
            session.offer(_goodbye())
            session.close(CLOSE_RESTART, "server restarting", drain=True)

    def remove(self, session: Session) -> None:
        devices = self._by_user.get(session.caller.user_id)
        if not devices:
            return
        device_id = session.caller.device_id
        sessions = devices.get(device_id)
        if sessions is not None and session in sessions:
            self._count -= 1
            left = tuple(s for s in sessions if s is not session)
            if left:
                devices[device_id] = left
            else:
                del devices[device_id]
        if not devices:
            del self._by_user[session.caller.user_id]

    def __len__(self) -> int:
        return self._count

    def deliver(self, user_ids: Iterable[str], event: Event, skip_device: str | None) -> None:
        framed: bytes | None = None
        by_user = self._by_user
        for user_id in user_ids:
            devices = by_user.get(user_id)
            if not devices:
                continue
            for device_id, sessions in devices.items():
                if device_id == skip_device:
                    continue
                if event.per_device is not None and device_id in event.per_device:
                    data = event.data_for(device_id)
                    own = text_frame(encode(event.type, data))
                    for session in sessions:
                        session.deliver(own, event)
                    continue
                if event.only_listed:
                    continue
                if framed is None:
                    framed = text_frame(encode(event.type, event.data))
                for session in sessions:
                    session.deliver(framed, event)

    def disconnect_devices(self, device_ids: Iterable[str], reason: str) -> None:
        wanted = set(device_ids)
        for devices in self._by_user.values():
            for device_id in wanted & devices.keys():
                for session in devices[device_id]:
                    session.close(CLOSE_POLICY, reason)

    def disconnect_users(self, user_ids: Iterable[str], reason: str) -> None:
        """Close every socket of ``user_ids`` here (1013): they missed live events in
        the cluster and must resync; their clients reconnect and replay."""
        for user_id in user_ids:
            for sessions in list(self._by_user.get(user_id, {}).values()):
                for session in sessions:
                    session.close(CLOSE_TRY_AGAIN, reason)

    async def sweep_silent(self, heartbeat_s: float) -> None:
        """Close every session that sent nothing for three heartbeat intervals."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(heartbeat_s / 2)
            deadline = loop.time() - 3 * heartbeat_s
            for session in self.all():
                if session.last_active < deadline:
                    session.close(CLOSE_GOING_AWAY, "no heartbeat")

    def all(self) -> list[Session]:
        return [s for d in self._by_user.values() for ss in d.values() for s in ss]

    async def shutdown(self, retry_after_ms: int = 1000, url: str | None = None) -> None:
        """Tell every client to come back later (in a cluster: at ``url``, another
        node), then close with 1012."""
        self.closing = True
        frame = _goodbye(retry_after_ms, url)
        sessions = self.all()
        for session in sessions:
            session.offer(frame)
        await asyncio.gather(*(s.flush(1.0) for s in sessions))
        for session in sessions:
            session.close(CLOSE_RESTART, "server restarting")

    async def wait_for_cleanups(self, within: float) -> None:
        if self.cleanups:
            await asyncio.wait(self.cleanups, timeout=within)


def _goodbye(retry_after_ms: int = 1000, url: str | None = None) -> bytes:
    data: dict[str, Any] = {"reason": "server shutting down", "retry_after_ms": retry_after_ms}
    if url:
        data["url"] = url
    return encode("reconnect", data)


def encode(type_: str, data: Any, id_: Any = None, *, with_id: bool = False) -> bytes:
    if with_id:
        return orjson.dumps({"type": type_, "id": id_, "data": data})
    return orjson.dumps({"type": type_, "data": data})
