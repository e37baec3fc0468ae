"""The socket machinery behind WsSession: connect, read, reconnect, receipts, heartbeat.

A single reader task per session reads every frame, resolves pending requests by id,
queues everything else as an event, sends coalesced delivery receipts, and, when the
socket drops, reconnects and re-sends unacknowledged ``send_message`` frames (the
server's client_msg_id idempotency makes that safe). Nothing else runs per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable
from typing import Any, Protocol

import aiohttp
import orjson

from chatd.client.errors import ApiError, code_for_status, error_from_frame, parse_retry_after
from chatd.client.inbox import EventInbox

log = logging.getLogger("chatd.client")

#: Request ids this session generates start with "~"; an ack or error carrying such an
#: id that no request waits for (fire-and-forget receipts, timed-out requests) is dropped.
OWN_ID = "~"
_PING_FRAME = orjson.dumps({"type": "ping", "data": {}}).decode()
_POLICY_VIOLATION = 1008  # token revoked, user banned: never retried
_REFUSED_STATUSES = (401, 403)
_BACKOFF_START = 0.2
_BACKOFF_CAP = 5.0
_HELLO_TIMEOUT = 10.0
_WS_TIMEOUT = aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0)
SEND_ERRORS = (OSError, aiohttp.ClientError, RuntimeError)


class Owner(Protocol):
    """What a session needs of the client that made it (``ChatdClient``): the token
    and endpoint, its HTTP session, and the set of open sessions it closes on exit."""

    token: str | None
    _ws_sessions: set[Any]

    @property
    def ws_url(self) -> str: ...

    def _http(self) -> aiohttp.ClientSession: ...


class _Refused(ConnectionError):
    """The server will not take this session back (close 1008, HTTP 401/403)."""


class Pending:
    """A request waiting for its ack; ``resend`` is set for send_message frames."""

    __slots__ = ("fut", "gen", "resend")

    def __init__(self, fut: asyncio.Future[dict[str, Any]], resend: str | None, gen: int):
        self.fut = fut
        self.resend = resend
        self.gen = gen  # the connection generation it was last written to


def _has_buffered_frames(ws: aiohttp.ClientWebSocketResponse) -> bool:
    """Whether frames are already parsed and waiting (aiohttp internals, best effort).

    Lets receipts be coalesced over a burst; if the internals change this says
    False and receipts are simply sent per frame.
    """
    return bool(getattr(getattr(ws, "_reader", None), "_buffer", None))


class WsConnection(EventInbox):
    """State and socket handling of a session; WsSession adds the public calls.

    ``hello`` holds the latest hello data, ``close_code`` the last close code seen,
    ``closed`` turns True once the session is over for good, ``reconnects`` counts
    successful reconnections.
    """

    def __init__(
        self,
        client: Owner,
        *,
        auto_delivery_receipts: bool = True,
        reconnect: bool = True,
        dedupe: bool = False,
        origin: str | None = None,
        ping_interval: float | None = None,
        token_in_query: bool = False,
        on_event: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        super().__init__()
        self._client = client
        self._auto_receipts = auto_delivery_receipts
        self._reconnect = reconnect
        self._dedupe = dedupe
        self._origin = origin
        self._ping_interval = ping_interval
        self._token_in_query = token_in_query
        self._on_event = on_event
        self.hello: dict[str, Any] | None = None
        self.close_code: int | None = None
        self.closed = False
        self.reconnects = 0
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._task: asyncio.Task[None] | None = None
        self._up = asyncio.Event()  # set while a socket is open and past its hello
        self._closing = False
        self._gen = 0
        self._ids = itertools.count(1)
        self._pending: dict[str, Pending] = {}
        self._receipts: dict[str, tuple[int, str]] = {}  # chat_id -> (seq, message_id)
        self._seen: set[tuple[Any, Any]] = set()
        self._retry_hint: float | None = None
        self._hb_handle: asyncio.TimerHandle | None = None
        self._hb_task: asyncio.Task[None] | None = None

    @property
    def connected(self) -> bool:
        """True while a socket is open and its hello has been received."""
        return self._up.is_set()

    # -- connection ----------------------------------------------------------------

    async def _connect(self) -> aiohttp.ClientWebSocketResponse:
        """Open a socket and read up to its hello (earlier frames are dispatched)."""
        client = self._client
        headers: dict[str, str] = {}
        params: dict[str, str] | None = None
        if client.token:
            if self._token_in_query:
                params = {"token": client.token}
            else:
                headers["Authorization"] = f"Bearer {client.token}"
        try:
            ws = await client._http().ws_connect(
                client.ws_url,
                headers=headers,
                params=params,
                origin=self._origin,
                timeout=_WS_TIMEOUT,
            )
        except aiohttp.WSServerHandshakeError as exc:
            headers = exc.headers or {}
            raise ApiError(
                exc.status,
                code_for_status(exc.status),
                exc.message or "handshake refused",
                retry_after=parse_retry_after(headers.get("Retry-After")),
            ) from exc
        try:
            async with asyncio.timeout(_HELLO_TIMEOUT):
                while True:
                    msg = await ws.receive()
                    if msg.type is aiohttp.WSMsgType.TEXT:
                        if self._dispatch(msg.data) == "hello":
                            return ws
                    elif msg.type is not aiohttp.WSMsgType.BINARY:
                        self.close_code = ws.close_code
                        if ws.close_code == _POLICY_VIOLATION:
                            raise _Refused(f"chatd refused the session (close {ws.close_code})")
                        raise ConnectionError(f"socket closed before hello ({ws.close_code})")
        except BaseException:
            if not ws.closed:
                with contextlib.suppress(Exception):
                    await ws.close()
            raise

    async def _resume(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Adopt ``ws``: re-send every unanswered send_message, then accept requests."""
        self._ws = ws
        self._gen += 1
        gen = self._gen
        while todo := [p for p in self._pending.values() if p.resend and p.gen != gen]:
            for pending in todo:
                pending.gen = gen
                try:
                    await ws.send_str(pending.resend or "")
                except SEND_ERRORS:
                    break  # the reader sees the drop and reconnects again
        self._up.set()
        self._start_heartbeat()

    async def _run(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """The reader task: read until the socket ends, reconnect while allowed."""
        try:
            while True:
                await self._read(ws)
                self.close_code = ws.close_code
                retry = self._reconnect and not self._closing and ws.close_code != _POLICY_VIOLATION
                self._dropped(retry)
                if not ws.closed and not self._closing:  # else close() does the handshake
                    with contextlib.suppress(Exception):
                        await ws.close()
                if not retry:
                    return
                next_ws = await self._reconnect_loop()
                if next_ws is None:
                    return
                ws = next_ws
        except Exception:
            log.exception("chatd websocket reader failed")
        finally:
            self._finish()

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        text_type = aiohttp.WSMsgType.TEXT
        binary_type = aiohttp.WSMsgType.BINARY
        while True:
            msg = await ws.receive()
            if msg.type is text_type:
                self._dispatch(msg.data)
                if self._receipts and not _has_buffered_frames(ws):
                    await self._flush_receipts(ws)
            elif msg.type is not binary_type:
                return  # CLOSE, CLOSING, CLOSED or ERROR

    async def _reconnect_loop(self) -> aiohttp.ClientWebSocketResponse | None:
        """Back off (0.2 s or the server's hint, doubling to 5 s) until a socket is back."""
        delay = self._retry_hint if self._retry_hint is not None else _BACKOFF_START
        self._retry_hint = None
        while not self._closing:
            await asyncio.sleep(delay)
            delay = min(max(delay, _BACKOFF_START) * 2, _BACKOFF_CAP)
            try:
                ws = await self._connect()
            except ApiError as exc:
                if exc.status in _REFUSED_STATUSES:
                    log.info("chatd websocket reconnect refused: %s", exc)
                    return None
                continue
            except _Refused:
                return None
            except (OSError, aiohttp.ClientError, TimeoutError):
                continue
            await self._resume(ws)
            self.reconnects += 1
            return ws
        return None

    def _dropped(self, retry: bool) -> None:
        """The socket is gone: stop the heartbeat, fail requests that cannot survive."""
        self._up.clear()
        self._stop_heartbeat()
        self._receipts.clear()
        for rid, pending in list(self._pending.items()):
            if retry and pending.resend is not None:
                continue
            del self._pending[rid]
            if not pending.fut.done():
                pending.fut.set_exception(ConnectionError("chatd websocket closed"))

    def _finish(self) -> None:
        """Mark the session over for good; idempotent."""
        if self.closed:
            return
        self.closed = True
        self._closing = True
        self._up.clear()
        self._stop_heartbeat()
        for pending in self._pending.values():
            if not pending.fut.done():
                pending.fut.set_exception(ConnectionError("chatd websocket session is closed"))
        self._pending.clear()
        self._end_inbox()
        self._client._ws_sessions.discard(self)

    # -- frames --------------------------------------------------------------------

    def _dispatch(self, text: str) -> str | None:
        """Route one server frame; returns its type (None if unreadable)."""
        try:
            frame = orjson.loads(text)
        except orjson.JSONDecodeError:
            log.warning("chatd sent a non-JSON frame: %.200s", text)
            return None
        if not isinstance(frame, dict):
            log.warning("chatd sent a non-object frame: %.200s", text)
            return None
        kind = frame.get("type")
        fid = frame.get("id")
        if (kind == "ack" or kind == "error") and isinstance(fid, str):
            pending = self._pending.pop(fid, None)
            if pending is not None:
                if not pending.fut.done():
                    if kind == "ack":
                        pending.fut.set_result(frame.get("data") or {})
                    else:
                        pending.fut.set_exception(error_from_frame(frame.get("data")))
                return kind
            if fid.startswith(OWN_ID):
                if kind == "error":
                    log.debug("chatd error for unawaited request %s: %s", fid, frame.get("data"))
                return kind
        data = frame.get("data")
        if kind == "new_message" and isinstance(data, dict):
            chat_id, seq = data.get("chat_id"), data.get("seq")
            if self._auto_receipts and isinstance(chat_id, str) and isinstance(seq, int):
                best = self._receipts.get(chat_id)
                if best is None or seq > best[0]:
                    self._receipts[chat_id] = (seq, data.get("message_id", ""))
            if self._dedupe:
                if (chat_id, seq) in self._seen:
                    return kind
                self._seen.add((chat_id, seq))
        elif kind == "hello":
            self.hello = data if isinstance(data, dict) else {}
            return kind
        elif kind == "reconnect" and isinstance(data, dict):
            hint = data.get("retry_after_ms")
            if isinstance(hint, int | float) and hint >= 0:
                self._retry_hint = hint / 1000
        frame.setdefault("id", None)
        frame.setdefault("data", {})
        if self._on_event is not None:
            try:
                self._on_event(frame)
            except Exception:
                log.exception("chatd on_event callback failed")
        else:
            self.events.put_nowait(frame)
        return kind

    async def _flush_receipts(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Send one delivery_receipt per chat for the highest seq read since the last flush.

        Without an id, so the server sends no ack for it: one frame less per burst.
        """
        batch, self._receipts = self._receipts, {}
        for chat_id, (_seq, message_id) in batch.items():
            text = orjson.dumps(
                {
                    "type": "delivery_receipt",
                    "data": {"chat_id": chat_id, "message_id": message_id},
                }
            ).decode()
            try:
                await ws.send_str(text)
            except SEND_ERRORS:
                return  # unacknowledged messages are replayed after a reconnect

    # -- heartbeat -----------------------------------------------------------------

    def _start_heartbeat(self) -> None:
        interval = self._ping_interval
        if interval is None and self.hello:
            beat = self.hello.get("heartbeat_s")
            interval = float(beat) if isinstance(beat, int | float) else None
        if interval and interval > 0 and self._hb_handle is None:
            loop = asyncio.get_running_loop()
            self._hb_handle = loop.call_later(interval, self._beat, interval)

    def _beat(self, interval: float) -> None:
        """Timer callback: ping in a short-lived task, then re-arm."""
        self._hb_handle = None
        ws = self._ws
        if not self._up.is_set() or ws is None or ws.closed:
            return
        loop = asyncio.get_running_loop()
        if self._hb_task is None or self._hb_task.done():
            self._hb_task = loop.create_task(self._send_ping(ws))
        self._hb_handle = loop.call_later(interval, self._beat, interval)

    @staticmethod
    async def _send_ping(ws: aiohttp.ClientWebSocketResponse) -> None:
        with contextlib.suppress(*SEND_ERRORS):
            await ws.send_str(_PING_FRAME)

    def _stop_heartbeat(self) -> None:
        if self._hb_handle is not None:
            self._hb_handle.cancel()
            self._hb_handle = None
        if self._hb_task is not None and not self._hb_task.done():
            self._hb_task.cancel()
