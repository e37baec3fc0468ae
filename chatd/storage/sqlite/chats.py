"""Chats and memberships on SQLite."""

from __future__ import annotations

from typing import Any

import aiosqlite

from chatd.core.models import Chat, Member
from chatd.storage.sqlite.db import Database

_CHAT = (
    "chat_id, kind, created_at, title, description, avatar_media_id, created_by, last_seq, "
    "last_activity"
)
_MEMBER = "chat_id, user_id, role, joined_at, joined_seq, delivered_seq, read_seq"


def _chat(row: tuple[Any, ...]) -> Chat:
    return Chat(*row)


def _member(row: tuple[Any, ...]) -> Member:
    return Member(*row)


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
                f"INSERT INTO chats ({_CHAT}, direct_key) VALUES (?,?,?,?,?,?,?,?,?,?)",
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
                    key,
                ),
            )
            await conn.executemany(
                f"INSERT INTO members ({_MEMBER}) VALUES (?,?,?,?,0,0,0)",
                [(chat.chat_id, uid, "member", chat.created_at) for uid in {user_a, user_b}],
            )
            return chat.chat_id

        found = await self._db.fetchone("SELECT chat_id FROM chats WHERE direct_key = ?", (key,))
        chat_id = str(found[0]) if found else await self._db.job(write)
        existing = await self.get(chat_id)
        assert existing is not None
        return existing

    async def get(self, chat_id: str) -> Chat | None:
        row = await self._db.fetchone(f"SELECT {_CHAT} FROM chats WHERE chat_id = ?", (chat_id,))
        return _chat(row) if row else None

    async def members(self, chat_id: str) -> list[Member]:
        rows = await self._db.fetchall(
            f"SELECT {_MEMBER} FROM members WHERE chat_id = ? ORDER BY joined_at, user_id",
            (chat_id,),
        )
        return [_member(r) for r in rows]

    async def member(self, chat_id: str, user_id: str) -> Member | None:
        row = await self._db.fetchone(
            f"SELECT {_MEMBER} FROM members WHERE chat_id = ? AND user_id = ?", (chat_id, user_id)
        )
        return _member(row) if row else None

    async def memberships(self, user_id: str) -> list[Member]:
        rows = await self._db.fetchall(
            f"SELECT {_MEMBER} FROM members WHERE user_id = ?", (user_id,)
        )
        return [_member(r) for r in rows]

    async def direct_peers(self, user_id: str) -> list[str]:
        rows = await self._db.fetchall(
            "SELECT other.user_id FROM members me "
            "JOIN chats c ON c.chat_id = me.chat_id AND c.kind = 'direct' "
            "JOIN members other ON other.chat_id = me.chat_id AND other.user_id != me.user_id "
            "WHERE me.user_id = ?",
            (user_id,),
        )
        return [r[0] for r in rows]
