"""Offline devices catch up on reconnect: everything unacknowledged, in order, once."""

from __future__ import annotations

from tests.conftest import before_sentinel


async def test_offline_recipient_gets_messages_in_order_on_connect(user):
    alice, bob = await user(), await user()
    acks = [await alice.send_message(recipient_id=bob.user_id, content=f"m{i}") for i in range(5)]
    async with bob.connect(auto_delivery_receipts=False) as b_ws:
        got = await b_ws.collect("new_message", 5)
        assert [e["data"]["seq"] for e in got] == [1, 2, 3, 4, 5]
        assert [e["data"]["message_id"] for e in got] == [a["message_id"] for a in acks]
        assert await before_sentinel(b_ws, alice, recipient_id=bob.user_id) == []


async def test_unacknowledged_messages_are_replayed_until_receipted(user):
    alice, bob = await user(), await user()
    for i in range(3):
        await alice.send_message(recipient_id=bob.user_id, content=f"m{i}")
    async with bob.connect(auto_delivery_receipts=False) as b_ws:
        got = await b_ws.collect("new_message", 3)
    # No receipt was sent: the same messages come again.
    async with bob.connect(auto_delivery_receipts=False) as b_ws:
        again = await b_ws.collect("new_message", 3)
        assert [e["data"]["seq"] for e in again] == [1, 2, 3]
        last = again[1]["data"]  # acknowledge up to seq 2 only
        await b_ws.delivery_receipt(last["chat_id"], last["message_id"])
        await b_ws.ping()
    async with bob.connect(auto_delivery_receipts=False) as b_ws:
        rest = await b_ws.collect("new_message", 1)
        assert rest[0]["data"]["seq"] == 3
        assert await before_sentinel(b_ws, alice, recipient_id=bob.user_id) == []
    assert got[0]["data"]["content"] == "m0"


async def test_receipted_messages_are_not_sent_again(user):
    alice, bob = await user(), await user()
    for i in range(4):
        await alice.send_message(recipient_id=bob.user_id, content=f"m{i}")
    async with bob.connect() as b_ws:  # the client acknowledges what it receives
        await b_ws.collect("new_message", 4)
        await b_ws.ping()
        await b_ws.drain()
    async with bob.connect() as b_ws:
        assert await before_sentinel(b_ws, alice, recipient_id=bob.user_id) == []


async def test_messages_sent_during_replay_arrive_after_it_in_order(user):
    alice, bob = await user(), await user()
    first = await alice.send_message(recipient_id=bob.user_id, content="0")
    for i in range(1, 300):
        await alice.send_message(chat_id=first["chat_id"], content=str(i))
    async with alice.connect() as a_ws, bob.connect(auto_delivery_receipts=False) as b_ws:
        for i in range(300, 320):
            await a_ws.send_message(chat_id=first["chat_id"], content=str(i))
        got = await b_ws.collect("new_message", 320, timeout=20)
        assert [e["data"]["seq"] for e in got] == list(range(1, 321))
        assert await before_sentinel(b_ws, alice, chat_id=first["chat_id"]) == []


async def test_each_device_has_its_own_watermark(user, device):
    alice, bob = await user(), await user()
    bob_phone = await device(bob)
    await alice.send_message(recipient_id=bob.user_id, content="for both devices")
    async with bob.connect() as laptop:
        await laptop.collect("new_message", 1)
        await laptop.ping()
    async with bob_phone.connect() as phone:
        got = await phone.collect("new_message", 1)
        assert got[0]["data"]["content"] == "for both devices"


async def test_sending_device_is_not_sent_its_own_messages_again(user):
    alice, bob = await user(), await user()
    async with alice.connect() as a_ws:
        await a_ws.send_message(recipient_id=bob.user_id, content="mine")
    async with alice.connect() as a_ws:
        assert await before_sentinel(a_ws, bob, recipient_id=alice.user_id) == []
