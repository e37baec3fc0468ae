"""Links between two nodes: FIFO and exactly once across broken connections, bounded."""

from __future__ import annotations

import os

import msgpack

from chatd.cluster.links import Inbound, Link, LinkLimits
from chatd.cluster.seal import Keyring, Sealer
from chatd.cluster.streams import StreamServer
from tests.cluster.bare import eventually

KEY = os.urandom(32)


async def _listener(inbound: Inbound, port: int = 0) -> StreamServer:
    server = StreamServer(Sealer(Keyring((KEY,))))
    server.register("link", inbound.accept)
    await server.start("127.0.0.1", port)
    return server


async def test_frames_arrive_once_and_in_order_across_a_broken_connection() -> None:
    got: list[int] = []
    inbound = Inbound(lambda _peer, body: got.append(msgpack.unpackb(body)))
    server = await _listener(inbound)
    port = server.port
    lost: list[set[str]] = []
    link = Link(
        "a",
        "s1",
        "b",
        f"127.0.0.1:{port}",
        Sealer(Keyring((KEY,))),
        LinkLimits(),
        lambda _peer, users: lost.append(users),
    )
    link.start()
    try:
        for n in range(500):
            link.send(msgpack.packb(n))
        await eventually(lambda: len(got) >= 200)
        await server.close()  # the connection breaks mid-stream
        for n in range(500, 1000):
            link.send(msgpack.packb(n))
        server = await _listener(inbound, port)  # the same node, listening again
        await eventually(lambda: len(got) == 1000 and link.depth == 0)
        assert got == list(range(1000)) and lost == [] and link.dropped == 0
    finally:
        await link.close()
        await server.close()


async def test_a_full_queue_drops_and_tells_whose_frames_were_lost_once_there_is_room() -> None:
    got: list[int] = []
    inbound = Inbound(lambda _peer, body: got.append(msgpack.unpackb(body)))
    probe = await _listener(inbound)
    port = probe.port
    await probe.close()  # nobody listens yet: the peer is down
    lost: list[set[str]] = []
    link = Link(
        "a",
        "s1",
        "b",
        f"127.0.0.1:{port}",
        Sealer(Keyring((KEY,))),
        LinkLimits(frames=10),
        lambda _peer, users: lost.append(users),
    )
    link.start()
    try:
        for n in range(15):
            assert link.send(msgpack.packb(n), [f"u{n}"]) is (n < 10)
        assert link.dropped == 5 and link.depth == 10
        assert link.send(b"\xc0", force=True)  # control frames are never dropped
        server = await _listener(inbound, port)
        await eventually(lambda: len(got) == 11 and bool(lost))
        assert got[:10] == list(range(10)) and lost == [{f"u{n}" for n in range(10, 15)}]
        await server.close()
    finally:
        await link.close()
