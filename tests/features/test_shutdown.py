"""SIGTERM: clients are told to reconnect, sockets close with 1012, writes in flight land."""

from __future__ import annotations

import asyncio
import signal

import pytest


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_graceful_shutdown_keeps_every_acked_message(chatd_process, process_user, sig):
    alice, bob = await process_user("alice"), await process_user("bob")
    async with alice.connect(reconnect=False) as ws:
        first = await ws.send_message(recipient_id=bob.user_id, content="0")
        chat_id = first["chat_id"]
        sends = [
            asyncio.create_task(ws.send_message(chat_id=chat_id, content=str(i), timeout=15))
            for i in range(1, 300)
        ]
        await sends[20]  # the rest are on the wire or being written when the signal comes
        chatd_process.kill(sig)
        frame = await ws.next_event("reconnect", timeout=10)
        assert frame["data"]["retry_after_ms"] > 0 and frame["data"]["reason"]
        async with asyncio.timeout(10):
            while not ws.closed:
                await asyncio.sleep(0.02)
        assert ws.close_code == 1012
        outcomes = await asyncio.gather(*sends, return_exceptions=True)
    assert await chatd_process.wait() == 0
    acked = [first, *(o for o in outcomes if isinstance(o, dict))]
    assert len(acked) > 21

    await chatd_process.start()
    stored, after = [], 0
    while True:  # bob's token outlives the restart
        page = await bob.messages(chat_id, after_seq=after, limit=100)
        stored += page["messages"]
        if page["next_cursor"] is None:
            break
        after = page["next_cursor"]
    by_id = {m["message_id"]: m for m in stored}
    lost = [a for a in acked if a["message_id"] not in by_id]
    assert lost == []
    assert all(by_id[a["message_id"]]["seq"] == a["seq"] for a in acked)
    assert [m["seq"] for m in stored] == list(range(1, len(stored) + 1))
    assert len({m["content"] for m in stored}) == len(stored)  # each send stored once at most
