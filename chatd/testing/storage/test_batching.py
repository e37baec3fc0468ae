"""The batching capability (``StartsAppends``/``StartsAdvances``), as the services use it.

The services start every append and receipt through ``append_starter`` and
``advance_starter``: the store's own ``*_nowait`` where it declares one, a task
around the coroutine otherwise. Both must keep the port's guarantees when many
are started in one event-loop turn.
"""

from __future__ import annotations

import asyncio

from chatd.core.errors import ChatdError
from chatd.core.models import MessageDraft, WatermarkMove
from chatd.core.ports.storage import advance_starter, append_starter


async def test_appends_started_in_one_turn_are_numbered_once_each(storage, make_user, make_direct):
    alice, bob = await make_user("alice"), await make_user("bob")
    chat = await make_direct(alice, bob)
    start = append_starter(storage.messages)
    drafts = [
        MessageDraft(chat.chat_id, alice.user_id, "phone", "text", f"m{i}", f"c{i}")
        for i in range(60)
    ]
    futures = [start(d) for d in drafts]  # all in one loop turn
    futures.append(start(drafts[7]))  # a repeat inside the same burst
    results = await asyncio.gather(*futures)
    firsts = results[:60]
    assert sorted(r.message.seq for r in firsts) == list(range(1, 61))
    # Started in order on one chat: numbered in that order, ids sorting the same way.
    assert [r.message.seq for r in firsts] == list(range(1, 61))
    assert [r.message.content for r in firsts] == [f"m{i}" for i in range(60)]
    repeat = results[60]
    assert repeat.created is False and repeat.message.seq == firsts[7].message.seq
    page = await storage.messages.after(chat.chat_id, 0, 100)
    assert [m.seq for m in page] == list(range(1, 61))


async def test_a_refused_append_fails_only_its_own_future(storage, make_user, make_direct):
    alice, bob, mallory = await make_user("alice"), await make_user("bob"), await make_user("mal")
    chat = await make_direct(alice, bob)
    start = append_starter(storage.messages)
    ok = start(MessageDraft(chat.chat_id, alice.user_id, "phone", "text", "hi", "ok-1"))
    refused = start(MessageDraft(chat.chat_id, mallory.user_id, "pc", "text", "x", "bad-1"))
    ok2 = start(MessageDraft(chat.chat_id, bob.user_id, "tab", "text", "yo", "ok-2"))
    done = await asyncio.gather(ok, refused, ok2, return_exceptions=True)
    assert isinstance(done[1], ChatdError) and done[1].code == "not_found"
    assert [done[0].message.seq, done[2].message.seq] == [1, 2]


async def test_advances_started_in_one_turn_only_raise_watermarks(storage, make_user, make_direct):
    alice, bob = await make_user("alice"), await make_user("bob")
    chat = await make_direct(alice, bob)
    for i in range(5):
        await storage.messages.append(
            MessageDraft(chat.chat_id, alice.user_id, "phone", "text", f"m{i}", f"c{i}")
        )
    start = advance_starter(storage.receipts)

    def move(seq: int) -> WatermarkMove:
        return WatermarkMove(chat.chat_id, bob.user_id, "bob-phone", seq, seq)

    first, lower = start([move(4)]), start([move(2)])
    (up,), (down,) = await asyncio.gather(first, lower)
    assert up is not None and (up.delivered_after, up.read_after) == (4, 4)
    assert down is not None and (down.delivered_after, down.read_after) == (4, 4)
    member = await storage.chats.member(chat.chat_id, bob.user_id)
    assert member is not None and (member.delivered_seq, member.read_seq) == (4, 4)
