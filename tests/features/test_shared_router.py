"""Two app instances sharing a store, a router and presence: nodes of one cluster.

In one process, a shared ``LocalRouter`` stands for the cluster router: live
events reach every instance's sockets, and an invalidation made on one
instance (a member removed) applies on the other at once.
"""

from __future__ import annotations

from typing import Any

import pytest

from chatd.app import build_app
from chatd.client import ChatdClient
from chatd.cluster.local import LocalRouter
from chatd.presence.local import LocalPresence
from tests.conftest import PASSWORD, merge, test_config


@pytest.fixture
async def nodes(aiohttp_server, tmp_path, server_overrides) -> tuple[str, str]:
    router, presence = LocalRouter(), LocalPresence()
    urls = []
    for name in ("a", "b"):
        overrides = merge(server_overrides, {"server": {"node_id": f"node-{name}"}})
        # One data directory: on SQLite both instances open the same file.
        app = build_app(test_config(tmp_path / "data", overrides), router=router, presence=presence)
        urls.append(str((await aiohttp_server(app)).make_url("")).rstrip("/"))
    return urls[0], urls[1]


async def _register(url: str, name: str) -> ChatdClient:
    client = ChatdClient(url)
    await client.register(name, PASSWORD)
    await client.login(name, PASSWORD)
    return client


async def test_live_messages_cross_instances_and_a_removal_applies_on_both(nodes):
    url_a, url_b = nodes
    alice = await _register(url_a, "alice")
    bob = await _register(url_b, "bob")
    carol = await _register(url_b, "carol")
    try:
        group = await alice.create_group("g", [bob.user_id, carol.user_id])
        chat_id = group["group_id"]
        async with alice.connect() as a_ws, bob.connect() as b_ws, carol.connect() as c_ws:
            # Live across instances, both ways; bob's send fills B's member cache.
            await a_ws.send_message(chat_id=chat_id, content="from a")
            await b_ws.send_message(chat_id=chat_id, content="from b")
            for ws, seqs in ((b_ws, [1, 2]), (c_ws, [1, 2, 3])):  # not bob's own send
                got = await ws.collect("new_message", len(seqs), timeout=10)
                assert [e["data"]["seq"] for e in got] == seqs
            await alice.remove_member(chat_id, carol.user_id)  # on instance A
            removal = await c_ws.next_event("new_message", timeout=10)
            assert removal["data"]["type"] == "system" and removal["data"]["seq"] == 4
            # Instance B must have forgotten carol at once: bob's next send skips her.
            await b_ws.send_message(chat_id=chat_id, content="after removal, via b")
            await a_ws.send_message(chat_id=chat_id, content="after removal, via a")
            sentinel = await b_ws.send_message(recipient_id=carol.user_id, content="sentinel")
            event = await c_ws.next_event("new_message", timeout=10)
            assert event["data"]["message_id"] == sentinel["message_id"], event
    finally:
        for client in (alice, bob, carol):
            await client.aclose()


async def test_presence_is_shared_between_instances(nodes):
    url_a, url_b = nodes
    alice = await _register(url_a, "alice")
    bob = await _register(url_b, "bob")
    try:
        await alice.open_direct(bob.user_id)
        async with alice.connect() as a_ws:
            assert (await bob.user_status(alice.user_id))["status"] == "online"  # asked on B
            async with bob.connect():
                event: Any = await a_ws.next_event("presence", timeout=10)
                assert event["data"]["user_id"] == bob.user_id
                assert event["data"]["status"] == "online"
    finally:
        await alice.aclose()
        await bob.aclose()
