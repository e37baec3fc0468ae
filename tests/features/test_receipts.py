"""Delivery and read receipts: watermarks forwarded to senders, status in history."""

from __future__ import annotations

import pytest

from chatd.client import ApiError


async def test_delivery_and_read_receipts_reach_the_sender(user):
    alice, bob = await user(), await user()
    async with alice.connect() as a_ws, bob.connect(auto_delivery_receipts=False) as b_ws:
        ack = await a_ws.send_message(recipient_id=bob.user_id, content="did you get it?")
        msg = (await b_ws.next_event("new_message"))["data"]
        await b_ws.delivery_receipt(msg["chat_id"], msg["message_id"])
        delivered = (await a_ws.next_event("message_delivered"))["data"]
        assert delivered["chat_id"] == ack["chat_id"]
        assert delivered["message_id"] == ack["message_id"]
        assert delivered["seq"] == 1 and delivered["user_id"] == bob.user_id
        assert delivered["delivered_at"].endswith("Z")

        await b_ws.read_receipt(msg["chat_id"], msg["message_id"])
        read = (await a_ws.next_event("message_read"))["data"]
        assert (read["seq"], read["user_id"]) == (1, bob.user_id)
        assert read["read_at"].endswith("Z")


async def test_status_in_history_follows_the_watermarks(user):
    alice, bob = await user(), await user()
    acks = [await alice.send_message(recipient_id=bob.user_id, content=f"m{i}") for i in range(3)]
    chat_id = acks[0]["chat_id"]

    async def statuses():
        page = await alice.messages(chat_id, after_seq=0)
        return [m["status"] for m in page["messages"]]

    assert await statuses() == ["sent", "sent", "sent"]
    async with bob.connect(auto_delivery_receipts=False) as b_ws:
        await b_ws.collect("new_message", 3)
        await b_ws.delivery_receipt(chat_id, acks[1]["message_id"])
        assert await statuses() == ["delivered", "delivered", "sent"]
        await b_ws.read_receipt(chat_id, acks[0]["message_id"])
        assert await statuses() == ["read", "delivered", "sent"]


async def test_a_lower_watermark_changes_nothing(user):
    alice, bob = await user(), await user()
    acks = [await alice.send_message(recipient_id=bob.user_id, content=f"m{i}") for i in range(3)]
    chat_id = acks[0]["chat_id"]
    async with alice.connect() as a_ws, bob.connect(auto_delivery_receipts=False) as b_ws:
        await b_ws.collect("new_message", 3)
        await b_ws.read_receipt(chat_id, acks[2]["message_id"])
        assert (await a_ws.next_event("message_read"))["data"]["seq"] == 3
        # Reading implies having: the delivered watermark rose with it.
        assert (await a_ws.next_event("message_delivered"))["data"]["seq"] == 3
        await b_ws.read_receipt(chat_id, acks[0]["message_id"])
        await b_ws.delivery_receipt(chat_id, acks[1]["message_id"])
        later = await a_ws.drain()
        assert [e for e in later if e["type"] in ("message_read", "message_delivered")] == []
    chat = next(c for c in await bob.chats() if c["chat_id"] == chat_id)
    assert chat["read_seq"] == 3 and chat["delivered_seq"] == 3


async def test_read_receipt_reaches_the_readers_other_devices(user, device):
    alice, bob = await user(), await user()
    bob_phone = await device(bob)
    ack = await alice.send_message(recipient_id=bob.user_id, content="read me")
    async with bob.connect() as laptop, bob_phone.connect() as phone:
        await laptop.next_event("new_message")
        await phone.next_event("new_message")
        await laptop.read_receipt(ack["chat_id"], ack["message_id"])
        read = (await phone.next_event("message_read"))["data"]
        assert read["user_id"] == bob.user_id and read["seq"] == 1


async def test_mark_read_over_rest_is_a_read_receipt(user):
    alice, bob = await user(), await user()
    async with alice.connect() as a_ws:
        ack = await a_ws.send_message(recipient_id=bob.user_id, content="x")
        await bob.mark_read(ack["chat_id"], 1)
        read = (await a_ws.next_event("message_read"))["data"]
        assert read["message_id"] == ack["message_id"]
    with pytest.raises(ApiError) as err:
        await bob.mark_read(ack["chat_id"], 99)
    assert err.value.code == "bad_request"


async def test_receipts_for_someone_elses_chat_are_refused(user):
    alice, bob, mallory = await user(), await user(), await user()
    ack = await alice.send_message(recipient_id=bob.user_id, content="private")
    async with mallory.connect() as m_ws:
        with pytest.raises(ApiError) as err:
            await m_ws.request(
                "read_receipt", {"chat_id": ack["chat_id"], "message_id": ack["message_id"]}
            )
        assert err.value.code == "not_found"
    with pytest.raises(ApiError) as err:
        await mallory.mark_read(ack["chat_id"], 1)
    assert (err.value.status, err.value.code) == (404, "not_found")


async def test_replying_reads_the_chat_and_tells_the_other_sender(user):
    alice, bob = await user(), await user()
    async with alice.connect() as a_ws, bob.connect() as b_ws:
        first = await b_ws.send_message(recipient_id=alice.user_id, content="lunch?")
        await a_ws.next_event("new_message")
        await b_ws.next_event("message_delivered")
        reply = await a_ws.send_message(chat_id=first["chat_id"], content="yes")
        read = (await b_ws.next_event("message_read"))["data"]
        assert (read["user_id"], read["seq"]) == (alice.user_id, reply["seq"])
        page = await bob.messages(first["chat_id"], after_seq=0)
        assert page["messages"][0]["status"] == "read"
        # A monologue covers nobody else's message: no receipt for it.
        await a_ws.send_message(chat_id=first["chat_id"], content="at noon")
        later = [e for e in await b_ws.drain() if e["type"] == "message_read"]
        assert later == []
