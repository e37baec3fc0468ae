"""Media records on SQLite.

A message's reference to its media is the ``messages.media_id`` column itself
(indexed), written by the append; the append also sets ``media.referenced`` in
the same transaction, so the retention job scans only never-sent uploads.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from chatd.core.models import Media, MediaRef
from chatd.storage.sqlite.db import Database
from chatd.storage.sqlite.rows import MEDIA_COLUMNS, media_of, media_row, placeholders


class SqliteMedia:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, media: Media) -> None:

        def insert(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"INSERT INTO media ({MEDIA_COLUMNS}) VALUES ({placeholders(MEDIA_COLUMNS)})",
                media_row(media),
            )

        await self._db.job(insert)

    async def get(self, media_id: str) -> Media | None:
        row = await self._db.fetchone(
            f"SELECT {MEDIA_COLUMNS} FROM media WHERE media_id = ?", (media_id,)
        )
        return media_of(row) if row else None

    async def get_many(self, media_ids: Sequence[str]) -> dict[str, Media]:
        found: dict[str, Media] = {}
        ids = list(dict.fromkeys(media_ids))
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = await self._db.fetchall(
                f"SELECT {MEDIA_COLUMNS} FROM media "
                f"WHERE media_id IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            for row in rows:
                found[row[0]] = media_of(row)
        return found

    async def references(self, media_id: str, limit: int = 1000) -> list[MediaRef]:
        rows = await self._db.fetchall(
            "SELECT chat_id, seq, message_id FROM messages WHERE media_id = ? "
            "ORDER BY message_id LIMIT ?",
            (media_id, limit),
        )
        return [MediaRef(media_id, r[0], int(r[1]), r[2]) for r in rows]

    async def unreferenced(self, created_before: int, limit: int) -> list[Media]:
        rows = await self._db.fetchall(
            f"SELECT {MEDIA_COLUMNS} FROM media WHERE referenced = 0 AND created_at < ? "
            "ORDER BY created_at LIMIT ?",
            (created_before, limit),
        )
        return [media_of(r) for r in rows]

    async def delete_unreferenced(self, media_id: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "DELETE FROM media WHERE media_id = ? AND referenced = 0 "
                "AND NOT EXISTS (SELECT 1 FROM messages WHERE media_id = ?)",
                (media_id, media_id),
            )
            return cursor.rowcount > 0

        return await self._db.job(delete)

    async def blob_in_use(self, sha256: str) -> bool:
        row = await self._db.fetchone(
            "SELECT EXISTS (SELECT 1 FROM media WHERE sha256 = ?) "
            "OR EXISTS (SELECT 1 FROM media WHERE thumbnail_sha256 = ?)",
            (sha256, sha256),
        )
        return bool(row and row[0])
