"""The WebSocket endpoint: authenticate, hello, replay, then frames in and events out.

Frames are checked in arrival order; message commits then run side by side so
that a client with several messages in flight shares group commits instead of
waiting for one fsync per message. A commit or receipt in flight is a future
from its service, not a task; its one outcome is answered by ``_Answer``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any
from urllib.parse import urlsplit

import orjson
from aiohttp import WSMsgType, web

from chatd.core.errors import ChatdError, bad_request
from chatd.core.ids import format_ts, now_ms
from chatd.core.models import Appended
from chatd.core.views import ack_view
from chatd.gateway.context import Services, services
from chatd.gateway.errors import classify
from chatd.gateway.http import bearer_token
from chatd.gateway.rawsocket import as_transport, drop_http_parser
from chatd.gateway.sessions import Session, encode

log = logging.getLogger(__name__)
MAX_IN_FLIGHT = 256


async def websocket(request: web.Request) -> web.StreamResponse:
    svc = services(request)
    admission, address = svc.admission, svc.addresses.of(request)
    admission.check_failures(address)
    try:
        caller = await svc.accounts.authenticate(
            bearer_token(request) or request.query.get("token")
        )
    except ChatdError as exc:
        if exc.code == "unauthorized":
            admission.failed(address)
        raise
    _check_origin(request, svc.allowed_origins)
    if svc.sessions.closing:
        raise ChatdError("unavailable", "the server is shutting down; reconnect shortly")
    key = admission.admit(caller.user_id, address)
    connection: Connection | None = None
    try:
        # autoping off: pings are answered here, so they count as activity; no
        # per-message deflate: chat frames are small and CPU is the scarce resource.
        # The close handshake waits at most 2 s for the peer: a stuck client must not
        # hold its session (and its presence) for long.
        ws = web.WebSocketResponse(
            max_msg_size=svc.max_frame_bytes, autoping=False, compress=False, timeout=2.0
        )
        try:
            await ws.prepare(request)
        except ConnectionError:  # the client hung up during the handshake: nothing to do
            return ws
        transport = as_transport(request.transport)
        if transport is None:  # gone already, or a transport frames cannot be written to
            await ws.close()
            return ws
        drop_http_parser(request)
        session = Session(
            ws, caller, svc.socket_limits, svc.metrics, transport, svc.sessions.outbox
        )
        connection = Connection(svc, session)
        await connection.run()
        return ws
    finally:
        counted = connection is not None and connection.counted
        admission.release(caller.user_id, key, upgraded=counted)


def _check_origin(request: web.Request, allowed: list[str]) -> None:
    """Browsers send Origin; only listed origins (or the server's own) may connect."""
    origin = request.headers.get("Origin")
    if origin is None or "*" in allowed or origin in allowed:
        return
    if urlsplit(origin).netloc == request.host:
        return
    raise ChatdError("forbidden", "this Origin may not open a WebSocket here")


class Connection:
    __slots__ = (
        "_drained",
        "_in_flight",
        "_messages_in",
        "_replay_task",
        "caller",
        "counted",
        "session",
        "svc",
    )

    def __init__(self, svc: Services, session: Session) -> None:
        self.svc = svc
        self.session = session
        self.caller = session.caller
        #: Commits and receipts submitted and not yet answered.
        self._in_flight = 0
        #: Resolved when ``_in_flight`` drops below the limit (the reader waits on
        #: it at the limit, the clean-up until nothing is in flight).
        self._drained: asyncio.Future[None] | None = None
        self._messages_in: Any = None  # the "ws" child of the counter, looked up once
        self._replay_task: asyncio.Task[None] | None = None
        #: True once presence counts this socket (admission stops counting it).
        self.counted = False

    async def run(self) -> None:
        svc, session = self.svc, self.session
        svc.sessions.add(session)
        svc.metrics.connections.inc()
        session.offer(
            encode(
                "hello",
                {
                    "user_id": self.caller.user_id,
                    "device_id": self.caller.device_id,
                    "node_id": svc.node_id,
                    "server_time": format_ts(now_ms()),
                    "heartbeat_s": svc.heartbeat_s,
                },
            )
        )
        # Held in a slot only while it runs: a finished task is dead weight on
        # every idle socket.
        self._replay_task = replay = asyncio.create_task(self._replay())
        replay.add_done_callback(self._replayed)
        del replay
        try:
            # Admission stops counting the socket as presence starts to: the
            # coroutine counts it before its first suspension, so no other
            # handshake sees it counted twice or not at all.
            self.counted = True
            svc.admission.upgraded(self.caller.user_id)
            await svc.presence.connected(self.caller)
            svc.notify.device_connected(self.caller.user_id, self.caller.device_id)
            await self._receive_loop(session)
        finally:
            # The handler may be cancelled when the peer vanishes; the clean-up
            # (publishing stored messages, presence) must run to its end anyway.
            cleanup = asyncio.ensure_future(self._clean_up())
            svc.sessions.cleanups.add(cleanup)
            cleanup.add_done_callback(svc.sessions.cleanups.discard)
            await asyncio.shield(cleanup)

    def _replayed(self, task: asyncio.Task[None]) -> None:
        self._replay_task = None

    async def _clean_up(self) -> None:
        svc, session = self.svc, self.session
        replay = self._replay_task
        if replay is not None:
            replay.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await replay
        while self._in_flight:  # stored messages still get published
            await self._wait_drained()
        svc.sessions.remove(session)
        svc.metrics.connections.dec()
        await session.stop()
        await svc.presence.disconnected(self.caller)

    async def _replay(self) -> None:
        replayed: dict[str, int] = {}
        try:
            async for chat_id, seq, view in self.svc.sync.backlog(self.caller):
                await self.session.put(encode("new_message", view))
                replayed[chat_id] = seq
        except ChatdError as exc:
            log.warning("replay for device %s failed: %s", self.caller.device_id, exc)
            self.session.close(1011, "could not load history; reconnect")
        finally:
            self.session.end_sync(replayed)

    async def _receive_loop(self, session: Session) -> None:
        ws = session.ws
        clock = asyncio.get_running_loop().time
        while True:
            msg = await ws.receive()
            session.last_active = clock()
            if msg.type is WSMsgType.TEXT:
                await self._on_text(msg.data)
                if self._in_flight >= MAX_IN_FLIGHT:  # back-pressure: stop reading a while
                    await self._wait_drained()
            elif msg.type is WSMsgType.PING:
                await ws.pong(msg.data)
            elif msg.type is WSMsgType.PONG:
                pass
            elif msg.type is WSMsgType.BINARY:
                self._error(None, bad_request("binary frames are not supported; send JSON text"))
            else:
                return

    async def _on_text(self, text: str) -> None:
        try:
            frame = orjson.loads(text)
        except orjson.JSONDecodeError:
            self._error(None, bad_request("the frame is not valid JSON"))
            return
        if not isinstance(frame, dict):
            self._error(None, bad_request("a frame must be a JSON object"))
            return
        frame_id = frame.get("id")
        kind = frame.get("type")
        data = frame.get("data")
        data = {} if data is None else data
        try:
            if not isinstance(data, dict):
                raise bad_request("data must be a JSON object")
            if kind == "send_message":
                outgoing = await self.svc.messages.prepare(self.caller, data)
                self._track(self.svc.messages.submit(self.caller, outgoing), frame_id, True)
            elif kind == "delivery_receipt" or kind == "read_receipt":
                which = "delivered" if kind == "delivery_receipt" else "read"
                self._track(self.svc.receipts.submit(self.caller, data, which), frame_id, False)
            elif kind == "typing_indicator":
                await self.svc.presence.typing(self.caller, data)
                self._ack(frame_id, {})
            elif kind == "ping":
                self._ack(frame_id, {"server_time": format_ts(now_ms())})
            else:
                raise bad_request(f"unknown frame type: {str(kind)[:40]}")
        except Exception as exc:
            self._error(frame_id, exc)

    def _track(self, future: asyncio.Future[Any], frame_id: Any, is_send: bool) -> None:
        """Answer ``future``'s one outcome to the client; count it in flight until then."""
        self._in_flight += 1
        future.add_done_callback(_Answer(self, frame_id, is_send))

    def _answered(self) -> None:
        """One submitted commit or receipt was answered; wake a reader or clean-up waiting."""
        self._in_flight -= 1
        drained = self._drained
        if drained is not None and self._in_flight < MAX_IN_FLIGHT:
            self._drained = None
            if not drained.done():
                drained.set_result(None)

    async def _wait_drained(self) -> None:
        # A waiter cancelled with the handler is done: the clean-up needs a new one.
        if self._drained is None or self._drained.done():
            self._drained = asyncio.get_running_loop().create_future()
        await self._drained

    def _ack(self, frame_id: Any, data: dict[str, Any]) -> None:
        if frame_id is not None:
            self.session.offer(encode("ack", data, frame_id, with_id=True))

    def _error(self, frame_id: Any, exc: BaseException) -> None:
        error = classify(exc, "websocket frame")
        self.svc.metrics.errors.labels(error.code).inc()
        data: dict[str, Any] = {"code": error.code, "message": error.message}
        if error.retry_after:
            data["retry_after_ms"] = int(error.retry_after * 1000) + 1
        self.session.offer(encode("error", data, frame_id, with_id=True))


class _Answer:
    """The reply to one ``send_message`` or receipt frame: a done-callback of its future.

    A future has exactly one outcome and calls its callbacks once, so every
    submitted frame is answered exactly once, by construction.
    """

    __slots__ = ("conn", "frame_id", "is_send")

    def __init__(self, conn: Connection, frame_id: Any, is_send: bool) -> None:
        self.conn = conn
        self.frame_id = frame_id
        self.is_send = is_send

    def __call__(self, future: asyncio.Future[Any]) -> None:
        conn = self.conn
        try:
            if future.cancelled():
                conn._error(self.frame_id, ChatdError("unavailable", "storage is closed"))
            elif (exc := future.exception()) is not None:
                conn._error(self.frame_id, exc)
            elif self.is_send:
                appended: Appended = future.result()
                if appended.created:
                    if conn._messages_in is None:
                        conn._messages_in = conn.svc.metrics.messages_in.labels("ws")
                    conn._messages_in.inc()
                conn._ack(self.frame_id, ack_view(appended.message))
            else:
                conn._ack(self.frame_id, {})
        finally:
            conn._answered()
