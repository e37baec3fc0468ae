"""Chats, groups and memberships on SQLite."""

from __future__ import annotations

from collections.abc import Sequence

import aiosqlite

from chatd.core.errors import ChatdError, StaleVersion
from chatd.core.ids import new_id, now_ms
from chatd.core.models import Chat, GroupChange, Member, Message, MessageDraft
from chatd.core.watermarks import Marks, sent
from chatd.storage.sqlite.db import Database
from chatd.storage.sqlite.messages import INSERT_MESSAGE
from chatd.storage.sqlite.rows import (
    CHAT_COLUMNS,
    MEMBER_COLUMNS,
    chat_of,
    member_of,
    message_row,
    placeholders,
)

_SETTINGS = frozenset({"title", "description", "avatar_media_id"})


def _system_message(draft: MessageDraft, seq: int, now: int) -> Message:
    return draft.to_message(message_id=new_id(), seq=seq, created_at=now)


async def _append_system(conn: aiosqlite.Connection, message: Message) -> None:
    """Store a system message and move the chat and the actor's watermarks to it."""
    await conn.execute(INSERT_MESSAGE, message_row(message))
    await conn.execute(
        "UPDATE chats SET last_seq = ?, last_activity = ?, version = version + 1 WHERE chat_id = ?",
        (message.seq, message.created_at, message.chat_id),
    )
    rows = await conn.execute_fetchall(
        "SELECT delivered_seq, read_seq FROM members WHERE chat_id = ? AND user_id = ?",
        (message.chat_id, message.sender_id),
    )
    if rows:
        marks = sent(Marks(int(rows[0][0]), int(rows[0][1])), message.seq)
        await conn.execute(
            "UPDATE members SET delivered_seq = ?, read_seq = ? WHERE chat_id = ? AND user_id = ?",
            (*marks, message.chat_id, message.sender_id),
        )


class SqliteChats:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get_or_create_direct(self, chat: Chat, user_a: str, user_b: str) -> Chat:
        key = ":".join(sorted((user_a, user_b)))

        async def write(conn: aiosqlite.Connection) -> str:
            rows = await conn.execute_fetchall(
                "SELECT chat_id FROM chats WHERE direct_key = ?", (key,)
            )
            if rows:
                return str(rows[0][0])
            await conn.execute(
                f"INSERT INTO chats ({CHAT_COLUMNS}, direct_key) "
                f"VALUES ({placeholders(CHAT_COLUMNS)},?)",
                (
                    chat.chat_id,
                    "direct",
                    chat.created_at,
                    None,
                    None,
                    None,
                    chat.created_by,
                    0,
                    chat.created_at,
                    0,
                    key,
                ),
            )
            await conn.executemany(
                f"INSERT INTO members ({MEMBER_COLUMNS}) VALUES (?,?,?,?,0,0,0,NULL)",
                [(chat.chat_id, uid, "member", chat.created_at) for uid in {user_a, user_b}],
            )
            return chat.chat_id

        found = await self._db.fetchone("SELECT chat_id FROM chats WHERE direct_key = ?", (key,))
        chat_id = str(found[0]) if found else await self._db.job(write)
        existing = await self.get(chat_id)
        assert existing is not None
        return existing

    async def create_group(
        self, chat: Chat, members: Sequence[Member], system: MessageDraft
    ) -> Message:
        async def write(conn: aiosqlite.Connection) -> Message:
            now = now_ms()
            await conn.execute(
                f"INSERT INTO chats ({CHAT_COLUMNS}) VALUES ({placeholders(CHAT_COLUMNS)})",
                (
                    chat.chat_id,
                    "group",
                    chat.created_at,
                    chat.title,
                    chat.description,
                    chat.avatar_media_id,
                    chat.created_by,
                    0,
                    now,
                    0,
                ),
            )
            await conn.executemany(
                f"INSERT INTO members ({MEMBER_COLUMNS}) VALUES (?,?,?,?,0,0,0,NULL)",
                [(chat.chat_id, m.user_id, m.role, m.joined_at) for m in members],
            )
            message = _system_message(system, 1, now)
            await _append_system(conn, message)
            return message

        return await self._db.job(write)

    async def change_group(self, change: GroupChange) -> Message:
        unknown = {name for name, _ in change.settings} - _SETTINGS
        if unknown:
            raise ValueError(f"not a group setting: {sorted(unknown)}")

        async def write(conn: aiosqlite.Connection) -> Message:
            rows = await conn.execute_fetchall(
                "SELECT version, last_seq FROM chats WHERE chat_id = ? AND kind = 'group'",
                (change.chat_id,),
            )
            if not rows:
                raise ChatdError("not_found", "group not found")
            version, last_seq = int(rows[0][0]), int(rows[0][1])
            if version != change.expected_version:
                raise StaleVersion("the group changed meanwhile; retry")
            now = now_ms()
            seq = last_seq + 1
            await conn.executemany(
                f"INSERT INTO members ({MEMBER_COLUMNS}) VALUES (?,?,'member',?,?,?,?,NULL) "
                "ON CONFLICT (chat_id, user_id) DO UPDATE SET role = 'member', "
                "joined_at = excluded.joined_at, joined_seq = excluded.joined_seq, "
                "delivered_seq = max(delivered_seq, excluded.delivered_seq), "
                "read_seq = max(read_seq, excluded.read_seq), left_seq = NULL",
                [(change.chat_id, uid, now, last_seq, last_seq, last_seq) for uid in change.add],
            )
            await conn.executemany(
                "UPDATE members SET left_seq = ? "
                "WHERE chat_id = ? AND user_id = ? AND left_seq IS NULL",
                [(seq, change.chat_id, uid) for uid in change.remove],
            )
            await conn.executemany(
                "UPDATE members SET role = ? "
                "WHERE chat_id = ? AND user_id = ? AND left_seq IS NULL",
                [(role, change.chat_id, uid) for uid, role in change.roles],
            )
            for name, value in change.settings:
                await conn.execute(
                    f"UPDATE chats SET {name} = ? WHERE chat_id = ?", (value, change.chat_id)
                )
            message = _system_message(change.system, seq, now)
            await _append_system(conn, message)
            return message

        return await self._db.job(write)

    async def get(self, chat_id: str) -> Chat | None:
        row = await self._db.fetchone(
            f"SELECT {CHAT_COLUMNS} FROM chats WHERE chat_id = ?", (chat_id,)
        )
        return chat_of(row) if row else None

    async def members(self, chat_id: str) -> list[Member]:
        rows = await self._db.fetchall(
            f"SELECT {MEMBER_COLUMNS} FROM members WHERE chat_id = ? AND left_seq IS NULL "
            "ORDER BY joined_at, user_id",
            (chat_id,),
        )
        return [member_of(r) for r in rows]

    async def member(self, chat_id: str, user_id: str) -> Member | None:
        row = await self._db.fetchone(
            f"SELECT {MEMBER_COLUMNS} FROM members WHERE chat_id = ? AND user_id = ?",
            (chat_id, user_id),
        )
        return member_of(row) if row else None

    async def memberships(self, user_id: str) -> list[Member]:
        rows = await self._db.fetchall(
            f"SELECT {MEMBER_COLUMNS} FROM members WHERE user_id = ?", (user_id,)
        )
        return [member_of(r) for r in rows]

    async def direct_peers(self, user_id: str) -> list[str]:
        rows = await self._db.fetchall(
            "SELECT other.user_id FROM members me "
            "JOIN chats c ON c.chat_id = me.chat_id AND c.kind = 'direct' "
            "JOIN members other ON other.chat_id = me.chat_id AND other.user_id != me.user_id "
            "WHERE me.user_id = ?",
            (user_id,),
        )
        return [r[0] for r in rows]

    async def group_ids(self, limit: int, after: str = "") -> list[str]:
        rows = await self._db.fetchall(
            "SELECT chat_id FROM chats WHERE kind = 'group' AND chat_id > ? "
            "ORDER BY chat_id LIMIT ?",
            (after, limit),
        )
        return [r[0] for r in rows]
