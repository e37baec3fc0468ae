"""Two chatd nodes on one ScyllaDB keyspace: storage is shared safely.

Live delivery between nodes needs gossip (not built), so these tests check
what sharing the keyspace promises: one account base, one gap-free seq per
chat whichever node numbers a message, idempotency across nodes.
"""

from __future__ import annotations

import asyncio

import pytest

from chatd.app import build_app
from chatd.client import ChatdClient
from tests.conftest import PASSWORD, test_config


@pytest.fixture
async def node_b(aiohttp_server, tmp_path, server_overrides, server_storage, server):
    if server_storage != "scylla":
        pytest.skip("several nodes share a ScyllaDB keyspace, not an SQLite file")
    app = build_app(test_config(tmp_path / "node-b", server_overrides))
    return str((await aiohttp_server(app)).make_url("")).rstrip("/")


async def test_both_nodes_send_into_one_chat_and_history_is_gap_free(user, node_b):
    alice, bob = await user(), await user()
    async with ChatdClient(node_b) as bob_on_b:
        await bob_on_b.login(bob.username, PASSWORD)  # one account base
        chat = await alice.open_direct(bob.user_id)
        per_side = 40

        async def send(client, tag: str) -> list[int]:
            seqs = []
            for i in range(per_side):
                sent = await client.send_message(
                    chat_id=chat["chat_id"], content=f"{tag}{i}", client_msg_id=f"{tag}-{i}"
                )
                seqs.append(sent["seq"])
            return seqs

        from_a, from_b = await asyncio.gather(send(alice, "a"), send(bob_on_b, "b"))
        assert sorted(from_a + from_b) == list(range(1, 2 * per_side + 1))
        for reader in (alice, bob_on_b):
            history = (await reader.messages(chat["chat_id"], limit=100))["messages"]
            assert sorted(m["seq"] for m in history) == list(range(1, 2 * per_side + 1))
            assert len({m["message_id"] for m in history}) == 2 * per_side
        # A retry on the other node returns the first answer and stores nothing.
        again = await bob.send_message(chat_id=chat["chat_id"], content="b0", client_msg_id="b-0")
        assert again["seq"] == from_b[0]
        assert len((await alice.messages(chat["chat_id"], limit=100))["messages"]) == 2 * per_side


async def test_a_message_sent_on_one_node_is_replayed_on_the_other(user, node_b):
    alice, bob = await user(), await user()
    sent = await alice.send_message(recipient_id=bob.user_id, content="hi", client_msg_id="m1")
    async with ChatdClient(node_b) as bob_on_b:
        await bob_on_b.login(bob.username, PASSWORD)
        async with bob_on_b.connect() as ws:
            message = await ws.next_event("new_message")
            assert message["data"]["message_id"] == sent["message_id"]
