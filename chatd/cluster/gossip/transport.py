"""The real network under a gossip node: sealed UDP datagrams and sealed TCP streams.

Both use the cluster port (``[cluster] bind``): datagrams on its UDP socket,
push-pull as a ``gossip`` stream on the ``StreamServer`` listening on its TCP
side. Every datagram is sealed (``chatd.cluster.seal``) and at most 1400 bytes
with the seal; what fails to open is dropped and counted by the ``Sealer``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Callable

from chatd.cluster.seal import Dropped, Sealer
from chatd.cluster.streams import SealedStream, StreamClosed, StreamServer, connect
from chatd.core.tasks import limited

log = logging.getLogger(__name__)

STREAM_KIND = "gossip"
#: How long a push-pull may take, connect to answer (memberlist's TCPTimeout).
TCP_TIMEOUT_S = 10.0
#: A resolved host name is used this long before it is looked up again.
DNS_TTL_S = 60.0


def split_address(address: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port)."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def join_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class AsyncioClock:
    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def wall_ms(self) -> int:
        return int(time.time() * 1000)

    def call_later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        return asyncio.get_running_loop().call_later(delay, callback)


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, owner: NetTransport) -> None:
        self._owner = owner

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        self._owner._received(data, join_address(str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        log.debug("gossip UDP error: %s", exc)


class NetTransport:
    """``base.Transport`` on asyncio: UDP out and in, push-pull over streams."""

    def __init__(self, sealer: Sealer, streams: StreamServer) -> None:
        self._sealer = sealer
        self._streams = streams
        self._udp: asyncio.DatagramTransport | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._resolved: dict[str, tuple[float, tuple[str, int]]] = {}
        self.on_datagram: Callable[[bytes, str], None] = lambda payload, source: None
        self.on_push_pull: Callable[[bytes], bytes | None] = lambda payload: None

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._udp, _ = await loop.create_datagram_endpoint(
            lambda: _Datagrams(self), local_addr=(host, port)
        )
        self._streams.register(STREAM_KIND, self._serve_push_pull)

    async def close(self) -> None:
        if self._udp is not None:
            self._udp.close()
            self._udp = None
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- datagrams --------------------------------------------------------------

    def _received(self, data: bytes, source: str) -> None:
        try:
            payload = self._sealer.open(data)
        except Dropped:
            return  # counted by the sealer
        self.on_datagram(payload, source)

    def send(self, address: str, payload: bytes) -> None:
        if self._udp is None:
            return
        packet = self._sealer.seal(payload)
        target = self._lookup(address)
        if target is not None:
            self._udp.sendto(packet, target)
        else:  # a host name not resolved yet: resolve off the loop, then send
            self._spawn(self._resolve_and_send(address, packet))

    def _lookup(self, address: str) -> tuple[str, int] | None:
        host, port = split_address(address)
        try:
            ipaddress.ip_address(host)
            return host, port
        except ValueError:
            pass
        cached = self._resolved.get(address)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        return None

    async def _resolve_and_send(self, address: str, packet: bytes) -> None:
        host, port = split_address(address)
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=2)  # SOCK_DGRAM
        except OSError as exc:
            log.warning("cannot resolve cluster peer %s: %s", address, exc)
            return
        target = (str(infos[0][4][0]), int(infos[0][4][1]))
        self._resolved[address] = (time.monotonic() + DNS_TTL_S, target)
        if self._udp is not None:
            self._udp.sendto(packet, target)

    # -- push-pull --------------------------------------------------------------

    def push_pull(
        self, address: str, payload: bytes, on_reply: Callable[[bytes | None], None]
    ) -> None:
        self._spawn(self._push_pull(address, payload, on_reply))

    async def _push_pull(
        self, address: str, payload: bytes, on_reply: Callable[[bytes | None], None]
    ) -> None:
        host, port = split_address(address)
        reply: bytes | None = None
        stream: SealedStream | None = None
        try:
            stream = await connect(host, port, STREAM_KIND, self._sealer, timeout_s=TCP_TIMEOUT_S)
            await stream.send(payload)
            reply = await limited(TCP_TIMEOUT_S, stream.recv())
        except (StreamClosed, TimeoutError) as exc:
            log.debug("push-pull with %s failed: %s", address, exc)
        finally:
            if stream is not None:
                await stream.close()
        on_reply(reply)

    async def _serve_push_pull(self, stream: SealedStream) -> None:
        try:
            payload = await limited(TCP_TIMEOUT_S, stream.recv())
        except TimeoutError:
            return
        reply = self.on_push_pull(payload)
        if reply is not None:
            await stream.send(reply)

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
