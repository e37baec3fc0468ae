"""The gossip wire format: what decodes, what is refused, what fits a datagram."""

from __future__ import annotations

import msgpack
import pytest

from chatd.cluster.gossip import codec
from chatd.cluster.gossip.broadcast import BroadcastQueue, retransmit_limit
from chatd.cluster.gossip.codec import Alive, Malformed, NodeState, Ping, PushPull, Suspect
from chatd.cluster.seal import OVERHEAD
from chatd.testing.gossipnet import SimNetwork


def test_messages_round_trip_in_one_datagram():
    messages = [
        Ping(7, "n2", "n1", "10.0.0.1:7946"),
        Alive("n1", "10.0.0.1:7946", 3, 1_700_000_000_000, {"connections": 4, "load": 0.5}),
        Suspect("n3", 2, "n1"),
    ]
    payload = codec.packet("n2", [codec.encode(m) for m in messages])
    assert codec.decode_packet(payload) == ("n2", messages)


def test_push_pull_round_trips():
    state = PushPull((NodeState("n1", "[::1]:7946", 1, "suspect", 5, {}),), join=True, source="n1")
    assert codec.decode_push_pull(codec.encode_push_pull(state)) == state
    answer = PushPull(state.nodes, to="n1", source="n2")
    assert codec.decode_push_pull(codec.encode_push_pull(answer)) == answer


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\xc1",  # never used in msgpack
        msgpack.packb(["n1", {"t": "ping", "seq": 1}]),  # fields missing
        msgpack.packb(["n1", {"t": "alive", "n": "x", "a": "nohost", "i": 1, "j": 1, "m": {}}]),
        msgpack.packb(["n1", {"t": "suspect", "n": "x", "i": -1, "fr": "y"}]),
        msgpack.packb(["n1", {"t": "dead", "n": "x" * 65, "i": 1, "fr": "y"}]),
        msgpack.packb(
            ["n1", {"t": "alive", "n": "x", "a": "h:1", "i": 1, "j": 1, "m": {"k": [1]}}]
        ),
        msgpack.packb(["n1", {1: "integer keys are refused"}]),
        msgpack.packb(["n1", {"t": "exec", "code": "os.system"}]),
        msgpack.packb(["n1"]) + b"trailing",
        msgpack.packb([{"t": "ack", "seq": 1}]),  # no destination
        msgpack.packb([7, {"t": "ack", "seq": 1}]),  # a destination that is not an id
        b"\x92" + msgpack.packb("n1") + msgpack.packb("x" * 2000),  # over a datagram
    ],
)
def test_anything_else_is_malformed(payload):
    with pytest.raises(Malformed):
        codec.decode_packet(payload)


def test_a_node_counts_what_it_cannot_decode_and_carries_on():
    net = SimNetwork(1)
    a = net.add("a")
    net.add("b", seeds=["a"])
    net.clock.run_for(2)
    a.receive(b"\x93garbage", "b:7946")
    a.receive(msgpack.packb(["a", {"t": "nope"}]), "b:7946")
    assert a.dropped == {"malformed": 1, "unknown_type": 1}
    net.clock.run_for(5)
    assert [m.status for m in a.members()] == ["alive", "alive"]


def test_broadcasts_go_least_transmitted_first_and_stop_at_the_limit():
    queue = BroadcastQueue(retransmit_mult=2)
    queue.queue("a", b"A" * 10)
    queue.queue("b", b"B" * 10)
    assert queue.take(100, nodes=3) == [b"B" * 10, b"A" * 10]  # newest first
    queue.queue("c", b"C" * 10)
    assert queue.take(15, nodes=3) == [b"C" * 10]  # never sent before
    queue.queue("a", b"a" * 10)  # news about a replaces the old
    limit = retransmit_limit(2, 3)
    sent = [queue.take(100, nodes=3) for _ in range(limit + 1)]
    assert sent[0][0] == b"a" * 10 and all(b"A" * 10 not in batch for batch in sent)
    assert sent[-1] == [] and len(queue) == 0


def test_a_datagram_never_exceeds_1400_bytes_with_its_seal():
    net = SimNetwork(2)
    nodes = [net.add("seed")] + [
        net.add(f"node-with-a-long-name-{i:03d}", seeds=["seed"]) for i in range(60)
    ]
    for n in nodes:
        n.set_meta({"connections": 123456, "load": 1.25, "version": "x" * 100})
    net.clock.run_for(10)
    largest = max(len(p) for *_, p in net.sent) + OVERHEAD
    assert 1300 < largest <= 1400  # full datagrams were sent, none too large
