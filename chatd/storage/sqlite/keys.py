"""End-to-end encryption key bundles on SQLite.

Claims and uploads go through the single writer (and ``BEGIN IMMEDIATE`` keeps
another process's writer out), so ``DELETE ... RETURNING`` of the device's lowest
prekey hands each key out once, and an upload counts the prekeys held in the same
transaction that adds to them, with no further locking.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from chatd.core.errors import ChatdError
from chatd.core.models import DeviceKeys, Prekey
from chatd.core.prekeys import prekeys_to_add
from chatd.storage.sqlite.db import Database
from chatd.storage.sqlite.rows import KEY_COLUMNS, keys_of


class SqliteKeys:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def put(self, keys: DeviceKeys, one_time: Sequence[Prekey], *, limit: int) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            revoked = conn.execute(
                "SELECT 1 FROM devices WHERE device_id = ? AND revoked_at IS NOT NULL",
                (keys.device_id,),
            ).fetchone()
            if revoked is not None:  # revoked meanwhile: its bundle must stay gone
                raise ChatdError("unauthorized", "the token is invalid, expired or revoked")
            cursor = conn.execute(
                "SELECT identity_key FROM device_keys WHERE device_id = ?", (keys.device_id,)
            )
            row = cursor.fetchone()
            renewed = row is not None and row[0] != keys.identity_key
            held: set[int] = set()
            if not renewed:
                ids = conn.execute(
                    "SELECT key_id FROM one_time_prekeys WHERE device_id = ?", (keys.device_id,)
                ).fetchall()
                held = {int(r[0]) for r in ids}
            fresh = prekeys_to_add(held, one_time, limit)  # raises before any write
            if renewed:
                conn.execute("DELETE FROM one_time_prekeys WHERE device_id = ?", (keys.device_id,))
            conn.execute(
                "INSERT OR REPLACE INTO device_keys (device_id, user_id, identity_key, "
                "signed_key_id, signed_public_key, signed_signature, updated_at) "
                "VALUES (?,?,?,?,?,?,?)",
                keys.flat(),
            )
            conn.executemany(
                "INSERT INTO one_time_prekeys (device_id, key_id, public_key) VALUES (?,?,?)",
                [(keys.device_id, p.key_id, p.public_key) for p in fresh],
            )
            return row is None

        return await self._db.job(write)

    async def get(self, device_id: str) -> DeviceKeys | None:
        row = await self._db.fetchone(
            f"SELECT {KEY_COLUMNS} FROM device_keys WHERE device_id = ?", (device_id,)
        )
        return keys_of(row) if row is not None else None

    async def claim(self, device_id: str) -> Prekey | None:
        def take(conn: sqlite3.Connection) -> Prekey | None:
            cursor = conn.execute(
                "DELETE FROM one_time_prekeys WHERE device_id = ? AND key_id = "
                "(SELECT MIN(key_id) FROM one_time_prekeys WHERE device_id = ?) "
                "RETURNING key_id, public_key",
                (device_id, device_id),
            )
            row = cursor.fetchone()
            return Prekey(int(row[0]), row[1]) if row else None

        return await self._db.job(take)

    async def count(self, device_id: str) -> int:
        row = await self._db.fetchone(
            "SELECT COUNT(*) FROM one_time_prekeys WHERE device_id = ?", (device_id,)
        )
        return int(row[0]) if row else 0


def forget_device(conn: sqlite3.Connection, device_ids: list[str]) -> None:
    """A revoked device's keys and ciphertexts, deleted in the revoking transaction."""
    rows = [(d,) for d in device_ids]
    conn.executemany("DELETE FROM one_time_prekeys WHERE device_id = ?", rows)
    conn.executemany("DELETE FROM device_keys WHERE device_id = ?", rows)
    conn.executemany("DELETE FROM ciphertexts WHERE device_id = ?", rows)
