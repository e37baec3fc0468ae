"""Sealed TCP streams between nodes, several kinds on one port.

Gossip's full-state exchange and the node-to-node links both run over TCP on
the cluster port (``[cluster] bind``). A connection starts with one sealed
frame naming its kind; the listener hands the stream to the handler
registered for that kind. Every frame is a 4-byte length and a packet sealed
by ``chatd.cluster.seal``, so nothing unauthenticated reaches a handler and a
replayed frame is refused by the receiver's window.

The seal's window is the receiver's, so it alone would not stop a stream
captured on its way to one node from being played to another. The hello
therefore names the node it is meant for (``to``): a kind registered with a
node id refuses a hello for anyone else (counted as ``wrong_destination``).
It also carries a random channel id that every later frame of the
connection, both ways, starts with: a frame taken from another connection
and spliced into this one is refused (``wrong_stream``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
from collections.abc import Awaitable, Callable

import msgpack

from chatd.cluster.seal import OVERHEAD, Dropped, Sealer
from chatd.core.tasks import limited

log = logging.getLogger(__name__)

LENGTH = struct.Struct(">I")
#: The largest frame either side accepts (gossip's full state of a large cluster fits).
MAX_FRAME = 8 * 1024 * 1024
#: How long a new connection may take to say what it is.
HELLO_TIMEOUT_S = 5.0
#: Bytes of the channel id every frame after the hello starts with.
CHANNEL = 8

StreamHandler = Callable[["SealedStream"], Awaitable[None]]


class StreamClosed(Exception):
    """The peer closed the stream, sent a bad frame, or the stream was closed here."""


class SealedStream:
    """Length-prefixed sealed frames over one TCP connection."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, sealer: Sealer
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._sealer = sealer
        self.peer = writer.get_extra_info("peername")
        #: Once bound (after the hello), every frame both ways starts with this.
        self._channel = b""

    def bind(self, channel: bytes) -> None:
        self._channel = channel

    def write(self, payload: bytes) -> None:
        """Queue one frame; pair with ``drain`` to respect the peer's pace."""
        packet = self._sealer.seal(self._channel + payload)
        self._writer.write(LENGTH.pack(len(packet)) + packet)

    async def drain(self) -> None:
        try:
            await self._writer.drain()
        except (ConnectionError, OSError) as exc:
            raise StreamClosed(str(exc)) from None

    async def send(self, payload: bytes) -> None:
        self.write(payload)
        await self.drain()

    @property
    def buffered(self) -> int:
        """Bytes queued for the peer and not yet handed to the kernel."""
        return self._writer.transport.get_write_buffer_size()

    async def recv(self) -> bytes:
        """The next frame's payload; ``StreamClosed`` at the end or on a bad frame."""
        try:
            (size,) = LENGTH.unpack(await self._reader.readexactly(LENGTH.size))
            if not OVERHEAD <= size <= MAX_FRAME:
                raise StreamClosed("frame size out of range")
            packet = await self._reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError, OSError) as exc:
            raise StreamClosed(str(exc) or "closed") from None
        try:
            payload = self._sealer.open(packet)
        except Dropped as exc:
            raise StreamClosed(f"dropped frame: {exc.reason}") from None
        channel = self._channel
        if channel:
            if payload[: len(channel)] != channel:
                self._sealer.dropped["wrong_stream"] += 1
                raise StreamClosed("dropped frame: wrong_stream")
            return payload[len(channel) :]
        return payload

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self._writer.wait_closed()


def _hello(kind: str, to: str, channel: bytes) -> bytes:
    return msgpack.packb({"stream": kind, "to": to, "ch": channel})


class StreamServer:
    """Accepts cluster TCP connections and dispatches them by kind."""

    def __init__(self, sealer: Sealer) -> None:
        self._sealer = sealer
        self._handlers: dict[str, tuple[StreamHandler, str | None]] = {}
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def register(self, kind: str, handler: StreamHandler, *, node_id: str | None = None) -> None:
        """Streams of ``kind`` go to ``handler``; with ``node_id``, only those whose
        hello names that node (the others were meant for another node)."""
        self._handlers[kind] = (handler, node_id)

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(self._accept, host, port)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stream = SealedStream(reader, writer, self._sealer)
        try:
            hello = msgpack.unpackb(await limited(HELLO_TIMEOUT_S, stream.recv()), raw=False)
            handler, node_id = self._handlers[hello["stream"]]
            channel = hello["ch"]
            if not isinstance(channel, bytes) or len(channel) != CHANNEL:
                raise ValueError("bad channel id")
            if node_id is not None and hello.get("to") != node_id:
                self._sealer.dropped["wrong_destination"] += 1
                raise ValueError(f"meant for {hello.get('to')!r}")
        except (StreamClosed, TimeoutError, KeyError, TypeError, ValueError) as exc:
            log.debug("cluster stream from %s refused: %s", stream.peer, exc)
            await stream.close()
            return
        stream.bind(channel)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await handler(stream)
        except (StreamClosed, asyncio.CancelledError):
            # Cancelled by ``close``: end quietly (asyncio's connection callback
            # would log a cancelled handler task as an error).
            pass
        finally:
            self._tasks.discard(task)
            await stream.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._tasks):
                task.cancel()
            await self._server.wait_closed()
            self._server = None


async def connect(
    host: str, port: int, kind: str, sealer: Sealer, *, to: str = "", timeout_s: float = 5.0
) -> SealedStream:
    """Open a stream of ``kind`` to the node ``to`` listening on ``host:port``
    (``to`` empty: whichever node is there, for kinds registered without an id)."""
    try:
        reader, writer = await limited(timeout_s, asyncio.open_connection(host, port))
    except (TimeoutError, OSError) as exc:
        raise StreamClosed(f"cannot connect: {exc}") from None
    stream = SealedStream(reader, writer, sealer)
    channel = os.urandom(CHANNEL)
    await stream.send(_hello(kind, to, channel))
    stream.bind(channel)
    return stream
