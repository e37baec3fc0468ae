"""Presence over three real nodes: the home decides, every node answers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.cluster.bare import BareNode, bare_cluster, eventually, stop_bare, user_homed_on
from tests.cluster.fixed_membership import FixedCluster


@pytest.fixture
async def three() -> AsyncIterator[tuple[FixedCluster, list[BareNode]]]:
    cluster, nodes = await bare_cluster(3)
    try:
        yield cluster, nodes
    finally:
        await stop_bare(nodes)


async def test_a_user_is_online_everywhere_and_its_home_reports_each_change_once(three) -> None:
    _, nodes = three
    a, b, c = nodes
    user = user_homed_on(nodes, c.node_id)
    changes: list[tuple[str, str, bool]] = []
    for node in nodes:
        node.parts.presence.watch(
            lambda u, online, _at, at_node=node.node_id: changes.append((at_node, u, online))
        )
    assert a.parts.presence.connected(user, "phone") is False  # its home is c
    assert b.parts.presence.connected(user, "laptop") is False
    everyone = [n.parts.presence for n in nodes]
    await eventually(lambda: all(p.sockets(user) == 2 for p in everyone))
    assert all(p.is_online(user) and p.device_online("laptop") for p in everyone)
    assert all(p.online_users(["nobody", user]) == [user] for p in everyone)
    assert changes == [(c.node_id, user, True)]

    a.parts.presence.disconnected(user, "phone", 1000)
    await eventually(lambda: all(not p.device_online("phone") for p in everyone))
    assert all(p.is_online(user) for p in everyone)
    b.parts.presence.disconnected(user, "laptop", 2000)
    await eventually(lambda: all(not p.is_online(user) for p in everyone))
    assert all(p.last_seen(user) == 2000 for p in everyone)
    assert changes == [(c.node_id, user, True), (c.node_id, user, False)]


async def test_the_home_itself_answers_connected_like_a_single_node(three) -> None:
    _, nodes = three
    a = nodes[0]
    user = user_homed_on(nodes, a.node_id)
    assert a.parts.presence.connected(user, "d") is True
    assert a.parts.presence.connected(user, "d") is False
    assert a.parts.presence.disconnected(user, "d", 5) is False
    assert a.parts.presence.disconnected(user, "d", 6) is True


async def test_users_stay_online_when_their_home_dies_and_go_offline_with_their_node(
    three,
) -> None:
    cluster, nodes = three
    a, b, c = nodes
    homed_on_c = user_homed_on(nodes, c.node_id)
    on_c = user_homed_on(nodes, a.node_id, prefix="other")
    b.parts.presence.connected(homed_on_c, "phone")  # home c, socket on b
    c.parts.presence.connected(on_c, "tablet")  # home a, socket on c
    await eventually(lambda: a.parts.presence.is_online(homed_on_c))
    await eventually(lambda: b.parts.presence.is_online(on_c))
    offline: list[str] = []
    a.parts.presence.watch(lambda u, online, _at: None if online else offline.append(u))
    cluster.set_status(c.node_id, "dead")
    # b registers its user with the new home, which tells everyone again.
    await eventually(
        lambda: a.parts.presence.is_online(homed_on_c) and b.parts.presence.is_online(homed_on_c)
    )
    # The user connected only on the dead node is offline, announced by its home (a).
    await eventually(lambda: not b.parts.presence.is_online(on_c))
    assert offline == [on_c]
