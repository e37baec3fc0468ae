"""Nothing acknowledged is lost: kill -9 right after the acks, and everything is there."""

from __future__ import annotations

import asyncio

from chatd.client import ChatdClient
from tests.conftest import PASSWORD


async def test_acked_messages_survive_sigkill(chatd_process, process_user):
    alice, bob = await process_user("alice"), await process_user("bob")
    async with alice.connect(reconnect=False) as ws:
        first = await ws.send_message(recipient_id=bob.user_id, content="0")
        rest = await asyncio.gather(
            *(ws.send_message(chat_id=first["chat_id"], content=str(i)) for i in range(1, 300))
        )
        acks = [first, *rest]
        chatd_process.kill()  # SIGKILL: no shutdown, no flush
    assert await chatd_process.wait() == -9

    await chatd_process.start()
    async with ChatdClient(chatd_process.url) as bob:
        await bob.login("bob", PASSWORD)  # tokens are durable, but this is a new device
        stored, after = [], 0
        while True:
            page = await bob.messages(first["chat_id"], after_seq=after, limit=100)
            stored += page["messages"]
            if page["next_cursor"] is None:
                break
            after = page["next_cursor"]
    assert [m["seq"] for m in stored] == list(range(1, 301))
    assert sorted(m["message_id"] for m in stored) == sorted(a["message_id"] for a in acks)
    assert [m["content"] for m in stored] == [str(i) for i in range(300)]


async def test_tokens_survive_a_restart(chatd_process, process_user):
    alice = await process_user("alice")
    chatd_process.kill()
    await chatd_process.wait()
    await chatd_process.start()
    assert (await alice.me())["username"] == "alice"
