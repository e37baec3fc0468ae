"""End-to-end encryption key bundles on SQLite.

Claims go through the single writer, so ``DELETE ... RETURNING`` of the
device's lowest prekey hands each key out once with no further locking.
"""

from __future__ import annotations

from collections.abc import Sequence

import aiosqlite

from chatd.core.models import DeviceKeys, Prekey
from chatd.storage.sqlite.db import Database
from chatd.storage.sqlite.rows import KEY_COLUMNS, keys_of, placeholders


class SqliteKeys:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def put(self, keys: DeviceKeys, one_time: Sequence[Prekey]) -> None:
        rows = [(keys.device_id, p.key_id, p.public_key) for p in one_time]

        async def write(conn: aiosqlite.Connection) -> None:
            cursor = await conn.execute(
                "SELECT identity_key FROM device_keys WHERE device_id = ?", (keys.device_id,)
            )
            row = await cursor.fetchone()
            if row is not None and row[0] != keys.identity_key:
                await conn.execute(
                    "DELETE FROM one_time_prekeys WHERE device_id = ?", (keys.device_id,)
                )
            await conn.execute(
                f"INSERT OR REPLACE INTO device_keys ({KEY_COLUMNS}) "
                f"VALUES ({placeholders(KEY_COLUMNS)})",
                keys.flat(),
            )
            await conn.executemany(
                "INSERT OR IGNORE INTO one_time_prekeys (device_id, key_id, public_key) "
                "VALUES (?,?,?)",
                rows,
            )

        await self._db.job(write)

    async def get(self, device_id: str) -> DeviceKeys | None:
        row = await self._db.fetchone(
            f"SELECT {KEY_COLUMNS} FROM device_keys WHERE device_id = ?", (device_id,)
        )
        return keys_of(row) if row is not None else None

    async def claim(self, device_id: str) -> Prekey | None:
        async def take(conn: aiosqlite.Connection) -> Prekey | None:
            cursor = await conn.execute(
                "DELETE FROM one_time_prekeys WHERE device_id = ? AND key_id = "
                "(SELECT MIN(key_id) FROM one_time_prekeys WHERE device_id = ?) "
                "RETURNING key_id, public_key",
                (device_id, device_id),
            )
            row = await cursor.fetchone()
            return Prekey(int(row[0]), row[1]) if row else None

        return await self._db.job(take)

    async def count(self, device_id: str) -> int:
        row = await self._db.fetchone(
            "SELECT COUNT(*) FROM one_time_prekeys WHERE device_id = ?", (device_id,)
        )
        return int(row[0]) if row else 0
