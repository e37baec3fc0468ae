"""The client library rides out a server restart: reconnect, replay, re-send once."""

from __future__ import annotations

import asyncio
import signal


async def test_reconnect_replays_missed_messages_and_resends_pending_ones(
    chatd_process, process_user
):
    alice, bob = await process_user("alice"), await process_user("bob")
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
        # A sentinel: live messages wait for the replay, so once it is here any
        # replay of "before" (acknowledged, so it must not come) would be too.
        await a_ws.send_message(chat_id=first["chat_id"], content="sentinel")
        later = await b_ws.collect("new_message", 1, timeout=15)
        assert [e["data"]["content"] for e in later] == ["sentinel"]
    history = await bob.messages(first["chat_id"], after_seq=0)
    assert [m["content"] for m in history["messages"]] == ["before", "during", "sentinel"]
