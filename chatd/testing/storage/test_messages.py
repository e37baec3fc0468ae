"""MessageStore: gap-free seqs, sortable ids, idempotency, paging and lookups."""

from __future__ import annotations

import asyncio

import pytest
import pytest_asyncio

from chatd.core.errors import ChatdError
from chatd.core.ids import new_id, now_ms
from chatd.core.models import MessageDraft


@pytest_asyncio.fixture
async def ab(make_user, make_direct):
    """(alice, bob, their direct chat)."""
    alice, bob = await make_user("alice"), await make_user("bob")
    return alice, bob, await make_direct(alice, bob)


async def test_append_assigns_seq_1_2_3_and_keeps_the_draft(storage, ab):
    alice, bob, chat = ab
    started = now_ms()
    first = MessageDraft(chat.chat_id, alice.user_id, "alice-phone", "text", "hello", "c1")
    r1 = await storage.messages.append(first)
    second = MessageDraft(
        chat.chat_id, bob.user_id, "bob-laptop", "image", "", "c2", media_id="media-7"
    )
    r2 = await storage.messages.append(second)
    third = MessageDraft(
        chat.chat_id,
        alice.user_id,
        "alice-tablet",
        "text",
        "re: hello",
        "c3",
        reply_to=r1.message.message_id,
    )
    r3 = await storage.messages.append(third)
    finished = now_ms()

    assert [r.created for r in (r1, r2, r3)] == [True, True, True]
    assert [r.message.seq for r in (r1, r2, r3)] == [1, 2, 3]
    for d, r in ((first, r1), (second, r2), (third, r3)):
        m = r.message
        assert m.chat_id == chat.chat_id
        assert started <= m.created_at <= finished
        assert (
            m.sender_id,
            m.sender_device_id,
            m.type,
            m.content,
            m.client_msg_id,
            m.media_id,
            m.reply_to,
        ) == (
            d.sender_id,
            d.sender_device_id,
            d.type,
            d.content,
            d.client_msg_id,
            d.media_id,
            d.reply_to,
        )
        assert await storage.messages.at_seq(chat.chat_id, m.seq) == m
    stored_chat = await storage.chats.get(chat.chat_id)
    assert stored_chat is not None and stored_chat.last_seq == 3


async def test_seqs_are_per_chat(storage, make_user, make_direct, send):
    alice, bob, carol = await make_user("alice"), await make_user("bob"), await make_user("carol")
    ab = await make_direct(alice, bob)
    ac = await make_direct(alice, carol)
    assert (await send(ab, alice)).seq == 1
    assert (await send(ac, alice)).seq == 1
    assert (await send(ab, bob)).seq == 2
    assert (await send(ac, carol)).seq == 2
    assert (await send(ac, alice)).seq == 3


async def test_200_concurrent_appends_get_unique_gap_free_seqs(storage, ab, draft):
    alice, bob, chat = ab
    drafts = [draft(chat, alice if i % 2 else bob, content=f"m{i}") for i in range(200)]
    results = await asyncio.gather(*(storage.messages.append(d) for d in drafts))

    assert all(r.created for r in results)
    assert sorted(r.message.seq for r in results) == list(range(1, 201))
    assert len({r.message.message_id for r in results}) == 200
    for d, r in zip(drafts, results, strict=True):
        assert r.message.content == d.content and r.message.client_msg_id == d.client_msg_id

    by_seq = sorted((r.message for r in results), key=lambda m: m.seq)
    ids = [m.message_id for m in by_seq]
    assert ids == sorted(ids), "message ids must sort as strings in seq order"

    stored = await storage.messages.after(chat.chat_id, 0, 500)
    assert stored == by_seq
    stored_chat = await storage.chats.get(chat.chat_id)
    assert stored_chat is not None and stored_chat.last_seq == 200


async def test_message_ids_sort_in_seq_order_across_appends(storage, ab, send):
    alice, bob, chat = ab
    messages = [await send(chat, alice if i % 3 else bob) for i in range(20)]
    assert [m.seq for m in messages] == list(range(1, 21))
    ids = [m.message_id for m in messages]
    assert ids == sorted(ids) and len(set(ids)) == 20


async def test_repeat_of_client_msg_id_returns_the_first_message(storage, ab, draft):
    alice, _, chat = ab
    first = await storage.messages.append(draft(chat, alice, client_msg_id="c1", content="one"))
    repeat = await storage.messages.append(draft(chat, alice, client_msg_id="c1", content="two"))
    assert first.created is True
    assert repeat.created is False
    assert repeat.message == first.message
    assert await storage.messages.after(chat.chat_id, 0, 10) == [first.message]
    stored_chat = await storage.chats.get(chat.chat_id)
    assert stored_chat is not None and stored_chat.last_seq == 1

    nxt = await storage.messages.append(draft(chat, alice, client_msg_id="c2"))
    assert nxt.created and nxt.message.seq == 2


async def test_repeats_in_one_concurrent_burst_store_one_message(storage, ab, draft):
    alice, bob, chat = ab
    drafts = []
    for i in range(30):
        drafts.append(draft(chat, alice, client_msg_id="dup", content=f"try {i}"))
        drafts.append(draft(chat, bob, content=f"other {i}"))
    results = await asyncio.gather(*(storage.messages.append(d) for d in drafts))

    dups = results[0::2]
    assert sum(r.created for r in dups) == 1
    (original,) = [r.message for r in dups if r.created]
    assert all(r.message == original for r in dups)
    assert all(r.created for r in results[1::2])
    stored = await storage.messages.after(chat.chat_id, 0, 100)
    assert [m.seq for m in stored] == list(range(1, 32))
    assert [m for m in stored if m.sender_id == alice.user_id] == [original]


async def test_other_senders_may_reuse_a_client_msg_id(storage, ab, draft):
    alice, bob, chat = ab
    a = await storage.messages.append(draft(chat, alice, client_msg_id="same"))
    b = await storage.messages.append(draft(chat, bob, client_msg_id="same"))
    assert a.created and b.created
    assert (a.message.seq, b.message.seq) == (1, 2)
    assert a.message.message_id != b.message.message_id


async def test_idempotency_key_is_sender_and_client_msg_id(storage, make_user, make_direct, draft):
    alice, bob, carol = await make_user("alice"), await make_user("bob"), await make_user("carol")
    ab = await make_direct(alice, bob)
    ac = await make_direct(alice, carol)
    first = await storage.messages.append(draft(ab, alice, client_msg_id="k"))
    again = await storage.messages.append(draft(ac, alice, client_msg_id="k"))
    assert again.created is False and again.message == first.message
    assert await storage.messages.after(ac.chat_id, 0, 10) == []


async def test_append_to_an_unknown_chat_is_not_found(storage, ab, draft):
    alice, _, chat = ab
    with pytest.raises(ChatdError) as info:
        await storage.messages.append(draft(new_id(), alice))
    assert info.value.code == "not_found"

    # Inside a concurrent burst, the bad draft fails alone.
    drafts = [draft(chat, alice) for _ in range(5)]
    drafts.insert(2, draft(new_id(), alice))
    results = await asyncio.gather(
        *(storage.messages.append(d) for d in drafts), return_exceptions=True
    )
    bad = results.pop(2)
    assert isinstance(bad, ChatdError) and bad.code == "not_found"
    assert sorted(r.message.seq for r in results) == [1, 2, 3, 4, 5]


async def test_append_raises_the_senders_own_watermarks(storage, ab, send):
    alice, bob, chat = ab
    for _ in range(3):
        await send(chat, alice)
    me = await storage.chats.member(chat.chat_id, alice.user_id)
    peer = await storage.chats.member(chat.chat_id, bob.user_id)
    assert me is not None and (me.delivered_seq, me.read_seq) == (3, 3)
    assert peer is not None and (peer.delivered_seq, peer.read_seq) == (0, 0)

    await send(chat, bob)
    me = await storage.chats.member(chat.chat_id, alice.user_id)
    peer = await storage.chats.member(chat.chat_id, bob.user_id)
    assert me is not None and (me.delivered_seq, me.read_seq) == (3, 3)
    assert peer is not None and (peer.delivered_seq, peer.read_seq) == (4, 4)


async def test_before_pages_newest_first(storage, ab, send):
    alice, bob, chat = ab
    for i in range(10):
        await send(chat, alice if i % 2 else bob)

    async def seqs(before_seq: int, limit: int, min_seq: int = 0) -> list[int]:
        page = await storage.messages.before(chat.chat_id, before_seq, limit, min_seq)
        return [m.seq for m in page]

    assert await seqs(11, 3) == [10, 9, 8]
    assert await seqs(8, 3) == [7, 6, 5]
    assert await seqs(3, 10) == [2, 1]
    assert await seqs(1, 10) == []
    assert await seqs(1_000, 100) == list(range(10, 0, -1))
    assert await seqs(8, 10, min_seq=4) == [7, 6, 5]
    assert await seqs(8, 2, min_seq=4) == [7, 6]
    assert await seqs(5, 10, min_seq=4) == []


async def test_after_pages_oldest_first(storage, ab, send):
    alice, _, chat = ab
    messages = [await send(chat, alice) for _ in range(10)]

    async def seqs(after_seq: int, limit: int) -> list[int]:
        return [m.seq for m in await storage.messages.after(chat.chat_id, after_seq, limit)]

    assert await seqs(0, 3) == [1, 2, 3]
    assert await seqs(3, 3) == [4, 5, 6]
    assert await seqs(8, 10) == [9, 10]
    assert await seqs(10, 10) == []
    assert await storage.messages.after(chat.chat_id, 0, 100) == messages


async def test_paging_stays_within_one_chat(storage, make_user, make_direct, send):
    alice, bob, carol = await make_user("alice"), await make_user("bob"), await make_user("carol")
    ab = await make_direct(alice, bob)
    ac = await make_direct(alice, carol)
    mine = [await send(ab, alice), await send(ac, alice), await send(ab, bob)]
    assert await storage.messages.after(ab.chat_id, 0, 10) == [mine[0], mine[2]]
    assert await storage.messages.before(ac.chat_id, 100, 10) == [mine[1]]
    assert await storage.messages.after(new_id(), 0, 10) == []
    assert await storage.messages.before(new_id(), 100, 10) == []


async def test_at_seq(storage, ab, send):
    alice, _, chat = ab
    messages = [await send(chat, alice) for _ in range(3)]
    for m in messages:
        assert await storage.messages.at_seq(chat.chat_id, m.seq) == m
    assert await storage.messages.at_seq(chat.chat_id, 0) is None
    assert await storage.messages.at_seq(chat.chat_id, 4) is None
    assert await storage.messages.at_seq(new_id(), 1) is None


async def test_get_by_chat_and_message_id(storage, make_user, make_direct, send):
    alice, bob, carol = await make_user("alice"), await make_user("bob"), await make_user("carol")
    ab = await make_direct(alice, bob)
    ac = await make_direct(alice, carol)
    in_ab = await send(ab, alice)
    in_ac = await send(ac, carol)
    assert await storage.messages.get(ab.chat_id, in_ab.message_id) == in_ab
    assert await storage.messages.get(ac.chat_id, in_ac.message_id) == in_ac
    # A message id of another chat is not found.
    assert await storage.messages.get(ab.chat_id, in_ac.message_id) is None
    assert await storage.messages.get(ac.chat_id, in_ab.message_id) is None
    assert await storage.messages.get(ab.chat_id, new_id()) is None


async def test_senders_between_is_low_exclusive_high_inclusive(storage, ab, send):
    alice, bob, chat = ab
    for sender in (alice, alice, bob, alice, bob):  # seqs 1..5
        await send(chat, sender)

    async def senders(low: int, high: int) -> set[str]:
        return await storage.messages.senders_between(chat.chat_id, low, high)

    a, b = alice.user_id, bob.user_id
    assert await senders(0, 5) == {a, b}
    assert await senders(0, 2) == {a}
    assert await senders(2, 3) == {b}
    assert await senders(3, 4) == {a}
    assert await senders(2, 2) == set()
    assert await senders(5, 10) == set()
    assert await storage.messages.senders_between(new_id(), 0, 10) == set()


async def test_two_nodes_appending_to_one_chat_share_one_sequence(storage, second_node, ab, draft):
    alice, bob, chat = ab
    drafts = [draft(chat, alice if i % 2 else bob) for i in range(200)]
    dup = draft(chat, alice, client_msg_id="dup")
    calls = [(storage if i % 2 else second_node).messages.append(d) for i, d in enumerate(drafts)]
    calls += [storage.messages.append(dup), second_node.messages.append(dup)]
    results = await asyncio.gather(*calls)

    created = [r.message for r in results if r.created]
    assert len(created) == 201
    assert sorted(m.seq for m in created) == list(range(1, 202))
    assert results[-1].message == results[-2].message
    stored = await second_node.messages.after(chat.chat_id, 0, 300)
    assert [m.seq for m in stored] == list(range(1, 202))
    ids = [m.message_id for m in stored]
    assert len(set(ids)) == 201
