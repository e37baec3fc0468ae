"""ScyllaDB-only test helpers: several nodes on one keyspace, and builders.

Each "node" is its own ``ScyllaStorage`` (own connection pool, own in-process
batching and caches) on the same keyspace, as two chatd processes would be.
"""

from __future__ import annotations

import asyncio

import pytest

from chatd.core.ids import new_id, now_ms
from chatd.core.models import Chat, Member, MessageDraft
from chatd.testing.storage.kit import Backend, user_record
from tests.scylla_server import scylla_server


@pytest.fixture
async def nodes(backend: Backend) -> list:
    """Three opened ``ScyllaStorage`` nodes on one empty keyspace."""
    return [await backend.open() for _ in range(3)]


async def cql(query: str, params: object = None) -> list:
    return await asyncio.to_thread(scylla_server().execute, query, params)


async def users(node, n: int):
    made = [user_record() for _ in range(n)]
    for u in made:
        await node.users.create(u)
    return made


def draft(chat_id: str, sender, cmid: str | None = None, device: str = "dev") -> MessageDraft:
    return MessageDraft(chat_id, sender.user_id, device, "text", "hi", cmid or new_id())


async def direct(node, a, b) -> Chat:
    now = now_ms()
    return await node.chats.get_or_create_direct(
        Chat(new_id(), "direct", now, created_by=a.user_id, last_activity=now), a.user_id, b.user_id
    )


async def group(node, admin, *others) -> Chat:
    now = now_ms()
    chat = Chat(new_id(), "group", now, title="g", created_by=admin.user_id)
    members = [Member(chat.chat_id, admin.user_id, "admin", now)]
    members += [Member(chat.chat_id, u.user_id, "member", now) for u in others]
    system = MessageDraft(chat.chat_id, admin.user_id, "dev", "system", "{}", f"s:{new_id()}")
    await node.chats.create_group(chat, members, system)
    stored = await node.chats.get(chat.chat_id)
    assert stored is not None
    return stored


def system(chat_id: str, actor) -> MessageDraft:
    return MessageDraft(chat_id, actor.user_id, "dev", "system", "{}", f"s:{new_id()}")
