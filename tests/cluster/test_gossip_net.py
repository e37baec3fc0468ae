"""Gossip on the real network: sealed UDP and TCP on loopback, in one process."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator, Callable

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from chatd.cluster.gossip import codec
from chatd.cluster.gossip.base import Timings
from chatd.cluster.gossip.codec import Ping
from chatd.cluster.gossip.transport import split_address
from chatd.cluster.seal import Keyring, Sealer
from chatd.cluster.service import Cluster
from tests.cluster.relay import Partition, Relay
from tests.subprocess_server import free_port

KEY = os.urandom(32)
#: Five times the default pace, so a test takes seconds.
FAST = Timings(
    probe_interval_s=0.2,
    probe_timeout_s=0.1,
    gossip_interval_s=0.05,
    push_pull_interval_s=2.0,
)


@pytest.fixture
async def start() -> AsyncIterator[Callable[..., asyncio.Future]]:
    started: list[Cluster] = []

    async def make(
        name: str, seeds: list[str] = (), key: bytes = KEY, bind: str = "127.0.0.1:0", **kw
    ) -> Cluster:
        node = Cluster(
            name,
            Keyring((key,)),
            bind=bind,
            seeds=list(seeds),
            timings=FAST,
            **kw,
        )
        await node.start(lambda: {"connections": 0, "load": 0.0})
        started.append(node)
        return node

    yield make
    for node in started:
        await node.stop()


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def view(node: Cluster) -> dict[str, str]:
    return {m.node_id: m.status for m in node.membership.members()}


async def test_three_nodes_join_through_one_seed_and_agree(start):
    a = await start("a")
    b = await start("b", seeds=[a.membership.address])
    c = await start("c", seeds=[a.membership.address])
    everyone = {"a": "alive", "b": "alive", "c": "alive"}
    await eventually(lambda: all(view(n) == everyone for n in (a, b, c)))
    # c learned b (and b learned c) from the seed, and their addresses are right.
    addresses = {m.node_id: m.address for m in c.membership.members()}
    assert addresses["b"] == b.membership.address
    await b.stop()  # graceful: left at once, not suspected
    await eventually(lambda: view(a)["b"] == "left" and view(c)["b"] == "left", 3)


async def test_a_node_with_a_wrong_key_never_joins_and_its_packets_are_dropped(start):
    a = await start("a")
    b = await start("b", seeds=[a.membership.address])
    intruder = await start("x", seeds=[a.membership.address], key=os.urandom(32))
    await eventually(lambda: view(a) == {"a": "alive", "b": "alive"})
    await eventually(lambda: a.dropped["unknown_key"] + a.dropped["auth"] > 0)
    await asyncio.sleep(2 * FAST.push_pull_interval_s)
    assert "x" not in view(a) and "x" not in view(b)
    assert view(intruder) == {"x": "alive"}


async def test_a_replayed_datagram_is_dropped_and_counted(start):
    registry = CollectorRegistry()
    a = await start("a", registry=registry)
    host, port = split_address(a.membership.address)
    sealer = Sealer(Keyring((KEY,)))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        me = f"127.0.0.1:{sock.getsockname()[1]}"
        captured = sealer.seal(codec.packet("a", [codec.encode(Ping(1, "a", "probe", me))]))
        sock.sendto(captured, (host, port))
        ack, _ = await asyncio.to_thread(sock.recvfrom, 2048)
        assert codec.decode_packet(sealer.open(ack)) == ("probe", [codec.Ack(1)])
        sock.sendto(captured, (host, port))  # the same bytes again
        await eventually(lambda: a.dropped["replay"] == 1)
        sock.settimeout(0.5)
        with pytest.raises(TimeoutError):
            sock.recvfrom(2048)  # no second ack
    text = generate_latest(registry).decode()
    assert 'chatd_cluster_dropped_total{reason="replay"} 1.0' in text
    assert 'chatd_cluster_members{status="alive"} 1.0' in text


async def test_a_datagram_captured_on_its_way_to_one_node_is_refused_by_another(start):
    registry = CollectorRegistry()
    a = await start("a")
    b_port = free_port()
    tap = Relay("b", ("127.0.0.1", b_port), Partition())
    await tap.start()
    try:
        b = await start(
            "b", seeds=[a.membership.address], bind=f"127.0.0.1:{b_port}", advertise=tap.address
        )
        c = await start("c", seeds=[a.membership.address], registry=registry)
        everyone = {"a": "alive", "b": "alive", "c": "alive"}
        await eventually(lambda: all(view(n) == everyone for n in (a, b, c)))
        await eventually(lambda: len(tap.captured) > 0)
        packet, _ = tap.captured[-1]  # sealed by a or c for b, passed on to b
        refused_by_b = b.dropped["replay"]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(packet, split_address(c.membership.address))
            sock.sendto(packet, ("127.0.0.1", b_port))
        await eventually(lambda: c.dropped["wrong_destination"] == 1)
        await eventually(lambda: b.dropped["replay"] == refused_by_b + 1)
        assert c.dropped["replay"] == 0  # c's window had never seen it: the id stopped it
        text = generate_latest(registry).decode()
        assert 'chatd_cluster_dropped_total{reason="wrong_destination"} 1.0' in text
        assert all(view(n) == everyone for n in (a, b, c))
    finally:
        await tap.close()
