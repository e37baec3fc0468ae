"""A ``ClusterRouter`` per node over loopback links, beyond the router contract
(``tests/ports/test_router.py`` runs that on it too): nothing is broadcast,
and a home that dies or restarts."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from chatd.cluster.hrw import owner
from chatd.core.events import Event
from tests.cluster.bare import (
    BareNode,
    bare_cluster,
    eventually,
    join_bare,
    stop_bare,
    user_homed_on,
)
from tests.cluster.fixed_membership import FixedCluster


@pytest.fixture
async def three() -> AsyncIterator[tuple[FixedCluster, list[BareNode]]]:
    cluster, nodes = await bare_cluster(3)
    try:
        yield cluster, nodes
    finally:
        await stop_bare(nodes)


def _event(n: int) -> Event:
    return Event("new_message", {"n": n}, chat_id="c", seq=n)


async def test_events_reach_only_the_nodes_holding_the_users_in_publish_order(three) -> None:
    _, (a, b, c) = three
    # u1's home is c and its device is on b: the path a -> c -> b.
    u1 = user_homed_on([a, b, c], c.node_id)
    u2 = user_homed_on([a, b, c], a.node_id)
    b.parts.presence.connected(u1, "d1")
    c.parts.presence.connected(u2, "d2")
    await eventually(lambda: a.parts.presence.is_online(u1) and a.parts.presence.is_online(u2))
    for n in range(1, 201):
        a.parts.router.publish(iter([u1, u2]), _event(n), skip_device="d9")
    await eventually(lambda: len(b.sockets.delivered) == 200 and len(c.sockets.delivered) == 200)
    assert b.sockets.events() == c.sockets.events() == [{"n": n} for n in range(1, 201)]
    assert {tuple(users) for users, _, _ in b.sockets.delivered} == {(u1,)}
    assert {tuple(users) for users, _, _ in c.sockets.delivered} == {(u2,)}
    assert {skip for _, _, skip in b.sockets.delivered} == {"d9"}
    assert a.sockets.delivered == []  # no socket of theirs there: nothing is broadcast


async def test_when_a_home_dies_its_users_move_and_what_it_held_is_resynced(three) -> None:
    cluster, (a, b, c) = three
    user = user_homed_on([a, b, c], c.node_id)
    b.parts.presence.connected(user, "phone")
    await eventually(lambda: a.parts.presence.is_online(user))
    await c.links.close()  # c stops taking frames: what a sends it waits in a's queue
    await eventually(lambda: a.parts.node.peers()[1]["state"] != "up")
    a.parts.router.publish([user], _event(1))
    cluster.set_status(c.node_id, "dead")
    # The frame for c is gone with it: the user's sockets (on b) are closed to resync.
    await eventually(lambda: any(i.kind == "users" for i in b.sockets.invalidations))
    lost = [i for i in b.sockets.invalidations if i.kind == "users"]
    assert lost[0].ids == (user,)
    # Its new home learnt where it is connected: events reach it again, and it is online.
    a.parts.router.publish([user], _event(2))
    await eventually(lambda: b.sockets.events() == [{"n": 2}])
    assert a.parts.presence.is_online(user) and b.parts.presence.is_online(user)


async def test_a_restarted_home_learns_again_where_its_users_are(three) -> None:
    cluster, nodes = three
    a, b, c = nodes
    user = user_homed_on(nodes, c.node_id)
    b.parts.presence.connected(user, "phone")
    gone = user_homed_on(nodes, a.node_id, prefix="gone")  # its socket was on c
    c.parts.presence.connected(gone, "tablet")
    await eventually(lambda: a.parts.presence.is_online(user) and b.parts.presence.is_online(gone))
    await c.parts.close()
    await c.links.close()
    # c comes back (same id, new boot and port) before gossip ever saw it dead.
    fresh = await join_bare(cluster, c.node_id)
    nodes[2] = fresh
    # b registers its socket with the new boot of c, which tells every node again.
    await eventually(lambda: fresh.parts.presence.is_online(user))
    a.parts.router.publish([user], _event(1))
    await eventually(lambda: b.sockets.events()[-1:] == [{"n": 1}])
    # The sockets c had before it restarted are gone, everywhere.
    await eventually(lambda: not a.parts.presence.is_online(gone))
    assert not b.parts.presence.is_online(gone)


async def test_a_chat_whose_owner_died_two_changes_ago_resyncs_before_its_next_event(
    three,
) -> None:
    """b owns the chat, dies, and c takes it over; then a dies too. c never routed
    the chat, and what b stored last may not have reached anyone: the first event
    c routes for it (seq 7) closes the users' sockets so they resync from storage
    instead of seeing 7 after a gap they cannot notice."""
    cluster, (a, b, c) = three
    everyone = [a.node_id, b.node_id, c.node_id]
    chat = next(
        f"chat-{i}"
        for i in range(10_000)
        if owner(f"chat-{i}", everyone) == b.node_id
        and owner(f"chat-{i}", [a.node_id, c.node_id]) == c.node_id
    )
    user = user_homed_on([a, b, c], c.node_id)  # homed on c whoever is alive
    c.parts.presence.connected(user, "phone")
    cluster.set_status(b.node_id, "dead")
    await eventually(lambda: c.parts.node.ring.nodes == (a.node_id, c.node_id))
    cluster.set_status(a.node_id, "dead")
    await eventually(lambda: c.parts.node.ring.nodes == (c.node_id,))

    c.parts.router.publish([user], Event("new_message", {"n": 7}, chat_id=chat, seq=7))
    assert [i.ids for i in c.sockets.invalidations if i.kind == "users"] == [(user,)]
    assert c.sockets.delivered == []
    # Routed once, the chat's next seq is in order again.
    c.parts.router.publish([user], Event("new_message", {"n": 8}, chat_id=chat, seq=8))
    assert c.sockets.events() == [{"n": 8}]
