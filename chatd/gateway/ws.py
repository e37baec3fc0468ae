"""The WebSocket endpoint: authenticate, hello, replay, then frames in and events out.

Frames are checked in arrival order; message commits then run side by side so
that a client with several messages in flight shares group commits instead of
waiting for one fsync per message.
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
from chatd.core.models import MessageDraft
from chatd.core.views import ack_view
from chatd.gateway.context import Services, services
from chatd.gateway.errors import classify
from chatd.gateway.http import bearer_token
from chatd.gateway.sessions import Session, encode

log = logging.getLogger(__name__)
MAX_IN_FLIGHT = 256


async def websocket(request: web.Request) -> web.StreamResponse:
    svc = services(request)
    caller = await svc.accounts.authenticate(bearer_token(request) or request.query.get("token"))
    _check_origin(request, svc.allowed_origins)
    if svc.sessions.closing:
        raise ChatdError("unavailable", "the server is shutting down; reconnect shortly")
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
    transport = request.transport
    session = Session(
        ws,
        caller,
        svc.sessions_queue_frames,
        svc.metrics,
        transport if isinstance(transport, asyncio.Transport) else None,
    )
    await Connection(svc, session).run()
    return ws


def _check_origin(request: web.Request, allowed: list[str]) -> None:
    """Browsers send Origin; only listed origins (or the server's own) may connect."""
    origin = request.headers.get("Origin")
    if origin is None or "*" in allowed or origin in allowed:
        return
    if urlsplit(origin).netloc == request.host:
        return
    raise ChatdError("forbidden", "this Origin may not open a WebSocket here")


class Connection:
    def __init__(self, svc: Services, session: Session) -> None:
        self.svc = svc
        self.session = session
        self.caller = session.caller
        self._in_flight: set[asyncio.Task[None]] = set()

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
        session.start()
        replay = asyncio.create_task(self._replay())
        try:
            await svc.presence.connected(self.caller.user_id)
            await self._receive_loop()
        finally:
            # The handler may be cancelled when the peer vanishes; the clean-up
            # (publishing stored messages, presence) must run to its end anyway.
            cleanup = asyncio.ensure_future(self._clean_up(replay))
            svc.sessions.cleanups.add(cleanup)
            cleanup.add_done_callback(svc.sessions.cleanups.discard)
            await asyncio.shield(cleanup)

    async def _clean_up(self, replay: asyncio.Task[None]) -> None:
        svc, session = self.svc, self.session
        replay.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await replay
        if self._in_flight:  # stored messages still get published
            await asyncio.wait(self._in_flight)
        svc.sessions.remove(session)
        svc.metrics.connections.dec()
        await session.stop()
        await svc.presence.disconnected(self.caller.user_id)
        if not svc.presence.is_online(self.caller.user_id):
            svc.presence.stop_typing_everywhere(self.caller.user_id)

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

    async def _receive_loop(self) -> None:
        session = self.session
        ws = session.ws
        clock = asyncio.get_running_loop().time
        while True:
            msg = await ws.receive()
            session.last_active = clock()
            if msg.type is WSMsgType.TEXT:
                await self._on_text(msg.data)
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
                draft = await self.svc.messages.prepare(self.caller, data)
                self._spawn(self._commit(frame_id, draft))
            elif kind in ("delivery_receipt", "read_receipt"):
                self._spawn(self._receipt(frame_id, data, kind))
            elif kind == "typing_indicator":
                await self.svc.presence.typing(self.caller, data)
                self._ack(frame_id, {})
            elif kind == "ping":
                self._ack(frame_id, {"server_time": format_ts(now_ms())})
            else:
                raise bad_request(f"unknown frame type: {str(kind)[:40]}")
        except Exception as exc:
            self._error(frame_id, exc)
        if len(self._in_flight) >= MAX_IN_FLIGHT:  # back-pressure: stop reading for a while
            await asyncio.wait(self._in_flight, return_when=asyncio.FIRST_COMPLETED)

    async def _commit(self, frame_id: Any, draft: MessageDraft) -> None:
        try:
            appended = await self.svc.messages.commit(self.caller, draft)
        except Exception as exc:
            self._error(frame_id, exc)
            return
        if appended.created:
            self.svc.metrics.messages_in.labels("ws").inc()
        self._ack(frame_id, ack_view(appended.message))

    async def _receipt(self, frame_id: Any, data: dict[str, Any], kind: str) -> None:
        try:
            which = "delivered" if kind == "delivery_receipt" else "read"
            await self.svc.receipts.receipt(self.caller, data, which)
        except Exception as exc:
            self._error(frame_id, exc)
            return
        self._ack(frame_id, {})

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

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
