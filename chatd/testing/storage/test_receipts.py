"""ReceiptStore: watermarks only rise, read implies delivered, per-device pending."""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest_asyncio

from chatd.core.ids import new_id
from chatd.core.models import PendingChat, WatermarkMove, WatermarkResult


@pytest_asyncio.fixture
async def ab(make_user, make_direct):
    """(alice, bob, their direct chat)."""
    alice, bob = await make_user("alice"), await make_user("bob")
    return alice, bob, await make_direct(alice, bob)


async def marks(storage, chat, user) -> tuple[int, int]:
    member = await storage.chats.member(chat.chat_id, user.user_id)
    assert member is not None
    return member.delivered_seq, member.read_seq


def move(chat, user, device=None, *, delivered: int = 0, read: int = 0) -> WatermarkMove:
    device_id = getattr(device, "device_id", device)
    return WatermarkMove(chat.chat_id, user.user_id, device_id, delivered, read)


async def test_advance_delivered_reports_before_and_after(storage, ab, send):
    alice, bob, chat = ab
    for _ in range(5):
        await send(chat, bob)
    assert await storage.receipts.advance([move(chat, alice, delivered=3)]) == [
        WatermarkResult(0, 3, 0, 0)
    ]
    assert await marks(storage, chat, alice) == (3, 0)
    assert await storage.receipts.advance([move(chat, alice, delivered=5)]) == [
        WatermarkResult(3, 5, 0, 0)
    ]
    assert await marks(storage, chat, alice) == (5, 0)


async def test_advance_never_lowers_a_watermark(storage, ab, send):
    alice, bob, chat = ab
    for _ in range(6):
        await send(chat, bob)
    await storage.receipts.advance([move(chat, alice, delivered=5, read=4)])
    assert await storage.receipts.advance([move(chat, alice, delivered=2)]) == [
        WatermarkResult(5, 5, 4, 4)
    ]
    assert await storage.receipts.advance([move(chat, alice, read=1)]) == [
        WatermarkResult(5, 5, 4, 4)
    ]
    assert await storage.receipts.advance([move(chat, alice, delivered=5, read=4)]) == [
        WatermarkResult(5, 5, 4, 4)
    ]
    assert await marks(storage, chat, alice) == (5, 4)


async def test_read_also_raises_delivered(storage, ab, send):
    alice, bob, chat = ab
    for _ in range(6):
        await send(chat, bob)
    assert await storage.receipts.advance([move(chat, alice, read=4)]) == [
        WatermarkResult(0, 4, 0, 4)
    ]
    assert await marks(storage, chat, alice) == (4, 4)
    # A read below delivered leaves delivered where it is.
    await storage.receipts.advance([move(chat, alice, delivered=6)])
    assert await storage.receipts.advance([move(chat, alice, read=5)]) == [
        WatermarkResult(6, 6, 4, 5)
    ]
    assert await marks(storage, chat, alice) == (6, 5)


async def test_non_member_gets_none_and_results_keep_move_order(storage, ab, make_user, send):
    alice, bob, chat = ab
    carol = await make_user("carol")
    for _ in range(3):
        await send(chat, bob)
    results = await storage.receipts.advance(
        [
            move(chat, carol, delivered=2),
            move(chat, alice, delivered=2),
            WatermarkMove(new_id(), alice.user_id, None, 1, 1),
            move(chat, alice, read=3),
        ]
    )
    assert results == [None, WatermarkResult(0, 2, 0, 0), None, WatermarkResult(2, 3, 0, 3)]
    assert await storage.chats.member(chat.chat_id, carol.user_id) is None
    assert await storage.receipts.advance([]) == []


async def test_moves_of_one_member_in_one_call_apply_in_order(storage, ab, send):
    alice, bob, chat = ab
    for _ in range(5):
        await send(chat, bob)
    results = await storage.receipts.advance(
        [
            move(chat, alice, delivered=2),
            move(chat, alice, read=4),
            move(chat, alice, delivered=3),
            move(chat, bob, read=5),
        ]
    )
    assert results == [
        WatermarkResult(0, 2, 0, 0),
        WatermarkResult(2, 4, 0, 4),
        WatermarkResult(4, 4, 4, 4),
        WatermarkResult(5, 5, 5, 5),  # bob sent 1..5: his own marks are there already
    ]


async def test_concurrent_advances_keep_the_maximum(storage, ab, draft):
    alice, bob, chat = ab
    await asyncio.gather(*(storage.messages.append(draft(chat, bob)) for _ in range(40)))
    moves = [move(chat, alice, delivered=n, read=n // 2) for n in range(1, 41)]
    random.Random(7).shuffle(moves)
    results = await asyncio.gather(*(storage.receipts.advance([m]) for m in moves))
    for (result,) in results:
        assert result is not None
        assert result.delivered_before <= result.delivered_after
        assert result.read_before <= result.read_after <= result.delivered_after
    # Every change is reported exactly once: the intervals chain from 0 to the max.
    delivered = sorted(
        (r.delivered_before, r.delivered_after)
        for (r,) in results
        if r.delivered_after > r.delivered_before
    )
    assert delivered[0][0] == 0 and delivered[-1][1] == 40
    assert all(a[1] == b[0] for a, b in itertools.pairwise(delivered))
    assert await marks(storage, chat, alice) == (40, 20)


async def test_pending_lists_chats_above_the_devices_watermark(
    storage, make_user, make_direct, make_device, send
):
    alice, bob, carol, dave = [await make_user(n) for n in ("alice", "bob", "carol", "dave")]
    phone = await make_device(alice)
    ab = await make_direct(alice, bob)
    ac = await make_direct(carol, alice)
    await make_direct(alice, dave)  # no messages: never pending
    for _ in range(3):
        await send(ab, bob)
    for _ in range(2):
        await send(ac, carol)

    pending = await storage.receipts.pending(alice.user_id, phone.device_id)
    assert sorted(pending, key=lambda p: p.chat_id) == sorted(
        [PendingChat(ab.chat_id, 0, 3), PendingChat(ac.chat_id, 0, 2)], key=lambda p: p.chat_id
    )
    assert await storage.receipts.pending(dave.user_id, new_id()) == []


async def test_device_acks_shrink_pending_until_the_chat_disappears(storage, ab, make_device, send):
    alice, bob, chat = ab
    phone, laptop = await make_device(alice, "phone"), await make_device(alice, "laptop")
    for _ in range(3):
        await send(chat, bob)

    await storage.receipts.advance([move(chat, alice, phone, delivered=2)])
    assert await storage.receipts.pending(alice.user_id, phone.device_id) == [
        PendingChat(chat.chat_id, 2, 3)
    ]
    await storage.receipts.advance([move(chat, alice, phone, delivered=3)])
    assert await storage.receipts.pending(alice.user_id, phone.device_id) == []
    # Another device of the same user has acknowledged nothing.
    assert await storage.receipts.pending(alice.user_id, laptop.device_id) == [
        PendingChat(chat.chat_id, 0, 3)
    ]
    # A new message makes the chat pending again, from the device's watermark.
    await send(chat, bob)
    assert await storage.receipts.pending(alice.user_id, phone.device_id) == [
        PendingChat(chat.chat_id, 3, 4)
    ]


async def test_device_watermark_never_lowers(storage, ab, make_device, send):
    alice, bob, chat = ab
    phone = await make_device(alice)
    for _ in range(4):
        await send(chat, bob)
    await storage.receipts.advance([move(chat, alice, phone, delivered=3)])
    await storage.receipts.advance([move(chat, alice, phone, delivered=1)])
    assert await storage.receipts.pending(alice.user_id, phone.device_id) == [
        PendingChat(chat.chat_id, 3, 4)
    ]


async def test_member_watermark_alone_does_not_ack_for_a_device(storage, ab, make_device, send):
    alice, bob, chat = ab
    phone = await make_device(alice)
    for _ in range(3):
        await send(chat, bob)
    await storage.receipts.advance([move(chat, alice, delivered=3, read=3)])
    assert await marks(storage, chat, alice) == (3, 3)
    assert await storage.receipts.pending(alice.user_id, phone.device_id) == [
        PendingChat(chat.chat_id, 0, 3)
    ]


async def test_device_is_not_asked_to_replay_its_own_gapless_messages(
    storage, ab, make_device, send
):
    alice, bob, chat = ab
    phone, laptop = await make_device(alice, "phone"), await make_device(alice, "laptop")
    await send(chat, alice, device=phone)
    await send(chat, alice, device=phone)
    assert await storage.receipts.pending(alice.user_id, phone.device_id) == []
    assert await storage.receipts.pending(alice.user_id, laptop.device_id) == [
        PendingChat(chat.chat_id, 0, 2)
    ]

    await send(chat, bob)  # seq 3: the phone has not got it
    assert await storage.receipts.pending(alice.user_id, phone.device_id) == [
        PendingChat(chat.chat_id, 2, 3)
    ]
    await send(chat, alice, device=phone)  # seq 4 leaves a gap at 3: no skipping it
    assert await storage.receipts.pending(alice.user_id, phone.device_id) == [
        PendingChat(chat.chat_id, 2, 4)
    ]
    await storage.receipts.advance([move(chat, alice, phone, delivered=4)])
    await send(chat, alice, device=phone)  # seq 5, right after the ack
    assert await storage.receipts.pending(alice.user_id, phone.device_id) == []


async def test_own_message_after_someone_elses_is_still_pending(storage, ab, make_device, send):
    alice, bob, chat = ab
    phone = await make_device(alice)
    await send(chat, bob)
    await send(chat, alice, device=phone)
    assert await storage.receipts.pending(alice.user_id, phone.device_id) == [
        PendingChat(chat.chat_id, 0, 2)
    ]


async def test_own_gapless_burst_is_not_replayed(storage, ab, make_device, draft):
    alice, bob, chat = ab
    phone = await make_device(alice)
    drafts = [draft(chat, alice, device=phone) for _ in range(10)]
    drafts += [draft(chat, bob)] + [draft(chat, alice, device=phone) for _ in range(5)]
    await asyncio.gather(*(storage.messages.append(d) for d in drafts))

    stored = await storage.messages.after(chat.chat_id, 0, 100)
    # The phone has every message up to the first one it did not send itself.
    run = next(m.seq for m in stored if m.sender_device_id != phone.device_id) - 1
    assert await storage.receipts.pending(alice.user_id, phone.device_id) == [
        PendingChat(chat.chat_id, run, 16)
    ]


async def test_each_device_keeps_its_own_watermark(storage, ab, make_device, send):
    alice, bob, chat = ab
    phone, laptop = await make_device(alice, "phone"), await make_device(alice, "laptop")
    for _ in range(4):
        await send(chat, bob)
    await storage.receipts.advance([move(chat, alice, phone, delivered=4)])
    # Below the member's watermark: the member does not move, the laptop's cursor does.
    assert await storage.receipts.advance([move(chat, alice, laptop, delivered=2)]) == [
        WatermarkResult(4, 4, 0, 0)
    ]
    assert await storage.receipts.pending(alice.user_id, phone.device_id) == []
    assert await storage.receipts.pending(alice.user_id, laptop.device_id) == [
        PendingChat(chat.chat_id, 2, 4)
    ]
