"""Beneath aiohttp's WebSocketResponse: the two things chatd does itself, in one place.

Both rest on aiohttp behaviour that is not public API, so they live here alone,
and ``tests/test_rawsocket.py`` checks them against the aiohttp installed, within
the version range pyproject.toml declares (raise that range only after the test
passes on the new version):

1. **Frames written straight to the transport.** An event for 256 sockets is
   encoded and framed once, and each socket's waiting frames go out in one
   ``writelines`` per event-loop turn (``sessions.Outbox``). aiohttp's
   ``send_str`` would encode and frame per socket and await per frame: the
   group benchmark measured that path several times slower (docs/benchmarks.md).
   This relies on aiohttp writing nothing of its own between frames when
   per-message deflate is off (``compress=False``) and the server never masks.
2. **The upgraded connection's HTTP parser dropped** (about 0.8 KB per idle
   socket): after the upgrade aiohttp feeds bytes only to the WebSocket reader,
   and every later use of ``protocol._parser`` checks it for None (3.10-3.14).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from aiohttp import web


class Transport(Protocol):
    """What the outbox needs of a socket's transport (asyncio's or uvloop's)."""

    def writelines(self, data: Iterable[bytes]) -> None: ...
    def get_write_buffer_size(self) -> int: ...
    def is_closing(self) -> bool: ...
    def abort(self) -> None: ...


def text_frame(payload: bytes) -> bytes:
    """A complete server-to-client WebSocket text frame around ``payload``.

    Final, unmasked, uncompressed (RFC 6455 5.2): the server side never masks,
    and the socket is opened without per-message deflate.
    """
    size = len(payload)
    if size < 126:
        return bytes((0x81, size)) + payload
    if size < 65536:
        return bytes((0x81, 126)) + size.to_bytes(2, "big") + payload
    return bytes((0x81, 127)) + size.to_bytes(8, "big") + payload


def as_transport(transport: Any) -> Transport | None:
    """The transport if it can be written to directly (uvloop's is no asyncio.Transport)."""
    if transport is None:
        return None
    needed = ("writelines", "get_write_buffer_size", "is_closing", "abort")
    return transport if all(hasattr(transport, name) for name in needed) else None


def drop_http_parser(request: web.Request) -> None:
    """Free the upgraded connection's HTTP parser; skipped if aiohttp has none there."""
    protocol = request.protocol
    if getattr(protocol, "_upgraded", False) and getattr(protocol, "_parser", None) is not None:
        protocol._parser = None
