"""Sending and receiving 1-on-1 messages over the wire."""

from __future__ import annotations

import asyncio

import pytest

from chatd.client import ApiError


async def test_two_users_chat_both_ways_over_websocket(user):
    alice, bob = await user(), await user()
    async with alice.connect() as a_ws, bob.connect() as b_ws:
        ack = await a_ws.send_message(recipient_id=bob.user_id, content="hi bob")
        assert ack["seq"] == 1 and ack["status"] == "sent"
        got = await b_ws.next_event("new_message")
        assert got["data"]["content"] == "hi bob"
        assert got["data"]["sender_id"] == alice.user_id
        assert got["data"]["message_id"] == ack["message_id"]
        assert got["data"]["chat_id"] == ack["chat_id"]

        reply = await b_ws.send_message(chat_id=ack["chat_id"], content="hi alice")
        assert reply["seq"] == 2
        back = await a_ws.next_event("new_message")
        assert back["data"]["content"] == "hi alice"
        assert back["data"]["seq"] == 2


async def test_message_object_has_every_contract_field(user):
    alice, bob = await user(), await user()
    async with bob.connect() as b_ws:
        ack = await alice.send_message(
            recipient_id=bob.user_id, content="fields", client_msg_id="cm-1"
        )
        data = (await b_ws.next_event("new_message"))["data"]
    assert set(data) >= {
        "message_id",
        "chat_id",
        "seq",
        "sender_id",
        "type",
        "content",
        "media",
        "reply_to",
        "client_msg_id",
        "timestamp",
        "status",
    }
    assert data["client_msg_id"] == "cm-1" and data["type"] == "text"
    assert data["timestamp"].endswith("Z") and len(data["timestamp"]) == 24
    assert ack["timestamp"] == data["timestamp"]


async def test_senders_other_device_receives_its_own_message(user, device):
    alice, bob = await user(), await user()
    alice_phone = await device(alice)
    async with alice.connect() as laptop, alice_phone.connect() as phone, bob.connect() as b_ws:
        ack = await laptop.send_message(recipient_id=bob.user_id, content="from laptop")
        mine = await phone.next_event("new_message")
        assert mine["data"]["message_id"] == ack["message_id"]
        assert (await b_ws.next_event("new_message"))["data"]["content"] == "from laptop"
        # The sending device itself gets the ack, not a copy.
        assert [e for e in await laptop.drain() if e["type"] == "new_message"] == []


async def test_reply_to_must_be_a_message_of_the_chat(user):
    alice, bob, carol = await user(), await user(), await user()
    first = await alice.send_message(recipient_id=bob.user_id, content="question")
    answer = await bob.send_message(
        chat_id=first["chat_id"], content="answer", reply_to=first["message_id"]
    )
    page = await alice.messages(first["chat_id"])
    assert page["messages"][0]["reply_to"] == first["message_id"]
    assert answer["seq"] == 2
    other = await alice.send_message(recipient_id=carol.user_id, content="elsewhere")
    with pytest.raises(ApiError) as err:
        await bob.send_message(chat_id=first["chat_id"], content="x", reply_to=other["message_id"])
    assert err.value.code == "bad_request"


async def test_history_pages_backwards_with_next_cursor(user):
    alice, bob = await user(), await user()
    acks = [await alice.send_message(recipient_id=bob.user_id, content=f"m{i}") for i in range(7)]
    chat_id = acks[0]["chat_id"]
    first = await bob.messages(chat_id, limit=3)
    assert [m["content"] for m in first["messages"]] == ["m6", "m5", "m4"]
    assert first["next_cursor"] == acks[4]["message_id"]
    second = await bob.messages(chat_id, limit=3, before=first["next_cursor"])
    assert [m["content"] for m in second["messages"]] == ["m3", "m2", "m1"]
    third = await bob.messages(chat_id, limit=3, before=second["next_cursor"])
    assert [m["content"] for m in third["messages"]] == ["m0"]
    assert third["next_cursor"] is None


async def test_history_pages_forwards_by_seq_for_sync(user):
    alice, bob = await user(), await user()
    acks = [await alice.send_message(recipient_id=bob.user_id, content=f"m{i}") for i in range(5)]
    chat_id = acks[0]["chat_id"]
    page = await bob.messages(chat_id, after_seq=1, limit=2)
    assert [m["seq"] for m in page["messages"]] == [2, 3]
    page = await bob.messages(chat_id, after_seq=3, limit=2)
    assert [m["seq"] for m in page["messages"]] == [4, 5]
    assert page["next_cursor"] is None
    assert (await bob.messages(chat_id, after_seq=5))["messages"] == []
    ids = [m["message_id"] for m in (await bob.messages(chat_id, after_seq=0))["messages"]]
    assert ids == sorted(ids)  # message ids sort in send order


async def test_inbox_lists_chats_by_recent_activity_with_unread_counts(user):
    alice, bob, carol = await user(), await user(), await user()
    with_bob = await alice.send_message(recipient_id=bob.user_id, content="to bob")
    await asyncio.sleep(0.01)
    await carol.send_message(recipient_id=alice.user_id, content="from carol 1")
    with_carol = await carol.send_message(recipient_id=alice.user_id, content="from carol 2")
    chats = await alice.chats()
    assert [c["chat_id"] for c in chats] == [with_carol["chat_id"], with_bob["chat_id"]]
    top = chats[0]
    assert top["kind"] == "direct" and top["last_seq"] == 2 and top["unread_count"] == 2
    assert top["last_message"]["content"] == "from carol 2"
    assert {m["user_id"] for m in top["members"]} == {alice.user_id, carol.user_id}
    assert chats[1]["unread_count"] == 0  # alice wrote it herself
    await alice.mark_read(with_carol["chat_id"], 2)
    chats = await alice.chats()
    assert chats[0]["unread_count"] == 0 and chats[0]["read_seq"] == 2


async def test_open_direct_is_get_or_create(user):
    alice, bob = await user(), await user()
    first = await alice.request("POST", "/chats/direct", json={"user_id": bob.user_id})
    again = await bob.request("POST", "/chats/direct", json={"user_id": alice.user_id})
    assert first["chat_id"] == again["chat_id"] and first["kind"] == "direct"
    sent = await alice.send_message(recipient_id=bob.user_id, content="same chat")
    assert sent["chat_id"] == first["chat_id"]


async def test_same_client_msg_id_over_ws_and_rest_stores_one_message(user):
    alice, bob = await user(), await user()
    async with alice.connect() as a_ws:
        first = await a_ws.send_message(
            recipient_id=bob.user_id, content="once", client_msg_id="dup-1"
        )
        again = await a_ws.send_message(
            recipient_id=bob.user_id, content="once", client_msg_id="dup-1"
        )
    over_rest = await alice.request(
        "POST",
        "/messages",
        json={
            "recipient_id": bob.user_id,
            "content": "once",
            "type": "text",
            "client_msg_id": "dup-1",
        },
    )
    assert first == again == over_rest
    history = await bob.messages(first["chat_id"])
    assert len(history["messages"]) == 1


async def test_rest_repeat_answers_200_and_first_answer(user):
    alice, bob = await user(), await user()
    body = {"recipient_id": bob.user_id, "content": "x", "type": "text", "client_msg_id": "r-1"}
    http = alice._http()
    headers = {"Authorization": f"Bearer {alice.token}"}
    async with http.post(alice.api_url + "/messages", json=body, headers=headers) as r1:
        assert r1.status == 201
        one = await r1.json()
    async with http.post(alice.api_url + "/messages", json=body, headers=headers) as r2:
        assert r2.status == 200
        assert await r2.json() == one


async def test_messages_from_one_socket_keep_their_order(user):
    alice, bob = await user(), await user()
    async with alice.connect() as a_ws, bob.connect() as b_ws:
        chat = await a_ws.send_message(recipient_id=bob.user_id, content="0")
        acks = await asyncio.gather(
            *(a_ws.send_message(chat_id=chat["chat_id"], content=str(i)) for i in range(1, 40))
        )
        assert [a["seq"] for a in acks] == list(range(2, 41))
        got = await b_ws.collect("new_message", 40)
    assert [int(e["data"]["content"]) for e in got] == list(range(40))
