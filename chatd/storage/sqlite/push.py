"""Push targets and the notification outbox on SQLite.

Every write goes through the single writer (``BEGIN IMMEDIATE`` keeps another
process's writer out), so a claim's SELECT and UPDATE run in one transaction:
two workers, in one process or two sharing the file, never claim one item.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from chatd.core.ports.push import DeadItem, OutboxItem, PushTarget, RegisteredTarget
from chatd.storage.sqlite.db import Database

_TARGET = "device_id, user_id, provider, token, endpoint, p256dh, auth, registered_at"
_WHERE_ITEM_DELETE = (
    "DELETE FROM push_outbox WHERE device_id = ? AND chat_id = ? AND delivery_id = ?"
)
_ITEM = "device_id, chat_id, user_id, delivery_id, seq, payload, due_at, attempts, last_error"


def _target(row: Any) -> RegisteredTarget:
    device_id, user_id, provider, token, endpoint, p256dh, auth, registered_at = row
    target = PushTarget(user_id, device_id, provider, token, endpoint, p256dh, auth)
    return RegisteredTarget(target, int(registered_at))


def _item(row: Any) -> OutboxItem:
    device_id, chat_id, user_id, delivery_id, seq, payload, due_at, attempts, error = row
    return OutboxItem(
        device_id,
        chat_id,
        user_id,
        delivery_id,
        int(seq),
        json.loads(payload),
        int(due_at),
        int(attempts),
        error,
    )


def _row(item: OutboxItem) -> tuple[Any, ...]:
    return (
        item.device_id,
        item.chat_id,
        item.user_id,
        item.delivery_id,
        item.seq,
        json.dumps(item.payload, separators=(",", ":")),
        item.due_at,
        item.attempts,
        item.last_error,
    )


class SqlitePush:
    def __init__(self, db: Database) -> None:
        self._db = db

    # -- targets ------------------------------------------------------------

    async def put_target(self, target: PushTarget, registered_at: int) -> None:
        t = target

        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"INSERT OR REPLACE INTO push_targets ({_TARGET}) VALUES (?,?,?,?,?,?,?,?)",
                (t.device_id, t.user_id, t.provider, t.token, t.endpoint, t.p256dh, t.auth,
                 registered_at),
            )  # fmt: skip

        await self._db.job(write)

    async def get_target(self, device_id: str) -> RegisteredTarget | None:
        row = await self._db.fetchone(
            f"SELECT {_TARGET} FROM push_targets WHERE device_id = ?", (device_id,)
        )
        return _target(row) if row else None

    async def delete_target(self, device_id: str) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            conn.execute("DELETE FROM push_outbox WHERE device_id = ?", (device_id,))
            return (
                conn.execute("DELETE FROM push_targets WHERE device_id = ?", (device_id,)).rowcount
                > 0
            )

        return await self._db.job(write)

    async def targets(self, user_id: str) -> list[RegisteredTarget]:
        rows = await self._db.fetchall(
            f"SELECT {_TARGET} FROM push_targets WHERE user_id = ?", (user_id,)
        )
        return [_target(r) for r in rows]

    # -- outbox -------------------------------------------------------------

    async def enqueue(self, items: Sequence[OutboxItem]) -> None:
        rows = [_row(i) for i in items]

        def write(conn: sqlite3.Connection) -> None:
            conn.executemany(
                f"INSERT INTO push_outbox ({_ITEM}) VALUES (?,?,?,?,?,?,?,?,?) "
                "ON CONFLICT (device_id, chat_id) DO UPDATE SET "
                "delivery_id = excluded.delivery_id, seq = excluded.seq, "
                "payload = excluded.payload, attempts = 0, last_error = '', claim_until = 0, "
                "due_at = max(push_outbox.due_at, excluded.due_at) "
                "WHERE excluded.seq > push_outbox.seq",
                rows,
            )

        if rows:
            await self._db.job(write)

    async def cancel(self, device_id: str) -> int:
        def write(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM push_outbox WHERE device_id = ?", (device_id,)
            ).rowcount

        return await self._db.job(write)

    async def claim(
        self, now: int, lease_ms: int, limit: int, devices: Sequence[str] | None = None
    ) -> list[OutboxItem]:
        where = "due_at <= ? AND claim_until <= ?"
        params: list[Any] = [now, now]
        if devices is not None:
            if not devices:
                return []
            where += f" AND device_id IN ({','.join('?' * len(devices))})"
            params.extend(devices)

        def write(conn: sqlite3.Connection) -> list[OutboxItem]:
            rows = conn.execute(
                f"SELECT {_ITEM} FROM push_outbox WHERE {where} ORDER BY due_at LIMIT ?",
                (*params, limit),
            ).fetchall()
            conn.executemany(
                "UPDATE push_outbox SET claim_until = ? WHERE device_id = ? AND chat_id = ?",
                [(now + lease_ms, r[0], r[1]) for r in rows],
            )
            return [_item(r) for r in rows]

        return await self._db.job(write)

    async def done(self, item: OutboxItem) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            return (
                conn.execute(
                    _WHERE_ITEM_DELETE,
                    (item.device_id, item.chat_id, item.delivery_id),
                ).rowcount
                > 0
            )

        return await self._db.job(write)

    async def retry_later(self, item: OutboxItem, attempts: int, due_at: int, error: str) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            return (
                conn.execute(
                    "UPDATE push_outbox SET attempts = ?, due_at = ?, last_error = ?, "
                    "claim_until = 0 WHERE device_id = ? AND chat_id = ? AND delivery_id = ?",
                    (attempts, due_at, error, item.device_id, item.chat_id, item.delivery_id),
                ).rowcount
                > 0
            )

        return await self._db.job(write)

    async def bury(self, item: OutboxItem, attempts: int, error: str, dead_at: int) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            gone = conn.execute(
                _WHERE_ITEM_DELETE,
                (item.device_id, item.chat_id, item.delivery_id),
            ).rowcount
            if not gone:
                return False
            row = _row(item)
            conn.execute(
                "INSERT OR REPLACE INTO push_dead (delivery_id, device_id, chat_id, user_id, seq, "
                "payload, attempts, last_error, dead_at) VALUES (?,?,?,?,?,?,?,?,?)",
                (item.delivery_id, *row[:3], item.seq, row[5], attempts, error, dead_at),
            )
            return True

        return await self._db.job(write)

    async def dead(self, limit: int, cursor: str = "") -> tuple[list[DeadItem], str | None]:
        rows = await self._db.fetchall(
            "SELECT device_id, chat_id, user_id, delivery_id, seq, payload, dead_at, attempts, "
            "last_error, dead_at FROM push_dead WHERE delivery_id > ? ORDER BY delivery_id "
            "LIMIT ?",
            (cursor, limit + 1),
        )
        more = len(rows) > limit
        items = [DeadItem(_item(r[:9]), int(r[9])) for r in rows[:limit]]
        return items, (items[-1].item.delivery_id if more else None)

    async def revive(self, delivery_id: str, now: int) -> str | None:
        def write(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "DELETE FROM push_dead WHERE delivery_id = ? RETURNING device_id, chat_id, "
                "user_id, delivery_id, seq, payload",
                (delivery_id,),
            ).fetchone()
            if row is None:
                return None
            cursor = conn.execute(
                f"INSERT OR IGNORE INTO push_outbox ({_ITEM}) VALUES (?,?,?,?,?,?,?,0,'')",
                (*row, now),
            )
            return "requeued" if cursor.rowcount else "superseded"

        return await self._db.job(write)

    async def expire_dead(self, before: int) -> int:
        def write(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM push_dead WHERE dead_at < ?", (before,)).rowcount

        return await self._db.job(write)

    async def depth(self) -> int:
        row = await self._db.fetchone("SELECT COUNT(*) FROM push_outbox")
        return int(row[0]) if row else 0
