"""Contacts on SQLite."""

from __future__ import annotations

import sqlite3

from chatd.core.models import Contact
from chatd.storage.sqlite.db import Database
from chatd.storage.sqlite.rows import CONTACT_COLUMNS, contact_of, placeholders


class SqliteContacts:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def put(self, contact: Contact) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"INSERT INTO contacts ({CONTACT_COLUMNS}) "
                f"VALUES ({placeholders(CONTACT_COLUMNS)}) "
                "ON CONFLICT (user_id, contact_id) DO UPDATE SET name = excluded.name",
                (contact.user_id, contact.contact_id, contact.name, contact.created_at),
            )

        await self._db.job(write)

    async def delete(self, user_id: str, contact_id: str) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "DELETE FROM contacts WHERE user_id = ? AND contact_id = ?", (user_id, contact_id)
            )
            return cursor.rowcount > 0

        return await self._db.job(write)

    async def list_for_user(self, user_id: str) -> list[Contact]:
        rows = await self._db.fetchall(
            f"SELECT {CONTACT_COLUMNS} FROM contacts WHERE user_id = ? ORDER BY created_at",
            (user_id,),
        )
        return [contact_of(r) for r in rows]

    async def watchers(self, contact_id: str) -> list[str]:
        rows = await self._db.fetchall(
            "SELECT user_id FROM contacts WHERE contact_id = ?", (contact_id,)
        )
        return [r[0] for r in rows]
