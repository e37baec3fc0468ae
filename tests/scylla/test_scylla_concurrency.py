"""ScyllaDB only: invariants while several nodes write at once, and bucket boundaries."""

from __future__ import annotations

import asyncio
import contextlib
import itertools

import pytest

from chatd.core.errors import ChatdError, StaleVersion
from chatd.core.ids import now_ms
from chatd.core.models import GroupChange
from tests.scylla_server import scylla_server

from .scylla_nodes import cql, direct, draft, group, nodes, system, users

pytest.importorskip("cassandra", reason="scylla-driver is not installed")
from chatd.storage.scylla.common import BUCKET

__all__ = ["nodes"]  # a fixture


async def test_three_nodes_share_one_gap_free_sequence(nodes):
    a, b = await users(nodes[0], 2)
    chat = await direct(nodes[0], a, b)
    calls = [nodes[i % 3].messages.append(draft(chat.chat_id, (a, b)[i % 2])) for i in range(300)]
    results = await asyncio.gather(*calls)

    assert all(r.created for r in results)
    assert sorted(r.message.seq for r in results) == list(range(1, 301))
    stored = await nodes[2].messages.after(chat.chat_id, 0, 500)
    assert stored == sorted((r.message for r in results), key=lambda m: m.seq)
    ids = [m.message_id for m in stored]
    assert ids == sorted(ids), "ids sort in seq order across nodes too"
    assert (await nodes[1].chats.get(chat.chat_id)).last_seq == 300
    for node, user in itertools.product(nodes, (a, b)):
        me = await node.chats.member(chat.chat_id, user.user_id)
        assert me.read_seq == max(m.seq for m in stored if m.sender_id == user.user_id)


async def test_one_client_msg_id_retried_on_every_node_stores_one_message(nodes):
    a, b = await users(nodes[0], 2)
    chat = await direct(nodes[0], a, b)
    noise = [nodes[i % 3].messages.append(draft(chat.chat_id, b)) for i in range(30)]
    repeats = [nodes[i % 3].messages.append(draft(chat.chat_id, a, "same")) for i in range(30)]
    results = await asyncio.gather(*repeats, *noise)

    firsts = [r for r in results[:30] if r.created]
    assert len(firsts) == 1
    assert {r.message for r in results[:30]} == {firsts[0].message}
    stored = await nodes[0].messages.after(chat.chat_id, 0, 100)
    assert [m.seq for m in stored] == list(range(1, 32))
    assert [m for m in stored if m.sender_id == a.user_id] == [firsts[0].message]


async def test_concurrent_group_adds_on_two_nodes_never_pass_the_limit(nodes):
    limit = 8
    admin, *others = await users(nodes[0], 21)
    chat = await group(nodes[0], admin)

    async def add(node, user) -> bool:
        """What GroupService.add_members does: read, check the limit, compare-and-set."""
        while True:
            current = await node.chats.get(chat.chat_id)
            members = await node.chats.members(chat.chat_id)
            if len(members) >= limit:
                return False
            change = GroupChange(
                chat.chat_id, current.version, system(chat.chat_id, admin), add=(user.user_id,)
            )
            try:
                await node.chats.change_group(change)
                return True
            except StaleVersion:
                continue

    added = await asyncio.gather(*(add(nodes[i % 2], u) for i, u in enumerate(others)))
    assert sum(added) == limit - 1
    members = await nodes[2].chats.members(chat.chat_id)
    assert len(members) == limit
    assert {m.user_id for m in members} == {admin.user_id} | {
        u.user_id for u, ok in zip(others, added, strict=True) if ok
    }
    final = await nodes[2].chats.get(chat.chat_id)
    assert final.version == limit and final.last_seq == limit
    stored = await nodes[2].messages.after(chat.chat_id, 0, 100)
    assert [m.seq for m in stored] == list(range(1, limit + 1))


async def test_a_send_on_one_node_cannot_follow_its_senders_removal_on_another(nodes):
    admin, bob = await users(nodes[0], 2)
    chat = await group(nodes[0], admin, bob)
    await nodes[1].messages.append(draft(chat.chat_id, bob))  # node 1 caches bob as a member

    sending = asyncio.Event()

    async def keep_sending() -> list[int]:
        seqs = []
        for _ in range(500):
            try:
                seqs.append((await nodes[1].messages.append(draft(chat.chat_id, bob))).message.seq)
            except ChatdError as exc:
                assert exc.code == "not_found"
                return seqs
            sending.set()
        return seqs

    sender = asyncio.create_task(keep_sending())
    await asyncio.wait_for(sending.wait(), 10)
    removal = await nodes[0].chats.change_group(
        GroupChange(chat.chat_id, 1, system(chat.chat_id, admin), remove=(bob.user_id,))
    )
    seqs = await sender
    assert seqs and max(seqs) < removal.seq
    gone = await nodes[1].chats.member(chat.chat_id, bob.user_id)
    assert gone.left_seq == removal.seq


async def test_invite_uses_are_shared_by_three_nodes(nodes):
    await nodes[0].invites.create("seven", 7, None)
    now = now_ms()
    results = await asyncio.gather(*(nodes[i % 3].invites.consume("seven", now) for i in range(45)))
    assert results.count(True) == 7


async def test_messages_cross_a_bucket_boundary(nodes):
    a, b = await users(nodes[0], 2)
    chat = await direct(nodes[0], a, b)
    top = BUCKET - 1
    await nodes[0].messages.append(draft(chat.chat_id, a))  # seq 1 sets the bucket's epoch
    await asyncio.to_thread(scylla_server().fill, chat.chat_id, 2, top, a.user_id)
    await cql(
        "UPDATE {ks}.chat_members USING TIMESTAMP %s SET last_seq = %s WHERE chat_id = %s",
        (top - 2, top - 2, chat.chat_id),  # and a last_seq that lags, as after a crash
    )
    results = await asyncio.gather(
        *(nodes[i % 2].messages.append(draft(chat.chat_id, (a, b)[i % 2])) for i in range(20))
    )
    assert sorted(r.message.seq for r in results) == list(range(top + 1, top + 21))
    msgs = nodes[2].messages
    assert [m.seq for m in await msgs.after(chat.chat_id, top - 3, 6)] == list(
        range(top - 2, top + 4)
    )
    assert [m.seq for m in await msgs.before(chat.chat_id, top + 3, 5)] == list(
        range(top + 2, top - 3, -1)
    )
    assert [m.seq for m in await msgs.before(chat.chat_id, 10**9, 3)] == [
        top + 20,
        top + 19,
        top + 18,
    ]
    around = await msgs.after(chat.chat_id, top - 1, 3)  # seqs top .. top + 2
    assert await msgs.senders_between(chat.chat_id, top - 1, top + 2) == {
        m.sender_id for m in around
    }
    assert await msgs.senders_between(chat.chat_id, top - 1, top + 20) == {a.user_id, b.user_id}
    assert (await msgs.at_seq(chat.chat_id, top + 1)).content == "hi"
    assert (await nodes[0].chats.get(chat.chat_id)).last_seq == top + 20


async def test_a_group_change_at_a_bucket_boundary_still_fences_sends(nodes):
    admin, bob = await users(nodes[0], 2)
    chat = await group(nodes[0], admin, bob)
    await nodes[1].messages.append(draft(chat.chat_id, bob))  # seq 2, bob cached on node 1
    await asyncio.to_thread(scylla_server().fill, chat.chat_id, 3, BUCKET - 1, admin.user_id)
    removal = await nodes[0].chats.change_group(
        GroupChange(chat.chat_id, 1, system(chat.chat_id, admin), remove=(bob.user_id,))
    )
    assert removal.seq == BUCKET  # the first seq of bucket 1, claimed with the new epoch
    with pytest.raises(ChatdError) as info:
        await nodes[1].messages.append(draft(chat.chat_id, bob))
    assert info.value.code == "not_found"
    ok = await nodes[1].messages.append(draft(chat.chat_id, admin))
    assert ok.message.seq == BUCKET + 1


async def test_appends_fill_a_bucket_and_go_on_in_the_next(nodes):
    a, b = await users(nodes[0], 2)
    chat = await direct(nodes[0], a, b)
    total = BUCKET + 50
    results = await asyncio.gather(
        *(nodes[i % 2].messages.append(draft(chat.chat_id, (a, b)[i % 2])) for i in range(total))
    )
    assert sorted(r.message.seq for r in results) == list(range(1, total + 1))
    page = await nodes[2].messages.after(chat.chat_id, BUCKET - 10, 30)
    assert [m.seq for m in page] == list(range(BUCKET - 9, BUCKET + 21))
    ids = [m.message_id for m in page]
    assert ids == sorted(ids)


async def test_sends_and_membership_changes_on_three_nodes_never_interleave(nodes):
    """Senders and admins race on three nodes; replaying the committed changes in
    seq order, every message's sender was a member at its seq, and seqs have no gap."""
    admin, *others = await users(nodes[0], 7)
    chat = await group(nodes[0], admin, *others)
    changes: dict[int, GroupChange] = {}

    async def sender(i: int) -> None:
        for n in range(25):
            author = others[(i + n) % len(others)]
            try:
                await nodes[i % 3].messages.append(draft(chat.chat_id, author))
            except ChatdError as exc:
                assert exc.code == "not_found"  # its author had just been removed

    async def changer(i: int) -> None:
        node = nodes[i % 3]
        for n in range(12):
            current = await node.chats.get(chat.chat_id)
            ids = {m.user_id for m in await node.chats.members(chat.chat_id)}
            who = others[(i * 5 + n) % len(others)].user_id
            plan = {"remove": (who,)} if who in ids else {"add": (who,)}
            change = GroupChange(chat.chat_id, current.version, system(chat.chat_id, admin), **plan)
            with contextlib.suppress(StaleVersion):  # another admin was first: next round
                changes[(await node.chats.change_group(change)).seq] = change

    await asyncio.gather(*(sender(i) for i in range(9)), *(changer(i) for i in range(3)))
    stored = await nodes[0].messages.after(chat.chat_id, 0, 10_000)
    assert [m.seq for m in stored] == list(range(1, len(stored) + 1))
    members = {admin.user_id} | {u.user_id for u in others}
    for m in stored[1:]:
        if m.type == "system":
            members = (members | set(changes[m.seq].add)) - set(changes[m.seq].remove)
        else:
            assert m.sender_id in members, f"seq {m.seq} sent by a non-member"
    assert {m.user_id for m in await nodes[1].chats.members(chat.chat_id)} == members
    assert (await nodes[2].chats.get(chat.chat_id)).version == len(changes) + 1
    assert changes
