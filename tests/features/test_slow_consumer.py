"""A client that stops reading is disconnected; everyone else keeps getting messages."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from tests.conftest import raw_ws
from tests.prometheus import scrape


@pytest.fixture
def config_overrides():
    return {
        "server": {"send_queue_frames": 16},
        "limits": {"max_message_bytes": 60_000, "max_frame_bytes": 70_000},
    }


async def test_stuck_client_is_closed_with_1013_and_others_are_not_slowed(user):
    alice, stuck, healthy = await user(), await user(), await user()
    group = await alice.request(
        "POST", "/groups", json={"name": "g", "member_ids": [stuck.user_id, healthy.user_id]}
    )
    big = "x" * 59_000
    # The raw socket is not read until the stuck client has been cut off.
    async with raw_ws(stuck) as never_reads, healthy.connect() as ok_ws:
        await ok_ws.next_event("new_message")  # the group's creation notice
        assert (await alice.user_status(stuck.user_id))["status"] == "online"
        before = await scrape(alice)
        # Lockstep: each message must reach the healthy socket before the next is
        # sent, so a fan-out that waited on the stuck socket would stall right here.
        for i in range(400):  # ~24 MB: more than the socket buffers hold
            await alice.send_message(chat_id=group["group_id"], content=f"{i} {big}")
            got = await ok_ws.next_event("new_message", timeout=10)
            assert got["data"]["content"].split(" ")[0] == str(i)
            if (await scrape(alice)).since(before, "chatd_slow_consumers_total") == 1:
                break
        else:
            pytest.fail("the stuck client was never cut off")
        assert i >= 16  # it held a full send queue (16 frames) while the other kept up
        # It reads again: what was buffered, then the close frame with its code.
        async with asyncio.timeout(30):
            while (msg := await never_reads.receive()).type is aiohttp.WSMsgType.TEXT:
                pass
        assert msg.type is aiohttp.WSMsgType.CLOSE
        assert never_reads.close_code == 1013
        async with asyncio.timeout(10):  # the server cleaned the session up: offline
            while (await alice.user_status(stuck.user_id))["status"] == "online":
                await asyncio.sleep(0.05)
        await alice.send_message(chat_id=group["group_id"], content="after")
        assert (await ok_ws.next_event("new_message"))["data"]["content"] == "after"
