"""StatsStore: whole-store counts of users, chats, messages and media."""

from __future__ import annotations

from chatd.core.ids import new_id, now_ms
from chatd.core.models import Media, MessageDraft


async def test_an_empty_store_counts_nothing(storage):
    totals = await storage.stats.totals()
    assert (totals.users, totals.chats, totals.messages) == (0, 0, 0)
    usage = await storage.stats.media_usage()
    assert (usage.files, usage.bytes, usage.unreferenced_files) == (0, 0, 0)


async def test_totals_count_users_chats_and_messages(storage, make_user, make_direct, send):
    alice, bob, carol = [await make_user(n) for n in ("alice", "bob", "carol")]
    first = await make_direct(alice, bob)
    second = await make_direct(alice, carol)
    for _ in range(3):
        await send(first, alice)
    await send(second, carol)
    totals = await storage.stats.totals()
    assert (totals.users, totals.chats, totals.messages) == (3, 2, 4)


def media(uploader: str, size: int) -> Media:
    return Media(
        media_id=new_id(),
        uploader_id=uploader,
        sha256=new_id(),
        mime_type="image/png",
        size=size,
        created_at=now_ms(),
    )


async def test_media_usage_counts_files_bytes_and_unreferenced(
    storage, make_user, make_direct, draft
):
    alice, bob = await make_user("alice"), await make_user("bob")
    chat = await make_direct(alice, bob)
    sent, kept = media(alice.user_id, 1000), media(alice.user_id, 234)
    for record in (sent, kept):
        await storage.media.create(record)
    message: MessageDraft = draft(chat, alice, media_id=sent.media_id)
    assert (await storage.messages.append(message)).created
    usage = await storage.stats.media_usage()
    assert (usage.files, usage.bytes, usage.unreferenced_files) == (2, 1234, 1)
