"""One client cannot make the server fan out without limit: typing and presence coalesce."""

from __future__ import annotations

import asyncio
import time

import pytest


@pytest.fixture
def config_overrides():
    return {"presence": {"typing_timeout_s": 30}}


async def test_a_typing_flood_reaches_each_member_once(user):
    alice = await user()
    members = [await user() for _ in range(20)]
    group = await alice.create_group("g", [m.user_id for m in members])
    chat_id = group["group_id"]
    async with alice.connect() as a_ws, members[0].connect() as watcher:
        await asyncio.gather(*(a_ws.typing(chat_id, True) for _ in range(500)))
        await a_ws.typing(chat_id, False)
        sentinel = await a_ws.send_message(chat_id=chat_id, content="sentinel")
        seen = []
        while True:
            event = await watcher.next_event(("typing_indicator", "new_message"), timeout=10)
            if event["type"] == "new_message" and event["data"]["seq"] == sentinel["seq"]:
                break
            if event["type"] == "typing_indicator":
                seen.append(event["data"]["is_typing"])
        assert seen == [True, False]
        started = time.monotonic()
        assert (await alice.health())["status"] == "ok"
        assert time.monotonic() - started < 1.0


async def test_presence_flapping_is_coalesced_and_ends_in_the_last_state(user):
    alice, bob = await user(), await user()
    await alice.add_contact(bob.user_id)
    async with alice.connect() as a_ws:
        for _ in range(15):
            async with bob.connect(reconnect=False):
                pass
        events = []
        async with asyncio.timeout(10):
            while True:
                event = await a_ws.next_event("presence", timeout=10)
                events.append(event["data"]["status"])
                if event["data"]["status"] == "offline" and len(events) > 1:
                    # the trailing state has arrived once nothing is pending
                    try:
                        more = await a_ws.next_event("presence", timeout=2.5)
                    except TimeoutError:
                        break
                    events.append(more["data"]["status"])
        assert events[-1] == "offline"
        assert len(events) <= 6, events  # 15 connects and 15 closes, not 30 events
