"""Per-device ciphertexts of end-to-end encrypted messages on SQLite.

Rows are written by the append itself (``messages.py``, same transaction) and
deleted by the receipts' batch once their device acknowledged them
(``receipts.py``); this store reads a device's own entries and expires old
ones. Keyed (device, chat, seq): a device's entries of one chat are one range
of the primary key.
"""

from __future__ import annotations

import sqlite3

from chatd.core.models import Ciphertext
from chatd.storage.sqlite.db import Database


class SqliteCiphertexts:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def between(
        self, device_id: str, chat_id: str, low_seq: int, high_seq: int
    ) -> dict[int, Ciphertext]:
        rows = await self._db.fetchall(
            "SELECT seq, type, body FROM ciphertexts "
            "WHERE device_id = ? AND chat_id = ? AND seq >= ? AND seq <= ?",
            (device_id, chat_id, low_seq, high_seq),
        )
        return {int(r[0]): Ciphertext(r[1], r[2]) for r in rows}

    async def forget_device(self, device_id: str) -> None:
        def delete(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM ciphertexts WHERE device_id = ?", (device_id,))

        await self._db.job(delete)

    async def expire(self, before: int) -> int:
        def delete(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM ciphertexts WHERE stored_at < ?", (before,)).rowcount

        return await self._db.job(delete)
