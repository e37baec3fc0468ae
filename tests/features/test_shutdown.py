"""SIGTERM: clients are told to reconnect, sockets close with 1012, pending writes land."""

from __future__ import annotations

import asyncio
import signal

import pytest

from chatd.client import ChatdClient
from tests.conftest import PASSWORD


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_graceful_shutdown(chatd_process, sig):
    await chatd_process.start()
    async with ChatdClient(chatd_process.url) as alice, ChatdClient(chatd_process.url) as bob:
        for client, name in ((alice, "alice"), (bob, "bob")):
            await client.register(name, PASSWORD)
            await client.login(name, PASSWORD)
        async with alice.connect(reconnect=False) as ws:
            ack = await ws.send_message(recipient_id=bob.user_id, content="before shutdown")
            chatd_process.kill(sig)
            frame = await ws.next_event("reconnect", timeout=10)
            assert frame["data"]["retry_after_ms"] > 0 and frame["data"]["reason"]
            async with asyncio.timeout(10):
                while not ws.closed:
                    await asyncio.sleep(0.02)
            assert ws.close_code == 1012
        assert await chatd_process.wait() == 0
        await chatd_process.start()
        page = await bob.messages(ack["chat_id"])
        assert [m["content"] for m in page["messages"]] == ["before shutdown"]
