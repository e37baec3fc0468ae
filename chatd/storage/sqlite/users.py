"""Users on SQLite."""

from __future__ import annotations

import sqlite3
from typing import Any

from chatd.core.errors import ChatdError
from chatd.core.models import User
from chatd.storage.sqlite.db import Database

_COLUMNS = (
    "user_id, username, display_name, password_hash, created_at, status_message, "
    "avatar_media_id, is_admin, banned, last_seen, group_add"
)
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


def _user(row: tuple[Any, ...]) -> User:
    return User(
        *row[:7], is_admin=bool(row[7]), banned=bool(row[8]), last_seen=row[9], group_add=row[10]
    )


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class SqliteUsers:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, user: User) -> None:
        def insert(conn: sqlite3.Connection) -> None:
            try:
                conn.execute(
                    f"INSERT INTO users ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        user.user_id,
                        user.username.lower(),
                        user.display_name,
                        user.password_hash,
                        user.created_at,
                        user.status_message,
                        user.avatar_media_id,
                        int(user.is_admin),
                        int(user.banned),
                        user.last_seen,
                        user.group_add,
                    ),
                )
            except sqlite3.IntegrityError as exc:
                raise ChatdError("conflict", "username is taken") from exc

        await self._db.job(insert)

    async def get(self, user_id: str) -> User | None:
        row = await self._db.fetchone(f"SELECT {_COLUMNS} FROM users WHERE user_id = ?", (user_id,))
        return _user(row) if row else None

    async def get_by_name(self, username: str) -> User | None:
        row = await self._db.fetchone(
            f"SELECT {_COLUMNS} FROM users WHERE username = ?", (username.lower(),)
        )
        return _user(row) if row else None

    async def search(self, prefix: str, limit: int) -> list[User]:
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM users WHERE username LIKE ? ESCAPE '\\' "
            "ORDER BY username LIMIT ?",
            (_escape_like(prefix.lower()) + "%", limit),
        )
        return [_user(r) for r in rows]

    async def list_all(self, limit: int, after_username: str = "") -> list[User]:
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM users WHERE username > ? ORDER BY username LIMIT ?",
            (after_username, limit),
        )
        return [_user(r) for r in rows]

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
