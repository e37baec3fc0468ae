"""ScyllaDB only: media references and retention when a step of a write fails."""

from __future__ import annotations

from typing import Any

import pytest

from chatd.core.errors import ChatdError
from chatd.core.ids import now_ms
from chatd.testing.storage.test_media import record


async def test_scylla_an_append_answers_only_once_its_reference_is_written(
    backend, storage, make_user, make_direct, draft, monkeypatch
):
    """ScyllaDB: the reference row is written after the seq claim. If that write
    fails the append fails, and its retry (a repeat) writes the row; if marking
    the media fails before the claim, nothing is stored and the key is free."""
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
