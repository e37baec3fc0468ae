"""Chats, groups and memberships on SQLite."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

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
    width,
)

_SETTINGS = frozenset({"title", "description", "avatar_media_id"})


def _system_message(draft: MessageDraft, seq: int, now: int) -> Message:
    return draft.to_message(message_id=new_id(), seq=seq, created_at=now)


def _append_system(conn: sqlite3.Connection, message: Message) -> None:
    """Store a system message and move the chat and the actor's watermarks to it."""
    conn.execute(INSERT_MESSAGE, message_row(message))
    conn.execute(
        "UPDATE chats SET last_seq = ?, last_activity = ?, version = version + 1 WHERE chat_id = ?",
        (message.seq, message.created_at, message.chat_id),
    )
    rows = conn.execute(
        "SELECT delivered_seq, read_seq FROM members WHERE chat_id = ? AND user_id = ?",
        (message.chat_id, message.sender_id),
    ).fetchall()
    if rows:
        marks = sent(Marks(int(rows[0][0]), int(rows[0][1])), message.seq)
        conn.execute(
            "UPDATE members SET delivered_seq = ?, read_seq = ? WHERE chat_id = ? AND user_id = ?",
            (*marks, message.chat_id, message.sender_id),
        )


class SqliteChats:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get_or_create_direct(self, chat: Chat, user_a: str, user_b: str) -> Chat:
        key = ":".join(sorted((user_a, user_b)))

        def write(conn: sqlite3.Connection) -> str:
            rows = conn.execute("SELECT chat_id FROM chats WHERE direct_key = ?", (key,)).fetchall()
            if rows:
                return str(rows[0][0])
            conn.execute(
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
            conn.executemany(
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
        def write(conn: sqlite3.Connection) -> Message:
            now = now_ms()
            conn.execute(
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
            conn.executemany(
                f"INSERT INTO members ({MEMBER_COLUMNS}) VALUES (?,?,?,?,0,0,0,NULL)",
                [(chat.chat_id, m.user_id, m.role, m.joined_at) for m in members],
            )
            message = _system_message(system, 1, now)
            _append_system(conn, message)
            return message

        return await self._db.job(write)

    async def change_group(self, change: GroupChange) -> Message:
        unknown = {name for name, _ in change.settings} - _SETTINGS
        if unknown:
            raise ValueError(f"not a group setting: {sorted(unknown)}")

        def write(conn: sqlite3.Connection) -> Message:
            rows = conn.execute(
                "SELECT version, last_seq FROM chats WHERE chat_id = ? AND kind = 'group'",
                (change.chat_id,),
            ).fetchall()
            if not rows:
                raise ChatdError("not_found", "group not found")
            version, last_seq = int(rows[0][0]), int(rows[0][1])
            if version != change.expected_version:
                raise StaleVersion("the group changed meanwhile; retry")
            now = now_ms()
            seq = last_seq + 1
            conn.executemany(
                f"INSERT INTO members ({MEMBER_COLUMNS}) VALUES (?,?,'member',?,?,?,?,NULL) "
                "ON CONFLICT (chat_id, user_id) DO UPDATE SET role = 'member', "
                "joined_at = excluded.joined_at, joined_seq = excluded.joined_seq, "
                "delivered_seq = max(delivered_seq, excluded.delivered_seq), "
                "read_seq = max(read_seq, excluded.read_seq), left_seq = NULL",
                [(change.chat_id, uid, now, last_seq, last_seq, last_seq) for uid in change.add],
            )
            conn.executemany(
                "UPDATE members SET left_seq = ? "
                "WHERE chat_id = ? AND user_id = ? AND left_seq IS NULL",
                [(seq, change.chat_id, uid) for uid in change.remove],
            )
            conn.executemany(
                "UPDATE members SET role = ? "
                "WHERE chat_id = ? AND user_id = ? AND left_seq IS NULL",
                [(role, change.chat_id, uid) for uid, role in change.roles],
            )
            for name, value in change.settings:
                conn.execute(
                    f"UPDATE chats SET {name} = ? WHERE chat_id = ?", (value, change.chat_id)
                )
            message = _system_message(change.system, seq, now)
            _append_system(conn, message)
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

    async def inbox(
        self, user_id: str, limit: int, before: tuple[int, str] | None = None
    ) -> list[tuple[Chat, Member]]:
        # The user's rows of members_by_user, each joined to its chat by key; SQLite
        # keeps only the best ``limit`` while it sorts (no Python object per chat).
        chat_cols = ", ".join(f"c.{c.strip()}" for c in CHAT_COLUMNS.split(","))
        member_cols = ", ".join(f"m.{c.strip()}" for c in MEMBER_COLUMNS.split(","))
        below = "AND (c.last_activity, c.chat_id) < (?, ?) " if before else ""
        rows = await self._db.fetchall(
            f"SELECT {chat_cols}, {member_cols} FROM members m "
            "JOIN chats c ON c.chat_id = m.chat_id "
            f"WHERE m.user_id = ? {below}"
            "ORDER BY c.last_activity DESC, c.chat_id DESC LIMIT ?",
            (user_id, *(before or ()), limit),
        )
        split = width(CHAT_COLUMNS)
        return [(chat_of(r[:split]), member_of(r[split:])) for r in rows]

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
