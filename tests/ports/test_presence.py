"""Presence contract: sockets counted per user and device, last seen, typing timers."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import pytest

from chatd.cluster.node import ClusterNode
from chatd.cluster.presence import ClusterPresence
from chatd.cluster.seal import Keyring, Sealer
from chatd.cluster.streams import StreamServer
from chatd.core.ports.presence import Presence
from chatd.presence.local import LocalPresence
from tests.cluster.fixed_membership import FixedCluster


def cluster_of_one() -> Presence:
    """``ClusterPresence`` on a node alone in its cluster: it is every user's home.
    Several nodes: tests/cluster/test_cluster_presence.py."""
    sealer = Sealer(Keyring((os.urandom(32),)))
    return ClusterPresence(ClusterNode(FixedCluster().view("solo"), sealer, StreamServer(sealer)))


IMPLEMENTATIONS: dict[str, Callable[[], Presence]] = {
    "local": LocalPresence,
    "cluster": cluster_of_one,
}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def presence(request: pytest.FixtureRequest) -> Presence:
    return IMPLEMENTATIONS[request.param]()


def test_online_from_the_first_socket_to_the_last(presence: Presence) -> None:
    assert presence.connected("alice", "phone") is True
    assert presence.connected("alice", "phone") is False  # a second socket, same device
    assert presence.connected("alice", "laptop") is False
    assert presence.is_online("alice") and presence.device_online("laptop")
    assert presence.disconnected("alice", "laptop", 1000) is False
    assert not presence.device_online("laptop") and presence.device_online("phone")
    assert presence.disconnected("alice", "phone", 2000) is False
    assert presence.last_seen("alice") is None  # still online on one socket
    assert presence.disconnected("alice", "phone", 3000) is True
    assert not presence.is_online("alice") and not presence.device_online("phone")
    assert presence.last_seen("alice") == 3000


def test_online_users_filters_in_input_order(presence: Presence) -> None:
    for user in ("carol", "alice"):
        presence.connected(user, f"{user}-d")
    assert presence.online_users(["alice", "bob", "carol"]) == ["alice", "carol"]
    assert presence.online_users(iter(["carol", "dave"])) == ["carol"]


def test_a_close_without_an_open_changes_nothing(presence: Presence) -> None:
    assert presence.disconnected("ghost", "d", 5) is False
    assert not presence.is_online("ghost") and presence.last_seen("ghost") is None
    assert presence.connected("ghost", "d") is True


async def test_typing_expires_once_unless_refreshed(presence: Presence) -> None:
    expired: list[str] = []
    done = asyncio.Event()

    def on_expiry(name: str) -> Callable[[], None]:
        def fire() -> None:
            expired.append(name)
            if name == "barrier":
                done.set()

        return fire

    assert presence.start_typing("chat", "alice", 0.05, on_expiry("first")) is True
    # A refresh replaces the timer: the first one must never fire.
    assert presence.start_typing("chat", "alice", 30, on_expiry("refreshed")) is False
    assert presence.start_typing("chat", "bob", 0.2, on_expiry("barrier")) is True
    async with asyncio.timeout(10):
        await done.wait()
    assert expired == ["barrier"]  # timers fire in deadline order: "first" would be here
    assert presence.typing_chats("alice") == ["chat"] and presence.typing_chats("bob") == []
    presence.close()


async def test_stop_typing_cancels_the_timer(presence: Presence) -> None:
    expired: list[str] = []
    done = asyncio.Event()
    presence.start_typing("chat", "alice", 0.05, lambda: expired.append("alice"))
    assert presence.stop_typing("chat", "alice") is True
    assert presence.stop_typing("chat", "alice") is False  # nothing shown any more
    presence.start_typing("other", "bob", 0.1, done.set)
    async with asyncio.timeout(10):
        await done.wait()
    assert expired == [] and presence.typing_chats("alice") == []
    presence.close()


async def test_close_cancels_every_timer(presence: Presence) -> None:
    expired: list[str] = []
    presence.start_typing("chat", "alice", 0.01, lambda: expired.append("alice"))
    presence.close()
    await asyncio.sleep(0.05)  # past the deadline: a live timer would have fired
    assert expired == [] and presence.typing_chats("alice") == []
