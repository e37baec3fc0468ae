"""A history replay that storage cannot serve closes the socket with 1011."""

from __future__ import annotations

import asyncio

from chatd.core.errors import ChatdError
from chatd.gateway.context import SERVICES


async def test_replay_that_cannot_be_loaded_closes_with_1011(user, server, monkeypatch):
    alice, bob = await user(), await user()
    ack = await alice.send_message(recipient_id=bob.user_id, content="waiting for bob")
    receipts = server.app[SERVICES].storage.receipts

    async def storage_down(user_id: str, device_id: str):
        # What the storage adapters raise when the database does not answer.
        raise ChatdError("unavailable", "storage is unavailable")

    monkeypatch.setattr(receipts, "pending", storage_down)
    async with bob.connect(reconnect=False) as ws:
        async with asyncio.timeout(10):
            while not ws.closed:
                await asyncio.sleep(0.02)
        assert ws.close_code == 1011
    monkeypatch.undo()  # storage answers again: the reconnect gets the replay
    async with bob.connect() as ws:
        got = await ws.next_event("new_message")
        assert got["data"]["message_id"] == ack["message_id"]
