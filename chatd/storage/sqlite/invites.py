"""Registration invites on SQLite."""

from __future__ import annotations

import sqlite3

from chatd.storage.sqlite.db import Database


class SqliteInvites:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, code: str, uses: int, expires_at: int | None) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO invites (code, uses_left, expires_at) VALUES (?,?,?)",
                (code, uses, expires_at),
            )

        await self._db.job(write)

    async def consume(self, code: str, now: int) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE invites SET uses_left = uses_left - 1 WHERE code = ? AND uses_left > 0 "
                "AND (expires_at IS NULL OR expires_at > ?)",
                (code, now),
            )
            return cursor.rowcount > 0

        return await self._db.job(write)
