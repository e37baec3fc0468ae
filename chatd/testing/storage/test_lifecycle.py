"""Storage as a whole: it answers pings, and what was written survives a restart."""

from __future__ import annotations

import asyncio

import pytest

from chatd.core.errors import ChatdError
from chatd.core.ids import now_ms
from chatd.core.models import Contact, PendingChat, WatermarkMove


async def test_open_storage_answers_ping(storage):
    assert await storage.ping() is True


async def test_data_survives_close_and_reopen(
    backend, storage, make_user, make_device, make_direct, send, draft
):
    alice = await make_user("Alice", status_message="hi")
    bob = await make_user("bob")
    phone = await make_device(alice, "phone", token_hash="th-phone")
    laptop = await make_device(alice, "laptop")
    await storage.contacts.put(Contact(alice.user_id, bob.user_id, "Bobby", now_ms()))
    await storage.invites.create("invite", 2, None)
    assert await storage.invites.consume("invite", now_ms())
    chat = await make_direct(alice, bob)
    sent = [await send(chat, bob, client_msg_id=f"c{i}") for i in range(3)]
    await storage.receipts.advance(
        [WatermarkMove(chat.chat_id, alice.user_id, phone.device_id, delivered_seq=2, read_seq=1)]
    )
    _, cursor = await storage.devices.revocations_since(-1)
    await storage.devices.revoke(laptop.device_id)
    await storage.users.update(bob.user_id, display_name="Robert")

    await backend.close(storage)
    storage = await backend.open()

    assert (await storage.users.get_by_name("alice")).status_message == "hi"
    assert (await storage.users.get(bob.user_id)).display_name == "Robert"
    assert await storage.devices.by_token("th-phone") == phone
    assert await storage.devices.list_for_user(alice.user_id) == [phone]
    assert await storage.devices.revocations_since(cursor) == (
        [laptop.device_id],
        (await storage.devices.revocations_since(-1))[1],
    )
    assert [c.name for c in await storage.contacts.list_for_user(alice.user_id)] == ["Bobby"]
    assert await storage.contacts.watchers(bob.user_id) == [alice.user_id]
    assert await storage.invites.consume("invite", now_ms()) is True
    assert await storage.invites.consume("invite", now_ms()) is False
    assert (await storage.chats.get(chat.chat_id)).last_seq == 3
    assert await storage.chats.direct_peers(bob.user_id) == [alice.user_id]
    assert await storage.messages.after(chat.chat_id, 0, 10) == sent
    member = await storage.chats.member(chat.chat_id, alice.user_id)
    assert (member.delivered_seq, member.read_seq) == (2, 1)
    assert await storage.receipts.pending(alice.user_id, phone.device_id) == [
        PendingChat(chat.chat_id, 2, 3)
    ]

    # Sequencing and idempotency carry on where they were.
    repeat = await storage.messages.append(draft(chat, bob, client_msg_id="c1"))
    assert repeat.created is False and repeat.message == sent[1]
    nxt = await storage.messages.append(draft(chat, alice, client_msg_id="c1"))
    assert nxt.created is True and nxt.message.seq == 4
    assert nxt.message.message_id > sent[-1].message_id
    again = await storage.chats.get_or_create_direct(chat, bob.user_id, alice.user_id)
    assert again.chat_id == chat.chat_id


async def test_acknowledged_concurrent_writes_survive_a_restart(
    backend, storage, make_user, make_direct, draft
):
    alice, bob = await make_user("alice"), await make_user("bob")
    chat = await make_direct(alice, bob)
    results = await asyncio.gather(
        *(storage.messages.append(draft(chat, alice if i % 2 else bob)) for i in range(100))
    )
    await backend.close(storage)
    storage = await backend.open()
    stored = await storage.messages.after(chat.chat_id, 0, 200)
    assert stored == sorted((r.message for r in results), key=lambda m: m.seq)


async def test_close_finishes_writes_already_submitted(
    backend, storage, make_user, make_direct, draft
):
    alice, bob = await make_user("alice"), await make_user("bob")
    chat = await make_direct(alice, bob)
    appends = [asyncio.create_task(storage.messages.append(draft(chat, alice))) for _ in range(50)]
    await asyncio.sleep(0)  # every append is now waiting on the store
    await backend.close(storage)
    results = await asyncio.wait_for(asyncio.gather(*appends), 5)
    assert sorted(r.message.seq for r in results) == list(range(1, 51))

    storage = await backend.open()
    assert len(await storage.messages.after(chat.chat_id, 0, 100)) == 50


async def test_a_write_during_or_after_close_fails_instead_of_hanging(
    backend, storage, make_user, make_direct, draft
):
    alice, bob = await make_user("alice"), await make_user("bob")
    chat = await make_direct(alice, bob)
    closing = asyncio.create_task(backend.close(storage))
    await asyncio.sleep(0)  # close has begun
    late = asyncio.create_task(storage.messages.append(draft(chat, alice)))
    late_job = asyncio.create_task(storage.invites.create("late", 1, None))
    await asyncio.wait_for(closing, 5)
    for task in (late, late_job):
        done, _ = await asyncio.wait({task}, timeout=5)
        assert done, "a write issued while the store closes must not hang"
        if task.exception() is not None:
            assert isinstance(task.exception(), ChatdError)
            assert task.exception().code == "unavailable"

    with pytest.raises(ChatdError) as info:
        await storage.messages.append(draft(chat, alice))
    assert info.value.code == "unavailable"
