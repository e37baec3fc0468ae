"""Groups in the storage port: atomic creation, compare-and-set changes, past members."""

from __future__ import annotations

import asyncio

import pytest

from chatd.core.errors import ChatdError, StaleVersion
from chatd.core.ids import new_id, now_ms
from chatd.core.models import Chat, GroupChange, Member


def group_record(creator: str) -> Chat:
    return Chat(
        chat_id=new_id(),
        kind="group",
        created_at=now_ms(),
        title="team",
        description="d",
        created_by=creator,
    )


@pytest.fixture
def make_group(storage, draft):
    async def make(admin, *others):
        chat = group_record(admin.user_id)
        members = [Member(chat.chat_id, admin.user_id, "admin", now_ms())] + [
            Member(chat.chat_id, u.user_id, "member", now_ms()) for u in others
        ]
        first = await storage.chats.create_group(chat, members, draft(chat, admin, type="system"))
        return chat, first

    return make


def change(storage_chat, version, draft, actor, **kwargs):
    return GroupChange(
        storage_chat.chat_id, version, draft(storage_chat, actor, type="system"), **kwargs
    )


async def test_create_group_stores_members_and_a_first_system_message(
    storage, make_user, make_group
):
    alice, bob = await make_user(), await make_user()
    chat, first = await make_group(alice, bob)
    assert first.seq == 1 and first.type == "system"
    stored = await storage.chats.get(chat.chat_id)
    assert (stored.kind, stored.title, stored.last_seq, stored.version) == ("group", "team", 1, 1)
    members = await storage.chats.members(chat.chat_id)
    assert [(m.user_id, m.role) for m in members] == [
        (alice.user_id, "admin"),
        (bob.user_id, "member"),
    ]
    me = await storage.chats.member(chat.chat_id, alice.user_id)
    assert (me.read_seq, me.delivered_seq) == (1, 1)  # the actor has seen its own notice
    assert chat.chat_id in await storage.chats.group_ids(100)


async def test_change_group_applies_adds_removes_roles_and_settings(
    storage, make_user, make_group, draft
):
    alice, bob, carol = await make_user(), await make_user(), await make_user()
    chat, _ = await make_group(alice, bob)
    message = await storage.chats.change_group(
        change(
            chat,
            1,
            draft,
            alice,
            add=(carol.user_id,),
            remove=(bob.user_id,),
            roles=((carol.user_id, "admin"),),
            settings=(("title", "renamed"),),
        )
    )
    assert message.seq == 2
    assert {(m.user_id, m.role) for m in await storage.chats.members(chat.chat_id)} == {
        (alice.user_id, "admin"),
        (carol.user_id, "admin"),
    }
    bob_then = await storage.chats.member(chat.chat_id, bob.user_id)
    assert bob_then.left_seq == 2 and not bob_then.active
    carol_now = await storage.chats.member(chat.chat_id, carol.user_id)
    assert carol_now.joined_seq == 1 and carol_now.sees(2) and not carol_now.sees(1)
    stored = await storage.chats.get(chat.chat_id)
    assert (stored.title, stored.last_seq, stored.version) == ("renamed", 2, 2)


async def test_stale_version_changes_nothing(storage, make_user, make_group, draft):
    alice, bob = await make_user(), await make_user()
    chat, _ = await make_group(alice)
    with pytest.raises(StaleVersion):
        await storage.chats.change_group(change(chat, 0, draft, alice, add=(bob.user_id,)))
    assert [m.user_id for m in await storage.chats.members(chat.chat_id)] == [alice.user_id]
    assert (await storage.chats.get(chat.chat_id)).last_seq == 1


async def test_concurrent_changes_from_one_version_only_one_wins(
    storage, make_user, make_group, draft
):
    alice = await make_user()
    others = [await make_user() for _ in range(10)]
    chat, _ = await make_group(alice)
    results = await asyncio.gather(
        *(
            storage.chats.change_group(change(chat, 1, draft, alice, add=(u.user_id,)))
            for u in others
        ),
        return_exceptions=True,
    )
    assert sum(not isinstance(r, BaseException) for r in results) == 1
    assert all(isinstance(r, StaleVersion) for r in results if isinstance(r, BaseException))
    assert len(await storage.chats.members(chat.chat_id)) == 2


async def test_a_removed_member_can_rejoin_from_the_new_point(
    storage, make_user, make_group, draft, send
):
    alice, bob = await make_user(), await make_user()
    chat, _ = await make_group(alice, bob)
    await storage.chats.change_group(change(chat, 1, draft, alice, remove=(bob.user_id,)))
    await send(chat, alice)
    await storage.chats.change_group(change(chat, 2, draft, alice, add=(bob.user_id,)))
    bob_now = await storage.chats.member(chat.chat_id, bob.user_id)
    assert bob_now.active and bob_now.joined_seq == 3 and bob_now.role == "member"


async def test_append_refuses_a_sender_who_is_not_a_current_member(
    storage, make_user, make_group, draft, send
):
    alice, bob, mallory = await make_user(), await make_user(), await make_user()
    chat, _ = await make_group(alice, bob)
    await storage.chats.change_group(change(chat, 1, draft, alice, remove=(bob.user_id,)))
    for outsider in (bob, mallory):
        with pytest.raises(ChatdError) as err:
            await storage.messages.append(draft(chat, outsider))
        assert err.value.code == "not_found"
    assert (await storage.chats.get(chat.chat_id)).last_seq == 2
    assert (await send(chat, alice)).seq == 3


async def test_pending_stops_where_a_member_left(storage, make_user, make_group, draft, send):
    alice, bob = await make_user(), await make_user()
    chat, _ = await make_group(alice, bob)
    await send(chat, alice)
    await storage.chats.change_group(change(chat, 1, draft, alice, remove=(bob.user_id,)))
    await send(chat, alice)
    (pending,) = await storage.receipts.pending(bob.user_id, "bob-device")
    assert (pending.after_seq, pending.last_seq) == (0, 3)


async def test_pending_starts_where_a_member_joined(storage, make_user, make_group, draft, send):
    alice, bob = await make_user(), await make_user()
    chat, _ = await make_group(alice)
    await send(chat, alice)
    await storage.chats.change_group(change(chat, 1, draft, alice, add=(bob.user_id,)))
    (pending,) = await storage.receipts.pending(bob.user_id, "bob-device")
    assert (pending.after_seq, pending.last_seq) == (2, 3)
