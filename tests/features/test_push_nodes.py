"""Push notifications across nodes: target changes seen by every node at once, a
device online on any node gets no push, and connecting to any node cancels what
waits for it.

Two kinds of nodes: app instances sharing one store, router and presence (a
``LocalRouter``, as in test_shared_router.py), and the in-process cluster
(``tests/cluster/nodes.py``: a ``ClusterRouter`` over real links, chat owners
running each chat's writes and its notify step).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from chatd.app import build_app
from chatd.client import ChatdClient
from chatd.cluster.local import LocalRouter
from chatd.gateway.context import SERVICES, Services
from chatd.presence.local import LocalPresence
from tests.cluster.nodes import Node, start_nodes, stop_nodes
from tests.conftest import PASSWORD, fast_push, merge, test_config
from tests.webhook_receiver import WebhookReceiver


@pytest.fixture
def config_overrides(hook: WebhookReceiver) -> dict[str, Any]:
    return fast_push(hook, max_attempts=3)


@pytest.fixture
async def clients() -> AsyncIterator[Callable[..., Any]]:
    """``await clients(url, name)``: a registered, signed-in client of that node."""
    made: list[ChatdClient] = []

    async def make(url: str, name: str) -> ChatdClient:
        client = ChatdClient(url)
        made.append(client)
        await client.register(name, PASSWORD)
        await client.login(name, PASSWORD)
        return client

    yield make
    for client in made:
        await client.aclose()


@pytest.fixture
async def shared(aiohttp_server, tmp_path, server_overrides) -> list[tuple[str, Services]]:
    """Two instances on one store sharing a router and presence: (url, services) each."""
    router, presence = LocalRouter(), LocalPresence()
    nodes = []
    for name in ("a", "b"):
        overrides = merge(server_overrides, {"server": {"node_id": f"node-{name}"}})
        app = build_app(test_config(tmp_path / "data", overrides), router=router, presence=presence)
        server = await aiohttp_server(app)
        nodes.append((str(server.make_url("")).rstrip("/"), app[SERVICES]))
    return nodes


@pytest.fixture
async def cluster(aiohttp_server, tmp_path, server_overrides) -> AsyncIterator[list[Node]]:
    _, nodes = await start_nodes(aiohttp_server, tmp_path / "data", server_overrides, count=2)
    try:
        yield nodes
    finally:
        await stop_nodes(nodes)


async def quiet(hook: WebhookReceiver, seconds: float = 0.8) -> int:
    """How many requests arrived by now, after letting anything in flight land."""
    await asyncio.sleep(seconds)
    return len(hook.received)


async def until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``check()`` holds (a cluster's presence travels between nodes)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def same_device(client: ChatdClient, node: Node) -> ChatdClient:
    """The client's device (its token) talking to ``node``."""
    there = ChatdClient(node.url, token=client.token)
    there.user_id, there.device_id = client.user_id, client.device_id
    return there


def services(node: Node) -> Services:
    return node.app[SERVICES]  # type: ignore[no-any-return]


async def direct_across(
    cluster: list[Node], clients: Callable[..., Any]
) -> tuple[ChatdClient, ChatdClient, str, Node, Node]:
    """Alice and Bob signed in on the first node, their direct chat, the node that
    owns it (whose notify step decides) and the other node."""
    alice = await clients(cluster[0].url, "alice")
    bob = await clients(cluster[0].url, "bob")
    chat_id = str((await alice.open_direct(bob.user_id))["chat_id"])
    owner = next(n for n in cluster if n.node_id == cluster[0].parts.owners.owner(chat_id))
    elsewhere = next(n for n in cluster if n is not owner)
    return alice, bob, chat_id, owner, elsewhere


# -- target changes reach every node's cache at once --------------------------------------


async def test_a_target_registered_on_one_instance_is_used_by_the_other_at_once(
    shared, clients, hook
):
    (url_a, _), (url_b, _) = shared
    alice = await clients(url_b, "alice")  # her sends run the notify step on B
    bob = await clients(url_a, "bob")  # his target changes go through A
    await alice.send_message(recipient_id=bob.user_id, content="before")  # B caches: none
    assert await quiet(hook) == 0

    await bob.set_push(bob.device_id, "webhook", token="t1")
    await alice.send_message(recipient_id=bob.user_id, content="after")
    # Well within the cache's 10 s: B heard of the change from A.
    (received,) = await hook.wait_for(1, timeout=3)
    assert received["device_id"] == bob.device_id and received["token"] == "t1"

    await bob.delete_push(bob.device_id)
    await bob.set_push(bob.device_id, "webhook", token="t2")
    await alice.send_message(recipient_id=bob.user_id, content="changed")
    received = await hook.wait_for(2, timeout=3)
    assert received[1]["token"] == "t2"
    await bob.delete_push(bob.device_id)
    await alice.send_message(recipient_id=bob.user_id, content="deleted")
    assert await quiet(hook) == 2


async def test_a_target_registered_on_one_cluster_node_is_used_by_the_chat_owner_at_once(
    cluster, clients, hook
):
    alice, bob, chat_id, _, elsewhere = await direct_across(cluster, clients)
    bob_elsewhere = same_device(bob, elsewhere)
    try:
        await alice.send_message(chat_id=chat_id, content="before")  # the owner caches: none
        assert await quiet(hook) == 0
        await bob_elsewhere.set_push(bob.device_id, "webhook", token="t")  # not on the owner
        await alice.send_message(chat_id=chat_id, content="after")
        (received,) = await hook.wait_for(1, timeout=3)
        assert received["device_id"] == bob.device_id
    finally:
        await bob_elsewhere.aclose()


# -- who is online, cluster-wide -----------------------------------------------------------


async def test_a_device_connected_to_another_cluster_node_gets_no_push(cluster, clients, hook):
    alice, bob, chat_id, owner, elsewhere = await direct_across(cluster, clients)
    await bob.set_push(bob.device_id, "webhook", token="t")
    bob_there = same_device(bob, elsewhere)
    try:
        async with bob_there.connect() as bob_ws:
            # The owner (whose notify step decides) learns it from the other node.
            await until(lambda: services(owner).presence_state.device_online(bob.device_id))
            await alice.send_message(chat_id=chat_id, content="live")
            await bob_ws.next_event("new_message", timeout=10)
            assert await quiet(hook) == 0
        await until(lambda: not services(owner).presence_state.device_online(bob.device_id))
        sent = await alice.send_message(chat_id=chat_id, content="offline now")
        (received,) = await hook.wait_for(1)
        assert received["notification"]["message_id"] == sent["message_id"]
    finally:
        await bob_there.aclose()


async def test_connecting_to_a_node_other_than_the_owner_cancels_what_waits(cluster, clients, hook):
    alice, bob, chat_id, owner, elsewhere = await direct_across(cluster, clients)
    await bob.set_push(bob.device_id, "webhook", token="t")
    hook.answers = [(503, "4")]  # the first try fails: the item waits 4 s in the outbox
    await alice.send_message(chat_id=chat_id, content="hello")  # enqueued by the owner
    await hook.wait_for(1)
    bob_there = same_device(bob, elsewhere)
    try:
        async with bob_there.connect() as bob_ws:
            await bob_ws.next_event("new_message", timeout=10)  # the replay
            storage = services(owner).storage.push
            for _ in range(20):  # within a second: long before the retry is due
                if await storage.depth() == 0:
                    break
                await asyncio.sleep(0.05)
            assert await storage.depth() == 0
    finally:
        await bob_there.aclose()
    # bob is offline again before the retry was due: cancelled, it is never sent.
    assert await quiet(hook, 4.5) == 1
