"""Users on SQLite."""

from __future__ import annotations

import sqlite3

from chatd.core.errors import ChatdError
from chatd.core.models import User
from chatd.storage.sqlite.db import Database
from chatd.storage.sqlite.rows import USER_COLUMNS, placeholders, user_of, user_row

_UPDATABLE = frozenset(
    {
        "display_name",
        "status_message",
        "avatar_media_id",
        "password_hash",
        "is_admin",
        "banned",
        "last_seen",
        "group_add",
    }
)


_TOP = "\U0010ffff"  # above every character a username may hold


class SqliteUsers:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, user: User) -> None:
        def insert(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    f"INSERT INTO users ({USER_COLUMNS}) VALUES ({placeholders(USER_COLUMNS)})",
                    user_row(user),
                )
            except sqlite3.IntegrityError as exc:
                raise ChatdError("conflict", "username is taken") from exc

        await self._db.job(insert)

    async def get(self, user_id: str) -> User | None:
        row = await self._db.fetchone(
            f"SELECT {USER_COLUMNS} FROM users WHERE user_id = ?", (user_id,)
        )
        return user_of(row) if row else None

    async def get_by_name(self, username: str) -> User | None:
        row = await self._db.fetchone(
            f"SELECT {USER_COLUMNS} FROM users WHERE username = ?", (username.lower(),)
        )
        return user_of(row) if row else None

    async def search(self, prefix: str, limit: int, after: str = "") -> list[User]:
        # A range on the username index (names are stored lower-case), not LIKE.
        low = prefix.lower()
        rows = await self._db.fetchall(
            f"SELECT {USER_COLUMNS} FROM users WHERE username >= ? AND username > ? "
            "AND username < ? ORDER BY username LIMIT ?",
            (low, after, low + _TOP, limit),
        )
        return [user_of(r) for r in rows]

    async def list_all(self, limit: int, after_username: str = "") -> list[User]:
        rows = await self._db.fetchall(
            f"SELECT {USER_COLUMNS} FROM users WHERE username > ? ORDER BY username LIMIT ?",
            (after_username, limit),
        )
        return [user_of(r) for r in rows]

    async def update(self, user_id: str, **fields: object) -> User | None:
        unknown = set(fields) - _UPDATABLE
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        if fields:
            assignments = ", ".join(f"{name} = ?" for name in fields)
            values = [int(v) if isinstance(v, bool) else v for v in fields.values()]

            def write(conn: sqlite3.Connection) -> None:
                conn.execute(
                    f"UPDATE users SET {assignments} WHERE user_id = ?", (*values, user_id)
                )

            await self._db.job(write)
        return await self.get(user_id)
