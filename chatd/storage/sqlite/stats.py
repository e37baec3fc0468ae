"""Whole-store counts on SQLite: aggregate queries over the primary tables."""

from __future__ import annotations

from chatd.core.models import MediaUsage, Totals
from chatd.storage.sqlite.db import Database


class SqliteStats:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def totals(self) -> Totals:
        users = await self._db.fetchone("SELECT count(*) FROM users")
        chats = await self._db.fetchone("SELECT count(*), coalesce(sum(last_seq), 0) FROM chats")
        assert users is not None and chats is not None
        return Totals(users=int(users[0]), chats=int(chats[0]), messages=int(chats[1]))

    async def media_usage(self) -> MediaUsage:
        row = await self._db.fetchone(
            "SELECT count(*), coalesce(sum(size), 0), coalesce(sum(referenced = 0), 0) FROM media"
        )
        assert row is not None
        return MediaUsage(files=int(row[0]), bytes=int(row[1]), unreferenced_files=int(row[2]))
