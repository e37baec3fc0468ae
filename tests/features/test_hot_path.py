"""The hot path's shortcuts give the answers the general path gives.

Receipts for recently stored messages are answered from ``RecentMessages``
instead of storage reads, commits and receipts are callbacks instead of tasks,
and appends move device cursors over runs of a device's own messages in one
statement: each test checks an outcome a client can see, with the memory on
and, where it matters, wiped so the storage path answers instead.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from chatd.client import ApiError
from chatd.core.services.receipts import RecentMessages
from tests.conftest import before_sentinel


def test_recent_messages_answers_only_what_it_saw() -> None:
    recent = RecentMessages(per_chat=4, slots=100)
    for seq in (5, 6, 7):
        recent.record("c", seq, f"m{seq}", "alice" if seq != 6 else "bob")
    assert recent.find("c", "m6") == 6
    assert recent.find("c", "m4") is None and recent.find("other", "m6") is None
    assert recent.message_id("c", 7) == "m7" and recent.message_id("c", 8) is None
    assert recent.senders("c", 4, 7) == {"alice", "bob"}
    assert recent.senders("c", 5, 6) == {"bob"}
    assert recent.senders("c", 3, 7) is None  # seq 4 was never seen here
    assert recent.senders("c", 6, 8) is None  # nor seq 8


def test_recent_messages_gaps_are_unknown_and_fill_in() -> None:
    recent = RecentMessages(per_chat=8, slots=100)
    recent.record("c", 1, "m1", "alice")
    recent.record("c", 3, "m3", "alice")  # seq 2: a group change, another node's...
    assert recent.senders("c", 0, 3) is None
    assert recent.message_id("c", 2) is None
    recent.record("c", 2, "m2", "bob")
    assert recent.senders("c", 0, 3) == {"alice", "bob"}


def test_recent_messages_is_bounded() -> None:
    recent = RecentMessages(per_chat=4, slots=10)
    for seq in range(1, 101):
        recent.record("c", seq, f"m{seq}", "alice")
    assert len(recent) <= 8
    assert recent.find("c", "m100") == 100 and recent.find("c", "m1") is None
    recent.record("c", 1000, "m1000", "alice")  # far ahead: starts over
    assert recent.senders("c", 999, 1000) == {"alice"}
    assert recent.senders("c", 100, 1000) is None
    for chat in range(20):
        recent.record(f"chat{chat}", 1, "x", "alice")
    assert len(recent) <= 10
    assert recent.find("chat19", "x") == 1 and recent.find("chat0", "x") is None


@pytest.mark.parametrize("remembered", [True, False], ids=["memory", "storage"])
async def test_group_receipt_tells_every_covered_sender(services, user, remembered):
    alice, bob, carol = await user(), await user(), await user()
    group = await alice.request(
        "POST", "/groups", json={"name": "g", "member_ids": [bob.user_id, carol.user_id]}
    )
    chat_id = group["group_id"]
    async with (
        alice.connect() as a_ws,
        bob.connect() as b_ws,
        carol.connect(auto_delivery_receipts=False) as c_ws,
    ):
        first = await a_ws.send_message(chat_id=chat_id, content="from alice")
        last = await b_ws.send_message(chat_id=chat_id, content="from bob")
        got = await c_ws.collect("new_message", 3)  # the creation notice and both
        assert [e["data"]["seq"] for e in got] == [1, first["seq"], last["seq"]]
        if not remembered:
            services.receipts.recent = RecentMessages()
        await c_ws.delivery_receipt(chat_id, last["message_id"])
        for ws in (a_ws, b_ws):
            event = await _delivered_by(ws, carol.user_id)
            assert event["data"]["seq"] == last["seq"]
            assert event["data"]["message_id"] == last["message_id"]
        # Below the watermark now: acked, announced to nobody.
        await c_ws.delivery_receipt(chat_id, first["message_id"])
        await asyncio.sleep(0.1)
        later = [e for e in await a_ws.drain() if e["type"] == "message_delivered"]
        assert [e for e in later if e["data"]["user_id"] == carol.user_id] == []


async def _delivered_by(ws: Any, user_id: str) -> dict[str, Any]:
    """The next message_delivered for ``user_id``'s watermark (others' are skipped)."""
    while True:
        event = await ws.next_event("message_delivered")
        if event["data"]["user_id"] == user_id:
            return event


@pytest.mark.parametrize("remembered", [True, False], ids=["memory", "storage"])
async def test_receipt_for_a_message_of_another_chat_is_not_found(services, user, remembered):
    alice, bob, carol = await user(), await user(), await user()
    async with bob.connect(auto_delivery_receipts=False) as b_ws:
        mine = await alice.send_message(recipient_id=bob.user_id, content="to bob")
        other = await alice.send_message(recipient_id=carol.user_id, content="to carol")
        await b_ws.next_event("new_message")
        if not remembered:
            services.receipts.recent = RecentMessages()
        with pytest.raises(ApiError) as refused:
            await b_ws.delivery_receipt(mine["chat_id"], other["message_id"])
        assert refused.value.code == "not_found"
        with pytest.raises(ApiError) as refused:
            await b_ws.delivery_receipt(other["chat_id"], other["message_id"])
        assert refused.value.code == "not_found"
        await b_ws.delivery_receipt(mine["chat_id"], mine["message_id"])


async def test_a_burst_from_one_device_moves_its_cursor_over_its_own_run(user):
    """Eight sends in flight share a commit; the device's cursor follows only its own run."""
    alice, bob = await user(), await user()
    chat = await alice.open_direct(bob.user_id)
    chat_id = chat["chat_id"]
    async with alice.connect() as a_ws:
        acks = await asyncio.gather(
            *(a_ws.send_message(chat_id=chat_id, content=f"a{i}") for i in range(8))
        )
    assert sorted(a["seq"] for a in acks) == list(range(1, 9))
    async with alice.connect() as a_ws:  # nothing of its own comes back
        assert await before_sentinel(a_ws, bob, chat_id=chat_id) == []
    # Bob's messages in between (alice's device acknowledges none): her cursor
    # may follow her own messages but must not pass one of his.
    async with alice.connect(auto_delivery_receipts=False) as a_ws, bob.connect() as b_ws:
        sends = [a_ws.send_message(chat_id=chat_id, content=f"x{i}") for i in range(4)]
        sends += [b_ws.send_message(chat_id=chat_id, content=f"y{i}") for i in range(4)]
        await asyncio.gather(*sends)
    async with alice.connect(auto_delivery_receipts=False) as a_ws:
        replayed = await before_sentinel(a_ws, bob, chat_id=chat_id)
    assert {m["content"] for m in replayed} >= {f"y{i}" for i in range(4)}
    assert [m["seq"] for m in replayed] == sorted(m["seq"] for m in replayed)


async def test_many_sends_in_flight_are_acked_in_seq_order_per_socket(user):
    alice, bob = await user(), await user()
    chat = await alice.open_direct(bob.user_id)
    async with alice.connect() as a_ws, bob.connect() as b_ws:
        acks = await asyncio.gather(
            *(a_ws.send_message(chat_id=chat["chat_id"], content=str(i)) for i in range(300))
        )
        assert [a["seq"] for a in acks] == list(range(1, 301))
        got = await b_ws.collect("new_message", 300)
        assert [e["data"]["content"] for e in got] == [str(i) for i in range(300)]


async def test_a_reply_that_reads_the_chat_is_delivered_before_the_next_message(user):
    """A send that covers unread messages also announces a read (storage work);
    the message itself must still reach the other side in seq order."""
    alice, bob = await user(), await user()
    chat = await alice.open_direct(bob.user_id)
    for i in range(3):  # unread by bob
        await alice.send_message(chat_id=chat["chat_id"], content=f"q{i}")
    async with alice.connect() as a_ws, bob.connect() as b_ws:
        await b_ws.collect("new_message", 3)
        acks = await asyncio.gather(
            *(b_ws.send_message(chat_id=chat["chat_id"], content=f"a{i}") for i in range(20))
        )
        assert [a["seq"] for a in acks] == list(range(4, 24))
        got = await a_ws.collect("new_message", 20)  # her own three are not replayed
        assert [e["data"]["seq"] for e in got] == list(range(4, 24))
