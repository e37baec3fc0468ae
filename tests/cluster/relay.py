"""A network the test controls between cluster nodes: one relay per node.

Each node binds its real cluster port and advertises its relay's port, so
every datagram and stream that reaches it passes a ``Relay`` (UDP and TCP on
one port, as the cluster port). The relays of one ``Partition`` drop what
crosses a cut: ``isolate(name)`` cuts that node's traffic both ways (its
datagrams and streams to the others, theirs to it, and the streams open
now), ``heal()`` restores it. A relay also keeps the datagrams it passed
(``captured``), so a test can replay real packets.

Who sent what: a node's datagrams come from its bound port (``add_node``
names it); a stream's dialer is the process holding the connecting socket
(looked up in ``/proc``), so nodes must run in their own processes for a
partition to cut streams. Linux only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections import deque
from dataclasses import dataclass, field


def _hex_address(host: str, port: int) -> str:
    """``/proc/net/tcp``'s form of an IPv4 address: little-endian hex, port big-endian."""
    return f"{socket.inet_aton(host)[::-1].hex().upper()}:{port:04X}"


def _socket_inode(host: str, port: int) -> str | None:
    wanted = _hex_address(host, port)
    with open("/proc/net/tcp", encoding="ascii") as table:
        next(table)
        for line in table:
            fields = line.split()
            if fields[1] == wanted:
                return fields[9]
    return None


def _holder(inode: str, pids: dict[int, str]) -> str | None:
    target = f"socket:[{inode}]"
    for pid, name in pids.items():
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                        return name
    return None


@dataclass
class Partition:
    """Which nodes are cut off, and how to tell who sent a packet or dialed a stream."""

    cut: set[str] = field(default_factory=set)
    #: A node's bound UDP address -> its name.
    udp: dict[tuple[str, int], str] = field(default_factory=dict)
    #: A node's process id -> its name.
    pids: dict[int, str] = field(default_factory=dict)
    relays: list[Relay] = field(default_factory=list)

    def add_node(self, name: str, bound: tuple[str, int], pid: int | None = None) -> None:
        self.udp[bound] = name
        if pid is not None:
            self.pids[pid] = name

    def passes(self, source: str | None, destination: str) -> bool:
        return not ({source, destination} & self.cut)

    def dialer(self, peer: tuple[str, int]) -> str | None:
        inode = _socket_inode(peer[0], peer[1])
        return None if inode is None else _holder(inode, self.pids)

    def isolate(self, name: str) -> None:
        self.cut.add(name)
        for relay in self.relays:
            relay.enforce()

    def heal(self) -> None:
        self.cut.clear()


class _Upstream(asyncio.DatagramProtocol):
    """The relay's socket toward its node for one source: what the node answers
    on it goes back to that source."""

    def __init__(self, relay: Relay, source: tuple[str, int]) -> None:
        self.relay = relay
        self.source = source
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.relay.answer(data, self.source)


class _Front(asyncio.DatagramProtocol):
    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.relay.inbound(data, addr)


class Relay:
    """Node ``name``'s advertised port: passes datagrams and streams to ``upstream``."""

    def __init__(self, name: str, upstream: tuple[str, int], partition: Partition) -> None:
        self.name = name
        self.upstream = upstream
        self.partition = partition
        partition.relays.append(self)
        #: Datagrams passed to the node, with their source: (bytes, (host, port)).
        self.captured: deque[tuple[bytes, tuple[str, int]]] = deque(maxlen=1000)
        self._front: asyncio.DatagramTransport | None = None
        self._uplinks: dict[tuple[str, int], _Upstream] = {}
        self._server: asyncio.Server | None = None
        #: Open streams: (dialer's name, writers of both sides).
        self._pipes: set[tuple[str | None, asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Listen on a port free for both TCP and UDP."""
        loop = asyncio.get_running_loop()
        for _ in range(50):
            server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            try:
                self._front, _ = await loop.create_datagram_endpoint(
                    lambda: _Front(self), local_addr=("127.0.0.1", port)
                )
            except OSError:
                server.close()
                await server.wait_closed()
                continue
            self._server, self.port = server, port
            return
        raise RuntimeError("no port free for both TCP and UDP")

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for _, a, b in list(self._pipes):
            a.close()
            b.close()
        if self._front is not None:
            self._front.close()
        for uplink in self._uplinks.values():
            if uplink.transport is not None:
                uplink.transport.close()
        if self._server is not None:
            await self._server.wait_closed()

    # -- datagrams -------------------------------------------------------------

    def inbound(self, data: bytes, source: tuple[str, int]) -> None:
        if not self.partition.passes(self.partition.udp.get(source), self.name):
            return
        self.captured.append((data, source))
        uplink = self._uplinks.get(source)
        if uplink is None:
            uplink = self._uplinks[source] = _Upstream(self, source)
            loop = asyncio.get_running_loop()
            task = loop.create_datagram_endpoint(lambda: uplink, remote_addr=self.upstream)
            asyncio.ensure_future(task).add_done_callback(lambda _: self._send_up(uplink, data))
            return
        self._send_up(uplink, data)

    def _send_up(self, uplink: _Upstream, data: bytes) -> None:
        if uplink.transport is not None:
            uplink.transport.sendto(data)

    def answer(self, data: bytes, source: tuple[str, int]) -> None:
        if self._front is not None and self.partition.passes(
            self.partition.udp.get(source), self.name
        ):
            self._front.sendto(data, source)

    # -- streams ---------------------------------------------------------------

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._pipe(reader, writer)
        except asyncio.CancelledError:
            # Cancelled at teardown. Not re-raised: Python 3.11's start_server
            # callback calls task.exception() on it and logs the CancelledError.
            writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        dialer = await asyncio.to_thread(self.partition.dialer, peer)
        if not self.partition.passes(dialer, self.name):
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        pipe = (dialer, writer, up_writer)
        self._pipes.add(pipe)
        try:
            await asyncio.gather(_copy(reader, up_writer), _copy(up_reader, writer))
        finally:
            self._pipes.discard(pipe)
            writer.close()
            up_writer.close()

    def enforce(self) -> None:
        """Close the open streams that now cross a cut (and those of an unknown
        dialer, opened before its process was named: it dials again)."""
        for dialer, a, b in list(self._pipes):
            if dialer is None or not self.partition.passes(dialer, self.name):
                a.close()
                b.close()


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()
