"""Links between nodes: one reliable, ordered, bounded channel to each peer.

Each node dials one sealed stream of kind ``link`` to every other alive node
and sends its frames for that peer on it (the peer answers with acks on the
same stream; its own frames travel on the stream it dials). Frames are
numbered per sending boot and kept until the peer acknowledges them, so a
broken connection loses nothing: after reconnecting (with backoff), the
receiver says the last number it took and the sender resends the rest, which
the receiver takes exactly once and in order. A link is FIFO end to end.

A slow or dead peer never blocks the sender: ``send`` only appends to the
peer's queue, bounded by frames and bytes (queued plus unacknowledged). A
frame that does not fit is dropped and counted, and the users it concerned
are remembered; once the queue has room again, ``on_lost`` is told, so the
router can close those users' sockets and their clients resync from storage.

A listener that restarted lost what it had taken: it answers with a new
``boot``, and ``on_restart`` lets the node register its users there again.

Wire (msgpack), on a stream whose hello names the listener's node id (a
stream captured on its way to one node is refused by any other, see
``chatd.cluster.streams``): the dialer sends ``{"from", "session"}``, the listener
answers ``{"last", "boot"}``; then ``[1, n, body]`` data, ``[2, n]`` cumulative ack,
``[3, t]`` ping, ``[4, t]`` pong.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import msgpack

from chatd.cluster.seal import Sealer
from chatd.cluster.streams import SealedStream, StreamClosed, connect
from chatd.core.tasks import limited

log = logging.getLogger(__name__)

DATA, ACK, PING, PONG = 1, 2, 3, 4
KIND = "link"
PING_EVERY_S = 1.0
ACK_DELAY_S = 0.005
BACKOFF_MIN_S = 0.05
BACKOFF_MAX_S = 2.0
#: Users of frames a peer acknowledged this recently count as lost if it dies.
RECENT_S = 2.0

Handler = Callable[[str, bytes], None]
LostHandler = Callable[[str, set[str]], None]
RestartHandler = Callable[[str], None]


@dataclass(frozen=True)
class LinkLimits:
    """How much one peer may hold back: frames and bytes, queued plus unacknowledged."""

    frames: int = 20_000
    bytes: int = 32 << 20


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


class Link:
    """This node's outbound channel to one peer."""

    def __init__(
        self,
        node_id: str,
        session: str,
        peer_id: str,
        address: str,
        sealer: Sealer,
        limits: LinkLimits,
        on_lost: LostHandler,
        on_restart: RestartHandler | None = None,
    ) -> None:
        self.node_id = node_id
        self.session = session
        self.peer_id = peer_id
        self.address = address
        self._sealer = sealer
        self._limits = limits
        self._on_lost = on_lost
        self._on_restart = on_restart
        #: The listener's boot as last seen: a new one means the peer restarted.
        self.peer_boot: str | None = None
        self._queue: deque[tuple[int, bytes, tuple[str, ...]]] = deque()
        self._unacked: deque[tuple[int, bytes, tuple[str, ...]]] = deque()
        self._bytes = 0
        self._next = 1
        self._lost: set[str] = set()
        #: (when, users) of frames acknowledged lately: a peer that dies may not
        #: have passed them on yet.
        self._recent: deque[tuple[float, tuple[str, ...]]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        #: ``connecting``, ``up`` or ``down``.
        self.state = "connecting"
        self.dropped = 0
        self.sent = 0
        #: The highest frame number the peer acknowledged.
        self.acked_upto = 0
        self.rtt_s: float | None = None

    # -- the sender's side: never blocks ------------------------------------

    def send(self, body: bytes, users: Iterable[str] = (), *, force: bool = False) -> bool:
        """Queue ``body``; False (dropped, counted, users remembered) when over the bounds."""
        held = len(self._queue) + len(self._unacked)
        if not force and (
            held >= self._limits.frames or self._bytes + len(body) > self._limits.bytes
        ):
            self.dropped += 1
            self._lost.update(users)
            return False
        self._queue.append((self._next, body, tuple(users)))
        self._next += 1
        self._bytes += len(body)
        self._wake.set()
        return True

    @property
    def depth(self) -> int:
        """Frames queued or sent and not yet acknowledged."""
        return len(self._queue) + len(self._unacked)

    def recent_users(self) -> set[str]:
        """Users of the frames the peer acknowledged lately (it may not have passed
        them on, if it restarted or died since)."""
        users: set[str] = set()
        for _, recent_users in self._recent:
            users.update(recent_users)
        return users

    def pending_users(self) -> set[str]:
        """Users of every frame not yet acknowledged, and of those dropped."""
        users = set(self._lost)
        for _, recent_users in self._recent:
            users.update(recent_users)
        for _, _, frame_users in (*self._queue, *self._unacked):
            users.update(frame_users)
        return users

    # -- the connection -------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"link-{self.peer_id}")

    async def close(self) -> None:
        self._closed = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        backoff = BACKOFF_MIN_S
        host, port = split_address(self.address)
        while not self._closed:
            stream: SealedStream | None = None
            try:
                stream = await connect(
                    host, port, KIND, self._sealer, to=self.peer_id, timeout_s=3.0
                )
                await stream.send(msgpack.packb({"from": self.node_id, "session": self.session}))
                reply = msgpack.unpackb(await limited(5.0, stream.recv()))
                boot = str(reply.get("boot", ""))
                restarted = self.peer_boot is not None and boot != self.peer_boot
                self.peer_boot = boot
                self._acked(int(reply["last"]))
                # Resend what the peer had not taken, ahead of what is queued.
                self._queue.extendleft(reversed(self._unacked))
                self._unacked.clear()
                self.state, backoff = "up", BACKOFF_MIN_S
                if restarted and self._on_restart is not None:
                    self._on_restart(self.peer_id)
                await self._pump(stream)
            except (StreamClosed, TimeoutError, OSError, ValueError, KeyError, TypeError) as exc:
                if self.state == "up":
                    log.info("link to %s broke: %s", self.peer_id, exc)
            finally:
                if stream is not None:
                    await stream.close()
            self.state = "down"
            if self._closed:
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX_S)

    async def _pump(self, stream: SealedStream) -> None:
        reader = asyncio.create_task(self._read(stream))
        try:
            last_ping = 0.0
            while not self._closed:
                if reader.done():
                    raise StreamClosed("peer closed the link")
                while self._queue:
                    item = self._queue.popleft()
                    stream.write(msgpack.packb([DATA, item[0], item[1]]))
                    self._unacked.append(item)
                    self.sent += 1
                    if stream.buffered > 1 << 20:
                        await stream.drain()
                await stream.drain()
                if self._lost and self.depth < self._limits.frames // 2:
                    lost, self._lost = self._lost, set()
                    self._on_lost(self.peer_id, lost)
                    continue
                now = time.monotonic()
                if now - last_ping >= PING_EVERY_S:
                    last_ping = now
                    await stream.send(msgpack.packb([PING, now]))
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await limited(PING_EVERY_S, self._wake.wait())
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, StreamClosed):
                await reader

    async def _read(self, stream: SealedStream) -> None:
        try:
            while True:
                frame = msgpack.unpackb(await stream.recv())
                if frame[0] == ACK:
                    self._acked(int(frame[1]))
                elif frame[0] == PONG:
                    self.rtt_s = time.monotonic() - float(frame[1])
        finally:
            self._wake.set()

    @property
    def last_number(self) -> int:
        """The number of the last frame queued (0 before any)."""
        return self._next - 1

    def _acked(self, last: int) -> None:
        self.acked_upto = max(self.acked_upto, last)
        unacked, recent = self._unacked, self._recent
        now = time.monotonic()
        while unacked and unacked[0][0] <= last:
            _, body, users = unacked.popleft()
            self._bytes -= len(body)
            if users:
                recent.append((now, users))
        while recent and now - recent[0][0] > RECENT_S:
            recent.popleft()
        if last and self._queue and self._queue[0][0] <= last:  # taken before a reconnect
            while self._queue and self._queue[0][0] <= last:
                self._bytes -= len(self._queue.popleft()[1])


class _Inbound:
    __slots__ = ("last", "session", "stream")

    def __init__(self, session: str) -> None:
        self.session = session
        self.last = 0
        self.stream: SealedStream | None = None


class Inbound:
    """The listener's side: takes each peer's frames once, in order, and acks them."""

    def __init__(self, handle: Handler, on_new_boot: RestartHandler | None = None) -> None:
        self._handle = handle
        self._on_new_boot = on_new_boot
        self._peers: dict[str, _Inbound] = {}
        self.boot = new_session()

    async def accept(self, stream: SealedStream) -> None:
        hello = msgpack.unpackb(await limited(5.0, stream.recv()))
        peer, session = str(hello["from"]), str(hello["session"])
        state = self._peers.get(peer)
        if state is None or state.session != session:  # a new boot of that peer
            if state is not None and self._on_new_boot is not None:
                self._on_new_boot(peer)  # before any frame of the new boot
            state = self._peers[peer] = _Inbound(session)
        old, state.stream = state.stream, stream
        if old is not None:
            await old.close()
        await stream.send(msgpack.packb({"last": state.last, "boot": self.boot}))
        loop = asyncio.get_running_loop()
        ack_due: list[asyncio.TimerHandle] = []

        def ack() -> None:
            ack_due.clear()
            if state.stream is stream:
                with contextlib.suppress(Exception):
                    stream.write(msgpack.packb([ACK, state.last]))

        try:
            while True:
                frame = msgpack.unpackb(await stream.recv())
                kind = frame[0]
                if kind == DATA:
                    if frame[1] <= state.last or state.stream is not stream:
                        continue  # a resent frame taken already, or a superseded stream
                    state.last = frame[1]
                    try:
                        self._handle(peer, frame[2])
                    except Exception:
                        log.exception("a frame from %s failed", peer)
                    if not ack_due:
                        ack_due.append(loop.call_later(ACK_DELAY_S, ack))
                elif kind == PING:
                    stream.write(msgpack.packb([PONG, frame[1]]))
        finally:
            for handle in ack_due:
                handle.cancel()

    def forget(self, peer: str) -> None:
        self._peers.pop(peer, None)


def new_session() -> str:
    return os.urandom(8).hex()
