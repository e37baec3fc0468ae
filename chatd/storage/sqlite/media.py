"""Media records on SQLite.

A message's reference to its media is the ``messages.media_id`` column itself
(indexed), written by the append; the append also sets ``media.referenced`` in
the same transaction, so the retention job scans only never-sent uploads.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from chatd.core.models import Media, MediaRef
from chatd.storage.sqlite.db import Database

_COLUMNS = (
    "media_id, uploader_id, sha256, mime_type, size, created_at, filename, width, height, "
    "duration_ms, thumbnail_sha256, thumbnail_mime, thumbnail_size"
)
_WIDTH = len(_COLUMNS.split(","))


def _media(row: tuple[Any, ...]) -> Media:
    return Media(*row)


class SqliteMedia:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, media: Media) -> None:
        values = (
            media.media_id,
            media.uploader_id,
            media.sha256,
            media.mime_type,
            media.size,
            media.created_at,
            media.filename,
            media.width,
            media.height,
            media.duration_ms,
            media.thumbnail_sha256,
            media.thumbnail_mime,
            media.thumbnail_size,
        )

        def insert(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"INSERT INTO media ({_COLUMNS}) VALUES ({','.join('?' * _WIDTH)})", values
            )

        await self._db.job(insert)

    async def get(self, media_id: str) -> Media | None:
        row = await self._db.fetchone(
            f"SELECT {_COLUMNS} FROM media WHERE media_id = ?", (media_id,)
        )
        return _media(row) if row else None

    async def get_many(self, media_ids: Sequence[str]) -> dict[str, Media]:
        found: dict[str, Media] = {}
        ids = list(dict.fromkeys(media_ids))
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = await self._db.fetchall(
                f"SELECT {_COLUMNS} FROM media WHERE media_id IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            for row in rows:
                found[row[0]] = _media(row)
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
            f"SELECT {_COLUMNS} FROM media WHERE referenced = 0 AND created_at < ? "
            "ORDER BY created_at LIMIT ?",
            (created_before, limit),
        )
        return [_media(r) for r in rows]

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
