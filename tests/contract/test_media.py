"""MediaStore: records, references recorded by message appends, retention candidates."""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest

from chatd.core.errors import ChatdError
from chatd.core.ids import new_id, now_ms
from chatd.core.models import Appended, Media


def record(uploader: str, sha: str = "a" * 64, **fields: object) -> Media:
    values: dict[str, object] = {
        "media_id": new_id(),
        "uploader_id": uploader,
        "sha256": sha,
        "mime_type": "image/png",
        "size": 1234,
        "created_at": now_ms(),
    }
    values.update(fields)
    return Media(**values)  # type: ignore[arg-type]


async def test_create_and_get_keep_every_field(storage, make_user):
    alice = await make_user("alice")
    full = record(
        alice.user_id,
        filename="holiday photo.png",
        width=640,
        height=480,
        duration_ms=None,
        thumbnail_sha256="b" * 64,
        thumbnail_mime="image/jpeg",
        thumbnail_size=321,
    )
    bare = record(alice.user_id, mime_type="application/pdf")
    await storage.media.create(full)
    await storage.media.create(bare)
    assert await storage.media.get(full.media_id) == full
    assert await storage.media.get(bare.media_id) == bare
    assert await storage.media.get("no-such-media") is None


async def test_get_many_returns_the_existing_ones_by_id(storage, make_user):
    alice = await make_user("alice")
    records = [record(alice.user_id, sha=f"{i:064x}") for i in range(3)]
    for r in records:
        await storage.media.create(r)
    wanted = [records[0].media_id, "missing", records[2].media_id, records[0].media_id]
    found = await storage.media.get_many(wanted)
    assert found == {records[0].media_id: records[0], records[2].media_id: records[2]}
    assert await storage.media.get_many([]) == {}


async def test_an_append_records_the_reference(storage, make_user, make_direct, draft):
    alice, bob = await make_user("alice"), await make_user("bob")
    chat = await make_direct(alice, bob)
    media = record(alice.user_id)
    await storage.media.create(media)
    assert await storage.media.references(media.media_id) == []

    await storage.messages.append(draft(chat, alice, type="text"))
    first = (
        await storage.messages.append(draft(chat, alice, type="image", media_id=media.media_id))
    ).message
    again = (
        await storage.messages.append(draft(chat, bob, type="image", media_id=media.media_id))
    ).message

    refs = await storage.media.references(media.media_id)
    assert [(r.chat_id, r.seq, r.message_id) for r in refs] == [
        (chat.chat_id, first.seq, first.message_id),
        (chat.chat_id, again.seq, again.message_id),
    ]
    assert all(r.media_id == media.media_id for r in refs)
    assert len(await storage.media.references(media.media_id, limit=1)) == 1


async def test_only_old_unreferenced_records_are_retention_candidates(
    storage, make_user, make_direct, draft
):
    alice, bob = await make_user("alice"), await make_user("bob")
    chat = await make_direct(alice, bob)
    now = now_ms()
    old_unsent = record(alice.user_id, sha="1" * 64, created_at=now - 10_000)
    old_sent = record(alice.user_id, sha="2" * 64, created_at=now - 9_000)
    new_unsent = record(alice.user_id, sha="3" * 64, created_at=now)
    for r in (old_unsent, old_sent, new_unsent):
        await storage.media.create(r)
    await storage.messages.append(draft(chat, alice, type="image", media_id=old_sent.media_id))

    candidates = await storage.media.unreferenced(now - 1_000, limit=10)
    assert [m.media_id for m in candidates] == [old_unsent.media_id]
    assert await storage.media.unreferenced(now - 1_000, limit=0) == []


async def test_delete_unreferenced_never_deletes_a_referenced_record(
    storage, make_user, make_direct, draft
):
    alice, bob = await make_user("alice"), await make_user("bob")
    chat = await make_direct(alice, bob)
    unsent, sent = record(alice.user_id, sha="1" * 64), record(alice.user_id, sha="2" * 64)
    await storage.media.create(unsent)
    await storage.media.create(sent)
    await storage.messages.append(draft(chat, bob, type="file", media_id=sent.media_id))

    assert await storage.media.delete_unreferenced(sent.media_id) is False
    assert await storage.media.get(sent.media_id) == sent
    assert await storage.media.delete_unreferenced(unsent.media_id) is True
    assert await storage.media.get(unsent.media_id) is None
    assert await storage.media.delete_unreferenced(unsent.media_id) is False


async def test_blob_in_use_counts_files_and_thumbnails(storage, make_user):
    alice = await make_user("alice")
    one = record(alice.user_id, sha="1" * 64, thumbnail_sha256="2" * 64)
    two = record(alice.user_id, sha="1" * 64)  # the same bytes uploaded again
    await storage.media.create(one)
    await storage.media.create(two)
    assert await storage.media.blob_in_use("1" * 64)
    assert await storage.media.blob_in_use("2" * 64)
    assert not await storage.media.blob_in_use("3" * 64)

    assert await storage.media.delete_unreferenced(one.media_id)
    assert await storage.media.blob_in_use("1" * 64)  # still served by ``two``
    assert not await storage.media.blob_in_use("2" * 64)
    assert await storage.media.delete_unreferenced(two.media_id)
    assert not await storage.media.blob_in_use("1" * 64)


async def test_records_and_references_survive_a_restart(
    backend, storage, make_user, make_direct, draft
):
    alice, bob = await make_user("alice"), await make_user("bob")
    chat = await make_direct(alice, bob)
    media = record(alice.user_id, created_at=now_ms() - 60_000)
    await storage.media.create(media)
    appended = await storage.messages.append(
        draft(chat, alice, type="image", media_id=media.media_id)
    )
    await backend.close(storage)

    reopened = await backend.open()
    assert await reopened.media.get(media.media_id) == media
    refs = await reopened.media.references(media.media_id)
    assert [r.message_id for r in refs] == [appended.message.message_id]
    assert await reopened.media.unreferenced(now_ms(), limit=10) == []


async def test_a_repeated_send_records_one_reference(storage, make_user, make_direct, draft):
    alice, bob = await make_user("alice"), await make_user("bob")
    chat = await make_direct(alice, bob)
    media = record(alice.user_id)
    await storage.media.create(media)
    first_draft = draft(chat, alice, type="image", media_id=media.media_id)
    first = await storage.messages.append(first_draft)
    repeat = await storage.messages.append(first_draft)

    assert (first.created, repeat.created) == (True, False)
    refs = await storage.media.references(media.media_id)
    assert [r.message_id for r in refs] == [first.message.message_id]
    assert await storage.media.delete_unreferenced(media.media_id) is False


async def test_unreferenced_pages_oldest_first_across_hours_and_days(
    storage, make_user, make_direct, draft
):
    alice, bob = await make_user("alice"), await make_user("bob")
    chat = await make_direct(alice, bob)
    now, hour = now_ms(), 3_600_000
    ages = [50 * hour, 26 * hour, 25 * hour + 1, 3 * hour, 2 * hour + 5]
    old = [record(alice.user_id, sha=f"{i:064x}", created_at=now - a) for i, a in enumerate(ages)]
    sent = record(alice.user_id, sha="e" * 64, created_at=now - 26 * hour + 7)
    fresh = record(alice.user_id, sha="f" * 64, created_at=now)
    for r in [fresh, *reversed(old), sent]:
        await storage.media.create(r)
    await storage.messages.append(draft(chat, bob, type="file", media_id=sent.media_id))
    cutoff = now - hour

    assert await storage.media.unreferenced(cutoff, limit=10) == old
    assert await storage.media.unreferenced(cutoff, limit=2) == old[:2]
    assert await storage.media.unreferenced(now - 25 * hour, limit=10) == old[:3]
    for r in old[:2]:
        assert await storage.media.delete_unreferenced(r.media_id)
    assert await storage.media.unreferenced(cutoff, limit=10) == old[2:]
    for r in old[2:]:
        assert await storage.media.delete_unreferenced(r.media_id)
    assert await storage.media.unreferenced(cutoff, limit=10) == []

    # An hour emptied (and maybe forgotten) above still gets new records.
    late = record(alice.user_id, sha="d" * 64, created_at=now - 50 * hour + 1)
    await storage.media.create(late)
    assert await storage.media.unreferenced(cutoff, limit=10) == [late]


async def test_a_send_racing_retention_keeps_or_loses_the_record_atomically(
    storage, second_node, make_user, make_direct, draft
):
    """Sends on one node race deletions on another: a deletion that started after
    the send returned never succeeds, and a record that survives lists the message."""
    alice, bob = await make_user("alice"), await make_user("bob")
    chat = await make_direct(alice, bob)
    old = now_ms() - 3_600_000
    media = [record(alice.user_id, sha=f"{i:064x}", created_at=old) for i in range(24)]
    for m in media:
        await storage.media.create(m)
    sent_at: dict[str, float] = {}
    asked_at: dict[str, float] = {}

    async def send(m: Media, delay: float) -> Appended:
        await asyncio.sleep(delay)
        appended = await storage.messages.append(
            draft(chat, alice, type="image", media_id=m.media_id)
        )
        sent_at[m.media_id] = time.monotonic()
        return appended

    async def sweep(m: Media, delay: float) -> bool:
        await asyncio.sleep(delay)
        asked_at[m.media_id] = time.monotonic()
        return await second_node.media.delete_unreferenced(m.media_id)

    rng = random.Random(7)
    delays = [(rng.uniform(0, 0.03), rng.uniform(0, 0.03)) for _ in media]
    outcome = await asyncio.gather(
        asyncio.gather(*(send(m, d) for m, (d, _) in zip(media, delays, strict=True))),
        asyncio.gather(*(sweep(m, d) for m, (_, d) in zip(media, delays, strict=True))),
    )
    appended, deleted = outcome
    assert all(a.created for a in appended)
    for m, a, gone in zip(media, appended, deleted, strict=True):
        refs = await storage.media.references(m.media_id)
        assert [r.message_id for r in refs] == [a.message.message_id]
        if gone:
            assert asked_at[m.media_id] < sent_at[m.media_id], "deleted after the send returned"
            assert await storage.media.get(m.media_id) is None
            assert not await storage.media.blob_in_use(m.sha256)
        else:
            assert await second_node.media.get(m.media_id) == m
            assert await storage.media.blob_in_use(m.sha256)
        assert await second_node.media.delete_unreferenced(m.media_id) is False
    assert await storage.media.unreferenced(now_ms(), limit=100) == []


async def test_scylla_an_append_answers_only_once_its_reference_is_written(
    backend, storage, make_user, make_direct, draft, monkeypatch
):
    """ScyllaDB: the reference row is written after the seq claim. If that write
    fails the append fails, and its retry (a repeat) writes the row; if marking
    the media fails before the claim, nothing is stored and the key is free."""
    if backend.name != "scylla":
        pytest.skip("failure injection into the ScyllaDB adapter")
    alice, bob = await make_user("alice"), await make_user("bob")
    chat = await make_direct(alice, bob)
    media = record(alice.user_id)
    await storage.media.create(media)
    cql = storage.messages._cql
    writes = cql.writes

    async def refs_fail(items: list[tuple[Any, Any]]) -> None:
        if any(name == "media.add_ref" for name, _ in items):
            raise ChatdError("unavailable", "injected")
        return await writes(items)

    first = draft(chat, alice, type="image", media_id=media.media_id)
    monkeypatch.setattr(cql, "writes", refs_fail)
    with pytest.raises(ChatdError):
        await storage.messages.append(first)
    monkeypatch.setattr(cql, "writes", writes)
    assert await storage.media.delete_unreferenced(media.media_id) is False  # marked
    again = await storage.messages.append(first)
    assert again.created is False and again.message.seq == 1
    refs = await storage.media.references(media.media_id)
    assert [r.message_id for r in refs] == [again.message.message_id]

    other = record(alice.user_id, sha="9" * 64)
    await storage.media.create(other)
    second = draft(chat, bob, type="image", media_id=other.media_id)

    async def mark_fails(media_id: str) -> None:
        raise ChatdError("unavailable", "injected")

    monkeypatch.setattr(storage.media, "mark_referenced", mark_fails)
    with pytest.raises(ChatdError):
        await storage.messages.append(second)
    monkeypatch.undo()
    assert await storage.messages.at_seq(chat.chat_id, 2) is None
    stored = await storage.messages.append(second)
    assert (stored.created, stored.message.seq) == (True, 2)
    assert await storage.media.delete_unreferenced(other.media_id) is False


async def test_scylla_retention_removes_the_rows_of_a_create_that_died(
    backend, storage, make_user, monkeypatch
):
    """ScyllaDB: blob and retention rows go before the record. A create that died
    in between keeps its blob (safe) until retention finds the rows an hour later."""
    if backend.name != "scylla":
        pytest.skip("failure injection into the ScyllaDB adapter")
    alice = await make_user("alice")
    dead = record(alice.user_id, sha="7" * 64, created_at=now_ms() - 2 * 3_600_000)
    cql = storage.media._cql
    lwt = cql.lwt

    async def create_dies(stmt: Any, params: Any = (), **kw: Any) -> Any:
        if stmt == "media.create":
            raise ChatdError("unavailable", "injected")
        return await lwt(stmt, params, **kw)

    monkeypatch.setattr(cql, "lwt", create_dies)
    with pytest.raises(ChatdError):
        await storage.media.create(dead)
    monkeypatch.undo()
    assert await storage.media.get(dead.media_id) is None
    assert await storage.media.blob_in_use(dead.sha256)
    assert await storage.media.unreferenced(now_ms(), limit=10) == []
    assert not await storage.media.blob_in_use(dead.sha256)
    assert await storage.media.unreferenced(now_ms(), limit=10) == []
