"""A client that stops reading is disconnected; everyone else keeps getting messages."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import raw_ws


@pytest.fixture
def config_overrides():
    return {
        "server": {"send_queue_frames": 16},
        "limits": {"max_message_bytes": 60_000, "max_frame_bytes": 70_000},
    }


async def test_stuck_client_is_closed_and_others_are_not_slowed(user):
    alice, stuck, healthy = await user(), await user(), await user()
    group = await alice.request(
        "POST", "/groups", json={"name": "g", "member_ids": [stuck.user_id, healthy.user_id]}
    )
    big = "x" * 59_000
    async with raw_ws(stuck), healthy.connect() as ok_ws:  # the raw socket is never read
        await ok_ws.next_event("new_message")  # the group's creation notice
        assert (await alice.user_status(stuck.user_id))["status"] == "online"
        for i in range(400):  # ~24 MB: more than the socket buffers hold
            await alice.send_message(chat_id=group["group_id"], content=f"{i}{big}")
            if "chatd_slow_consumers_total 1.0" in await alice.metrics():
                break
        async with asyncio.timeout(5):  # the close handshake gives up after 2 s
            while (await alice.user_status(stuck.user_id))["status"] == "online":
                await asyncio.sleep(0.1)
        got = await ok_ws.collect("new_message", i + 1, timeout=20)
        assert [int(e["data"]["content"][: len(str(k))]) for k, e in enumerate(got)] == list(
            range(i + 1)
        )
    await asyncio.sleep(0)
