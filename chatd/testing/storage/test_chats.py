"""ChatStore: the one direct chat of two users, members, memberships, peers."""

from __future__ import annotations

import asyncio

from chatd.core.ids import new_id, now_ms
from chatd.core.models import Chat


def candidate(created_by: str | None = None) -> Chat:
    now = now_ms()
    return Chat(new_id(), "direct", now, created_by=created_by, last_activity=now)


async def test_get_or_create_direct_stores_the_candidate(storage, make_user):
    alice, bob = await make_user("alice"), await make_user("bob")
    proposed = candidate(alice.user_id)
    chat = await storage.chats.get_or_create_direct(proposed, alice.user_id, bob.user_id)
    assert chat.chat_id == proposed.chat_id
    assert chat.kind == "direct"
    assert chat.created_at == proposed.created_at
    assert chat.created_by == alice.user_id
    assert chat.last_seq == 0
    assert await storage.chats.get(chat.chat_id) == chat
    assert await storage.chats.get(new_id()) is None


async def test_direct_chat_is_the_same_in_either_order(storage, make_user):
    alice, bob, carol = await make_user("alice"), await make_user("bob"), await make_user("carol")
    first = await storage.chats.get_or_create_direct(candidate(), alice.user_id, bob.user_id)
    second_candidate = candidate()
    again = await storage.chats.get_or_create_direct(second_candidate, bob.user_id, alice.user_id)
    assert again == first
    assert await storage.chats.get(second_candidate.chat_id) is None

    other = await storage.chats.get_or_create_direct(candidate(), alice.user_id, carol.user_id)
    assert other.chat_id != first.chat_id


async def test_concurrent_get_or_create_direct_makes_exactly_one_chat(storage, make_user):
    alice, bob = await make_user("alice"), await make_user("bob")
    candidates = [candidate() for _ in range(20)]
    chats = await asyncio.gather(
        *(
            storage.chats.get_or_create_direct(
                c, *((alice.user_id, bob.user_id) if i % 2 else (bob.user_id, alice.user_id))
            )
            for i, c in enumerate(candidates)
        )
    )
    assert len({c.chat_id for c in chats}) == 1
    chat_id = chats[0].chat_id
    assert chat_id in {c.chat_id for c in candidates}
    stored = [c for c in candidates if await storage.chats.get(c.chat_id) is not None]
    assert [c.chat_id for c in stored] == [chat_id]
    assert [m.chat_id for m in await storage.chats.memberships(alice.user_id)] == [chat_id]
    assert [m.chat_id for m in await storage.chats.memberships(bob.user_id)] == [chat_id]
    assert await storage.chats.direct_peers(alice.user_id) == [bob.user_id]
    assert len(await storage.chats.members(chat_id)) == 2


async def test_members_of_a_direct_chat(storage, make_user, make_direct):
    alice, bob, carol = await make_user("alice"), await make_user("bob"), await make_user("carol")
    chat = await make_direct(alice, bob)

    members = await storage.chats.members(chat.chat_id)
    assert sorted(m.user_id for m in members) == sorted([alice.user_id, bob.user_id])
    for m in members:
        assert m.chat_id == chat.chat_id
        assert m.role == "member"
        assert (m.joined_seq, m.delivered_seq, m.read_seq) == (0, 0, 0)
        assert await storage.chats.member(chat.chat_id, m.user_id) == m
    assert await storage.chats.member(chat.chat_id, carol.user_id) is None
    assert await storage.chats.member(new_id(), alice.user_id) is None
    assert await storage.chats.members(new_id()) == []


async def test_memberships_are_the_users_inbox(storage, make_user, make_direct):
    alice, bob, carol, dave = [await make_user(n) for n in ("alice", "bob", "carol", "dave")]
    with_bob = await make_direct(alice, bob)
    with_carol = await make_direct(carol, alice)

    mine = await storage.chats.memberships(alice.user_id)
    assert sorted(m.chat_id for m in mine) == sorted([with_bob.chat_id, with_carol.chat_id])
    assert all(m.user_id == alice.user_id for m in mine)
    for m in mine:
        assert await storage.chats.member(m.chat_id, alice.user_id) == m
    assert [m.chat_id for m in await storage.chats.memberships(bob.user_id)] == [with_bob.chat_id]
    assert await storage.chats.memberships(dave.user_id) == []


async def test_direct_peers(storage, make_user, make_direct):
    alice, bob, carol, dave = [await make_user(n) for n in ("alice", "bob", "carol", "dave")]
    await make_direct(alice, bob)
    await make_direct(carol, alice)
    await make_direct(bob, alice)  # the same chat again: no second peer entry

    assert sorted(await storage.chats.direct_peers(alice.user_id)) == sorted(
        [bob.user_id, carol.user_id]
    )
    assert await storage.chats.direct_peers(bob.user_id) == [alice.user_id]
    assert await storage.chats.direct_peers(dave.user_id) == []


async def test_two_nodes_agree_on_the_one_direct_chat(storage, second_node, make_user):
    alice, bob = await make_user("alice"), await make_user("bob")
    calls = []
    for i in range(20):
        node = storage if i % 2 else second_node
        pair = (alice.user_id, bob.user_id) if i % 3 else (bob.user_id, alice.user_id)
        calls.append(node.chats.get_or_create_direct(candidate(), *pair))
    chats = await asyncio.gather(*calls)
    assert len({c.chat_id for c in chats}) == 1
    assert len(await storage.chats.memberships(alice.user_id)) == 1
    assert await second_node.chats.direct_peers(bob.user_id) == [alice.user_id]


async def test_inbox_pages_by_recent_activity(storage, make_user, make_direct, send):
    alice = await make_user("alice")
    others = [await make_user(f"peer{i}") for i in range(5)]
    chats = [await make_direct(alice, other) for other in others]
    await asyncio.sleep(0.005)  # activity is in ms: each step below in a later one
    await send(chats[1], others[1])  # chat 1, then chat 3, have the latest activity
    await asyncio.sleep(0.005)
    await send(chats[3], alice)
    await make_direct(others[0], others[2])  # not alice's

    def key(chat: Chat) -> tuple[int, str]:
        return (chat.last_activity, chat.chat_id)

    current = [await storage.chats.get(c.chat_id) for c in chats]
    expected = sorted(current, key=key, reverse=True)  # type: ignore[arg-type]
    assert [c.chat_id for c in expected[:2]] == [chats[3].chat_id, chats[1].chat_id]

    walked: list[str] = []
    before = None
    while page := await storage.chats.inbox(alice.user_id, 2, before):
        assert len(page) <= 2
        for chat, me in page:
            assert me == await storage.chats.member(chat.chat_id, alice.user_id)
            assert chat == await storage.chats.get(chat.chat_id)
        walked += [chat.chat_id for chat, _ in page]
        before = key(page[-1][0])
    assert walked == [c.chat_id for c in expected]
    assert await storage.chats.inbox(others[4].user_id, 10) == [
        (current[4], await storage.chats.member(chats[4].chat_id, others[4].user_id))
    ]
