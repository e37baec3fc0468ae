"""Router contract: events reach the sockets of their users on every node, in
publish order; invalidations reach every node, the origin at once.

Each case runs on every implementation: ``local`` (one ``LocalRouter`` shared
by the nodes of this process) and ``cluster`` (a ``ClusterRouter`` per node,
three nodes over loopback links on a ``FixedCluster``). A cluster delivers
over the network, so the cases wait for what they expect (``settled``) and,
for what must not come, for later frames to arrive and a moment more.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

import pytest

from chatd.cluster.local import LocalRouter
from chatd.core.events import Event, Invalidation
from chatd.core.ports.router import Router
from tests.cluster.bare import BareNode, bare_cluster, eventually, stop_bare
from tests.ports.conftest import RecordingSockets


class Sockets(RecordingSockets):
    """A node's sockets as a gateway holds them: only the users connected here
    get what is delivered (a router may hand a node more users than that)."""

    def __init__(self) -> None:
        super().__init__()
        self.here: set[str] = set()

    def deliver(self, user_ids: Iterable[str], event: Event, skip_device: str | None) -> None:
        users = [u for u in user_ids if u in self.here]
        if users:
            super().deliver(users, event, skip_device)


@dataclass
class Member:
    node_id: str
    #: The router this node publishes and invalidates through.
    router: Router
    sockets: Sockets


class Harness:
    """Nodes of one implementation, and what a test does to them."""

    members: list[Member]

    async def connect(self, member: Member, user: str, device: str) -> None:
        """A socket of ``user``'s ``device`` opens on ``member``, and the router knows."""
        member.sockets.here.add(user)

    def attach(self, member: Member, apply: object = None) -> None:
        sockets = member.sockets
        member.router.attach(member.node_id, sockets, apply or sockets.apply)  # type: ignore[arg-type]

    async def close(self) -> None:
        pass


class LocalHarness(Harness):
    def __init__(self) -> None:
        router = LocalRouter()
        self.members = [Member(n, router, Sockets()) for n in ("node-a", "node-b", "node-c")]
        for member in self.members:
            self.attach(member)


class ClusterHarness(Harness):
    async def start(self) -> None:
        _, self._nodes = await bare_cluster(3)
        self.members = [Member(n.node_id, n.parts.router, Sockets()) for n in self._nodes]
        for member in self.members:
            self.attach(member)

    def _node(self, member: Member) -> BareNode:
        return next(n for n in self._nodes if n.node_id == member.node_id)

    async def connect(self, member: Member, user: str, device: str) -> None:
        await super().connect(member, user, device)
        self._node(member).parts.presence.connected(user, device)
        want = sum(user in m.sockets.here for m in self.members)
        # Every node mirrors it once the user's home has registered the socket.
        await eventually(lambda: all(n.parts.presence.sockets(user) == want for n in self._nodes))

    async def close(self) -> None:
        await stop_bare(self._nodes)


@pytest.fixture(params=["cluster", "local"])
async def nodes(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    harness: Harness
    if request.param == "local":
        harness = LocalHarness()
    else:
        harness = ClusterHarness()
        await harness.start()
    try:
        yield harness
    finally:
        await harness.close()


def _event(n: int, chat_id: str = "c") -> Event:
    return Event("new_message", {"n": n}, chat_id=chat_id, seq=n)


def per_user(sockets: Sockets) -> list[tuple[str, int, str | None]]:
    return [(u, event.seq, skip) for users, event, skip in sockets.delivered for u in users]


async def settled(check: object) -> None:
    await eventually(check)  # type: ignore[arg-type]


async def test_the_users_sockets_get_what_is_published_with_the_skipped_device(nodes) -> None:
    a = nodes.members[0]
    await nodes.connect(a, "u1", "d1")
    await nodes.connect(a, "u2", "d2")
    a.router.publish(["u1", "u2", "u3"], _event(1), skip_device="d1")
    # Once per user (a cluster delivers each home's users apart), the skip kept.
    await settled(lambda: len(per_user(a.sockets)) == 2)
    await asyncio.sleep(0.05)
    assert sorted(per_user(a.sockets)) == [("u1", 1, "d1"), ("u2", 1, "d1")]


async def test_every_node_holding_a_user_gets_every_event_in_publish_order(nodes) -> None:
    for member in nodes.members:
        await nodes.connect(member, "u1", f"phone-{member.node_id}")
    a = nodes.members[0]
    for n in range(1, 51):
        a.router.publish(iter(["u1"]), _event(n))  # an iterator is read once, for all nodes
    await settled(lambda: all(len(m.sockets.delivered) == 50 for m in nodes.members))
    for member in nodes.members:
        assert [users for users, _, _ in member.sockets.delivered] == [["u1"]] * 50
        assert member.sockets.events() == [{"n": n} for n in range(1, 51)]


async def test_a_detached_node_gets_nothing_more(nodes) -> None:
    a, b = nodes.members[:2]
    await nodes.connect(a, "u", "d1")
    await nodes.connect(b, "u", "d2")
    a.router.publish(["u"], _event(1))
    await settled(lambda: len(b.sockets.delivered) == 1)
    b.router.detach(b.node_id)
    a.router.publish(["u"], _event(2))
    a.router.invalidate(Invalidation.membership("c"))
    await settled(lambda: len(a.sockets.delivered) == 2 and len(a.sockets.invalidations) == 1)
    # Later frames: the presence of a third socket reaches every node (b included,
    # on the path the event to b took), then an event reaches that socket.
    sentinel = nodes.members[2]
    await nodes.connect(sentinel, "u", "d3")
    a.router.publish(["u"], _event(3))
    await settled(lambda: len(sentinel.sockets.delivered) == 1)
    await asyncio.sleep(0.1)
    assert a.sockets.events() == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert b.sockets.events() == [{"n": 1}] and b.sockets.invalidations == []


async def test_an_invalidation_reaches_every_node_the_origin_at_once(nodes) -> None:
    a = nodes.members[0]
    revoked = Invalidation.devices(["d1", "d2"], "token revoked")
    a.router.invalidate(revoked)
    assert a.sockets.invalidations == [revoked]  # before invalidate returned
    a.router.invalidate(Invalidation.membership("chat-1"))
    expected = [revoked, Invalidation.membership("chat-1")]
    await settled(lambda: all(m.sockets.invalidations == expected for m in nodes.members))


async def test_one_failing_node_does_not_keep_an_invalidation_from_the_others(nodes) -> None:
    a, b, c = nodes.members

    def broken(invalidation: Invalidation) -> None:
        raise RuntimeError("this node's cache is broken")

    nodes.attach(a, broken)
    a.router.invalidate(Invalidation.membership("c"))
    expected = [Invalidation.membership("c")]
    await settled(lambda: b.sockets.invalidations == c.sockets.invalidations == expected)
