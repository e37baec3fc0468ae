"""The audit log on SQLite: one table keyed by (time, entry_id), read backwards."""

from __future__ import annotations

import sqlite3

from chatd.core.models import AuditEntry, columns
from chatd.storage.sqlite.db import Database

_COLUMNS = columns(AuditEntry)


class SqliteAudit:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def append(self, entry: AuditEntry) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute(
                f"INSERT INTO audit ({_COLUMNS}) VALUES (?,?,?,?,?,?)",
                (
                    entry.entry_id,
                    entry.time,
                    entry.actor_id,
                    entry.action,
                    entry.target_id,
                    entry.detail,
                ),
            )

        await self._db.job(write)

    async def page(self, limit: int, before: tuple[int, str] | None = None) -> list[AuditEntry]:
        if before is None:
            rows = await self._db.fetchall(
                f"SELECT {_COLUMNS} FROM audit ORDER BY time DESC, entry_id DESC LIMIT ?",
                (limit,),
            )
        else:
            rows = await self._db.fetchall(
                f"SELECT {_COLUMNS} FROM audit WHERE (time, entry_id) < (?, ?) "
                "ORDER BY time DESC, entry_id DESC LIMIT ?",
                (*before, limit),
            )
        return [AuditEntry(*row) for row in rows]
