"""One device's WebSocket session: requests answered by acks, events, lifecycle.

The socket handling (reader task, receipts, reconnects, heartbeat) lives in
``wsconn.WsConnection``; this module is the public surface used by tests, the
benchmark and the TUI.
"""

# The public API takes timeout= (tests and the benchmark are written against it).
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson

from chatd.client.bodies import message_body
from chatd.client.wsconn import OWN_ID, SEND_ERRORS, Pending, WsConnection


class WsSession(WsConnection):
    """A WebSocket session for one logged-in device of a ChatdClient.

    Use as ``async with client.connect() as ws:``. ``hello`` holds the latest hello
    data, ``close_code`` the last close code seen, ``closed`` turns True once the
    session is over for good, ``reconnects`` counts successful reconnections.
    Events (every server frame except hello and the answers to our own requests) are
    read with ``next_event``, ``collect``, ``drain`` or straight from ``events``;
    request ids starting with "~" are reserved for the session itself.
    """

    # -- lifecycle -----------------------------------------------------------------

    async def open(self) -> WsSession:
        """Connect and wait for the hello; raises ApiError if the handshake is refused."""
        if self._task is not None:
            return self
        if self.closed:
            raise RuntimeError("this WsSession is closed; call client.connect() again")
        self._client._ws_sessions.add(self)
        try:
            ws = await self._connect()
        except BaseException:
            self._finish()
            raise
        await self._resume(ws)
        self._task = asyncio.get_running_loop().create_task(self._run(ws), name="chatd-ws-reader")
        return self

    async def close(self) -> None:
        """End the session: close the socket, stop every task, fail pending requests."""
        first = not self._closing
        self._closing = True
        self._stop_heartbeat()
        ws = self._ws
        if first and ws is not None and not ws.closed:
            with contextlib.suppress(Exception):
                await ws.close()
            self.close_code = ws.close_code
        tasks = [t for t in (self._task, self._hb_task) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        self._finish()

    async def __aenter__(self) -> WsSession:
        return await self.open()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def wait_connected(self, timeout: float = 10.0) -> dict[str, Any]:
        """Wait until a (re)connected socket has its hello; returns the hello data."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while not self._up.is_set():
                if self.closed:
                    raise ConnectionError("chatd websocket session is closed")
                waits = (
                    loop.create_task(self._up.wait()),
                    loop.create_task(self._inbox_ended.wait()),
                )
                try:
                    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for task in waits:
                        task.cancel()
        return self.hello or {}

    # -- requests ------------------------------------------------------------------

    async def request(self, type: str, data: dict[str, Any], *, timeout: float = 10.0) -> Any:
        """Send ``{type, id, data}`` and return the ack's data.

        Raises ApiError (status None) on an error frame, TimeoutError after ``timeout``
        and ConnectionError if the socket is gone. A send_message survives a reconnect:
        it is re-sent on the new socket and still answered here.
        """
        if self.closed or self._closing:
            raise ConnectionError("chatd websocket session is closed")
        if self._gen == 0:
            raise ConnectionError("chatd websocket session is not open")
        rid = f"{OWN_ID}{next(self._ids)}"
        text = orjson.dumps({"type": type, "id": rid, "data": data}).decode()
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        resend = text if type == "send_message" and self._reconnect else None
        self._pending[rid] = Pending(fut, resend, self._gen)
        try:
            ws = self._ws
            if self._up.is_set() and ws is not None:
                try:
                    await ws.send_str(text)
                except SEND_ERRORS as exc:
                    if resend is None:
                        raise ConnectionError(f"chatd websocket send failed: {exc}") from exc
            elif resend is None:
                raise ConnectionError("chatd websocket is not connected")
            async with asyncio.timeout(timeout):
                return await fut
        finally:
            self._pending.pop(rid, None)

    async def send_raw(self, text: str) -> None:
        """Send one text frame exactly as given (for tests of malformed input)."""
        ws = self._ws
        if not self._up.is_set() or ws is None:
            raise ConnectionError("chatd websocket is not connected")
        await ws.send_str(text)

    async def send_message(
        self,
        *,
        chat_id: str | None = None,
        recipient_id: str | None = None,
        content: str = "",
        type: str = "text",
        client_msg_id: str | None = None,
        media_id: str | None = None,
        reply_to: str | None = None,
        encrypted: bool = False,
        ciphertexts: dict[str, Any] | None = None,
        timeout: float = 10.0,
    ) -> dict[str, Any]:
        """Send a message; returns the ack ``{message_id, chat_id, seq, status, timestamp}``.

        The ack means the message is durably stored. A uuid4 client_msg_id is made
        when none is given.
        """
        body = message_body(
            chat_id=chat_id,
            recipient_id=recipient_id,
            content=content,
            type=type,
            client_msg_id=client_msg_id,
            media_id=media_id,
            reply_to=reply_to,
            encrypted=encrypted,
            ciphertexts=ciphertexts,
        )
        return await self.request("send_message", body, timeout=timeout)

    async def delivery_receipt(self, chat_id: str, message_id: str) -> None:
        """This device has every message of the chat up to ``message_id`` (waits for ack)."""
        await self.request("delivery_receipt", {"chat_id": chat_id, "message_id": message_id})

    async def read_receipt(self, chat_id: str, message_id: str) -> None:
        """The user has read up to ``message_id`` (waits for the ack)."""
        await self.request("read_receipt", {"chat_id": chat_id, "message_id": message_id})

    async def typing(self, chat_id: str, is_typing: bool = True) -> None:
        await self.request("typing_indicator", {"chat_id": chat_id, "is_typing": is_typing})

    async def ping(self) -> dict[str, Any]:
        """Round-trip a ping; returns ``{server_time}``."""
        return await self.request("ping", {})
