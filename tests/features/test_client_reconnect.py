"""The client library rides out a server restart: reconnect, replay, re-send once."""

from __future__ import annotations

import asyncio
import signal

from chatd.client import ChatdClient
from tests.conftest import PASSWORD


async def test_reconnect_replays_missed_messages_and_resends_pending_ones(chatd_process):
    await chatd_process.start()
    url = chatd_process.url
    async with ChatdClient(url) as alice, ChatdClient(url) as bob:
        for client, name in ((alice, "alice"), (bob, "bob")):
            await client.register(name, PASSWORD)
            await client.login(name, PASSWORD)
        async with alice.connect() as a_ws, bob.connect() as b_ws:
            first = await a_ws.send_message(recipient_id=bob.user_id, content="before")
            assert (await b_ws.next_event("new_message"))["data"]["content"] == "before"
            await b_ws.ping()  # its delivery receipt has been processed

            chatd_process.kill(signal.SIGTERM)
            assert (await b_ws.next_event("reconnect", timeout=10))["type"] == "reconnect"
            await chatd_process.wait()
            # Sent while the server is down: the client holds it and re-sends it.
            pending = asyncio.create_task(
                a_ws.send_message(chat_id=first["chat_id"], content="during", timeout=30)
            )
            await asyncio.sleep(0.5)
            await chatd_process.start()
            during = await pending
            assert during["seq"] == 2
            got = await b_ws.next_event("new_message", timeout=15)
            assert got["data"]["content"] == "during"
            assert a_ws.reconnects >= 1 and b_ws.reconnects >= 1
            later = [e for e in await b_ws.drain(quiet=0.5) if e["type"] == "new_message"]
            assert later == []  # "before" was acknowledged: not replayed
        history = await bob.messages(first["chat_id"], after_seq=0)
        assert [m["content"] for m in history["messages"]] == ["before", "during"]
