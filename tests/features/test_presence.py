"""Presence (online, offline, last seen) and typing indicators."""

from __future__ import annotations

import asyncio

import pytest


@pytest.fixture
def config_overrides():
    return {"presence": {"typing_timeout_s": 0.5}}


async def test_presence_goes_to_direct_chat_peers(user):
    alice, bob = await user(), await user()
    await alice.send_message(recipient_id=bob.user_id, content="hi")
    async with alice.connect() as a_ws:
        async with bob.connect():
            online = (await a_ws.next_event("presence"))["data"]
            assert (online["user_id"], online["status"]) == (bob.user_id, "online")
            assert (await alice.user_status(bob.user_id))["status"] == "online"
        offline = (await a_ws.next_event("presence"))["data"]
        assert (offline["user_id"], offline["status"]) == (bob.user_id, "offline")
        assert offline["last_seen"].endswith("Z")
    status = await alice.user_status(bob.user_id)
    assert status == {
        "user_id": bob.user_id,
        "status": "offline",
        "last_seen": offline["last_seen"],
    }


async def test_presence_goes_to_users_with_the_subject_as_contact(user):
    alice, bob, stranger = await user(), await user(), await user()
    await alice.add_contact(bob.user_id)
    async with alice.connect() as a_ws, stranger.connect() as s_ws:
        async with bob.connect():
            assert (await a_ws.next_event("presence"))["data"]["user_id"] == bob.user_id
        await a_ws.next_event("presence")
        assert [e for e in await s_ws.drain() if e["type"] == "presence"] == []


async def test_online_while_any_device_is_connected(user, device):
    alice, bob = await user(), await user()
    bob_phone = await device(bob)
    await alice.send_message(recipient_id=bob.user_id, content="hi")
    async with alice.connect() as a_ws:
        async with bob.connect():
            await a_ws.next_event("presence")
            async with bob_phone.connect():
                pass
            assert (await alice.user_status(bob.user_id))["status"] == "online"
            assert [e for e in await a_ws.drain() if e["type"] == "presence"] == []
        assert (await a_ws.next_event("presence"))["data"]["status"] == "offline"


async def test_typing_reaches_the_peer_and_expires(user):
    alice, bob = await user(), await user()
    chat = await alice.send_message(recipient_id=bob.user_id, content="hi")
    async with alice.connect() as a_ws, bob.connect() as b_ws:
        await a_ws.typing(chat["chat_id"], True)
        on = (await b_ws.next_event("typing_indicator"))["data"]
        assert on == {"chat_id": chat["chat_id"], "user_id": alice.user_id, "is_typing": True}
        off = (await b_ws.next_event("typing_indicator", timeout=3))["data"]
        assert off["is_typing"] is False  # expired by itself
        await a_ws.typing(chat["chat_id"], True)
        await b_ws.next_event("typing_indicator")
        await a_ws.typing(chat["chat_id"], False)
        assert (await b_ws.next_event("typing_indicator"))["data"]["is_typing"] is False
        await asyncio.sleep(0.7)  # no second "false" after an explicit stop
        assert [e for e in await b_ws.drain() if e["type"] == "typing_indicator"] == []
        assert [e for e in await a_ws.drain() if e["type"] == "typing_indicator"] == []


@pytest.mark.parametrize("config_overrides", [{"presence": {"typing_timeout_s": 3.0}}], ids=["3s"])
async def test_typing_is_refreshed_by_repeats_without_repeating_the_event(user):
    alice, bob = await user(), await user()
    chat = await alice.send_message(recipient_id=bob.user_id, content="hi")
    clock = asyncio.get_running_loop().time

    async def shown() -> bool:
        return (await b_ws.next_event("typing_indicator", timeout=10))["data"]["is_typing"]

    async with alice.connect() as a_ws, bob.connect() as b_ws:
        await a_ws.typing(chat["chat_id"], True)
        assert await shown() is True
        await asyncio.sleep(1.0)  # a third of the timeout: the indicator is still showing
        repeated = clock()
        await a_ws.typing(chat["chat_id"], True)  # extends the timer, not fanned out again
        assert await shown() is False
        # Timed from before the repeat was sent, so this bound holds on any machine;
        # without the refresh the first one would have expired a second earlier.
        assert clock() - repeated >= 3.0
