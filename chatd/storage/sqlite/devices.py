"""Devices, their token hashes and the revocation feed on SQLite."""

from __future__ import annotations

import sqlite3

from chatd.core.ids import now_ms
from chatd.core.models import Device
from chatd.storage.sqlite.db import Database
from chatd.storage.sqlite.keys import forget_device
from chatd.storage.sqlite.rows import DEVICE_COLUMNS, device_of, placeholders


class SqliteDevices:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, device: Device, token_hash: str) -> None:
        def insert(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"INSERT INTO devices ({DEVICE_COLUMNS}, token_hash) "
                f"VALUES ({placeholders(DEVICE_COLUMNS)},?)",
                (
                    device.device_id,
                    device.user_id,
                    device.name,
                    device.created_at,
                    device.expires_at,
                    device.revoked_at,
                    token_hash,
                ),
            )

        await self._db.job(insert)

    async def by_token(self, token_hash: str) -> Device | None:
        row = await self._db.fetchone(
            f"SELECT {DEVICE_COLUMNS} FROM devices WHERE token_hash = ?", (token_hash,)
        )
        return device_of(row) if row else None

    async def list_for_user(self, user_id: str) -> list[Device]:
        rows = await self._db.fetchall(
            f"SELECT {DEVICE_COLUMNS} FROM devices WHERE user_id = ? AND revoked_at IS NULL "
            "ORDER BY created_at",
            (user_id,),
        )
        return [device_of(r) for r in rows]

    async def revoke(self, device_id: str) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            now = now_ms()
            cursor = conn.execute(
                "UPDATE devices SET revoked_at = ? WHERE device_id = ? AND revoked_at IS NULL",
                (now, device_id),
            )
            if cursor.rowcount == 0:
                return False
            conn.execute("INSERT INTO revocations (device_id, at) VALUES (?, ?)", (device_id, now))
            forget_device(conn, [device_id])
            return True

        return await self._db.job(write)

    async def revoke_all(self, user_id: str) -> list[str]:
        def write(conn: sqlite3.Connection) -> list[str]:
            now = now_ms()
            rows = conn.execute(
                "SELECT device_id FROM devices WHERE user_id = ? AND revoked_at IS NULL",
                (user_id,),
            ).fetchall()
            ids = [r[0] for r in rows]
            conn.executemany(
                "UPDATE devices SET revoked_at = ? WHERE device_id = ?", [(now, d) for d in ids]
            )
            conn.executemany(
                "INSERT INTO revocations (device_id, at) VALUES (?, ?)", [(d, now) for d in ids]
            )
            forget_device(conn, ids)
            return ids

        return await self._db.job(write)

    async def record_ban(self, user_id: str) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO revocations (device_id, at) SELECT device_id, ? FROM devices "
                "WHERE user_id = ? AND revoked_at IS NULL",
                (now_ms(), user_id),
            )

        await self._db.job(write)

    async def revocations_since(self, cursor: int) -> tuple[list[str], int]:
        if cursor < 0:  # a fresh node starts at the end of the feed
            row = await self._db.fetchone("SELECT coalesce(max(id), 0) FROM revocations")
            return [], int(row[0]) if row else 0
        rows = await self._db.fetchall(
            "SELECT id, device_id FROM revocations WHERE id > ? ORDER BY id LIMIT 1000", (cursor,)
        )
        if not rows:
            return [], cursor
        return [r[1] for r in rows], int(rows[-1][0])
