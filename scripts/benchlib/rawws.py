"""A bare-bones WebSocket client for holding very many idle connections.

aiohttp's client keeps a response, a reader, a parser and a task per socket;
at 100,000 sockets that costs the load generator more than the server. This
protocol keeps a buffer and a few fields: it sends the upgrade request, waits
for the hello, then only pings, counts frames and hands text frames to a
callback. Client frames must be masked (RFC 6455 5.3); a benchmark does not
need unpredictable keys, so each process masks with one random key.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
from collections.abc import Callable
from typing import Any, cast

import orjson

_KEY = os.urandom(4)
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


def masked_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One final client frame (payload under 64 KiB), masked with this process's key."""
    size = len(payload)
    head = bytes((0x80 | opcode, 0x80 | size)) if size < 126 else bytes((0x80 | opcode, 0xFE))
    if size >= 126:
        head += size.to_bytes(2, "big")
    body = bytes(b ^ _KEY[i & 3] for i, b in enumerate(payload))
    return head + _KEY + body


PING = masked_frame(orjson.dumps({"type": "ping", "data": {}}))  # no id: the server sends no ack
CLOSE = masked_frame((1000).to_bytes(2, "big"), opcode=0x8)


def upgrade_request(host: str, port: int, token: str) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    ).encode()


class IdleSocket(asyncio.Protocol):
    """One held WebSocket. ``hello`` resolves with the hello's data (or fails)."""

    __slots__ = (
        "_buf",
        "_request",
        "close_code",
        "closed",
        "frames",
        "hello",
        "on_text",
        "transport",
        "upgraded",
    )

    def __init__(
        self, request: bytes, on_text: Callable[[IdleSocket, bytes], None] | None = None
    ) -> None:
        self._request = request
        self._buf = bytearray()
        self.on_text = on_text
        self.transport: asyncio.Transport | None = None
        self.upgraded = False
        self.closed = False
        self.close_code: int | None = None
        self.frames = 0  # text frames after the hello
        self.hello: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self.transport.write(self._request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.hello.done():
            self.hello.set_exception(ConnectionError(f"closed before hello ({exc})"))

    def send(self, frame: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(frame)

    def close(self) -> None:
        """Send a close frame and drop the connection (no waiting for the echo)."""
        if not self.closed and self.transport is not None:
            self.transport.write(CLOSE)
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        if not self.upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            status = bytes(buf[: buf.find(b"\r\n")])
            if status.split(b" ")[1:2] != [b"101"]:
                if not self.hello.done():
                    self.hello.set_exception(ConnectionError(status.decode("latin-1")))
                assert self.transport is not None
                self.transport.close()
                return
            del buf[: end + 4]
            self.upgraded = True
        while len(buf) >= 2:
            size, start = buf[1] & 0x7F, 2
            if size == 126:
                if len(buf) < 4:
                    return
                size, start = int.from_bytes(buf[2:4], "big"), 4
            elif size == 127:
                if len(buf) < 10:
                    return
                size, start = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < start + size:
                return
            opcode, payload = buf[0] & 0x0F, bytes(buf[start : start + size])
            del buf[: start + size]
            if opcode == 0x1:
                self._text(payload)
            elif opcode == 0x8:
                self.close_code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                assert self.transport is not None
                self.transport.close()
            elif opcode == 0x9:  # the server does not ping today; answer if it ever does
                self.send(masked_frame(payload, opcode=0xA))

    def _text(self, payload: bytes) -> None:
        if not self.hello.done():
            frame = orjson.loads(payload)
            if frame.get("type") == "hello":
                self.hello.set_result(frame.get("data") or {})
                return
        self.frames += 1
        if self.on_text is not None:
            self.on_text(self, payload)


async def open_idle(
    host: str,
    port: int,
    token: str,
    source: str,
    on_text: Callable[[IdleSocket, bytes], None] | None = None,
    within: float = 30.0,
    protocol: Callable[[bytes], IdleSocket] | None = None,
) -> IdleSocket:
    """Connect from ``source`` (a 127.x address), upgrade, and wait for the hello.

    ``protocol`` makes the socket's protocol from the upgrade request (a subclass
    of IdleSocket); by default an IdleSocket that hands text frames to ``on_text``.

    IP_BIND_ADDRESS_NO_PORT lets the kernel pick the source port at connect time,
    per (source, destination) pair, so each source address has its own ~28k ports.
    """
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    proto: IdleSocket | None = None
    try:
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((source, 0))
        sock.setblocking(False)
        async with asyncio.timeout(within):
            await loop.sock_connect(sock, (host, port))
            request = upgrade_request(host, port, token)
            make = protocol or (lambda request: IdleSocket(request, on_text))
            _, proto = await loop.create_connection(lambda: make(request), sock=sock)
            await proto.hello
    except BaseException:
        if proto is None:
            sock.close()
        elif proto.transport is not None:  # the transport owns the socket now
            proto.transport.abort()
        raise
    return proto


def source_addresses(connections: int, per_address: int = 20000) -> list[str]:
    """Enough 127.0.0.x source addresses that none needs more than ``per_address`` ports."""
    count = max(1, -(-connections // per_address))
    if count > 250:
        raise SystemExit(f"{connections} connections need more than 250 source addresses")
    return [f"127.0.0.{2 + i}" for i in range(count)]
