"""Delivery and read watermarks on SQLite, batched into the group commit."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence

from chatd.core.models import PendingChat, WatermarkMove, WatermarkResult
from chatd.core.watermarks import Marks, Position, acked_cursors, apply_move, pending_chats
from chatd.storage.sqlite.db import Database, WriteOp
from chatd.storage.sqlite.messages import CHUNK, _values, execute_rows, json_rows


class AdvanceOp(WriteOp):
    __slots__ = ("moves",)

    def __init__(self, moves: Sequence[WatermarkMove]) -> None:
        super().__init__()
        self.moves = moves


class AdvanceBatch:
    """Reads the members' watermarks once, raises them in memory, writes them once.

    One statement for each of those, whatever the number of receipts (see
    ``AppendBatch`` for why rows are not fetched or written one by one).
    """

    def run_sync(self, conn: sqlite3.Connection, ops: Sequence[WriteOp]) -> None:
        moves = [m for op in ops if isinstance(op, AdvanceOp) for m in op.moves]
        keys = list({(m.chat_id, m.user_id) for m in moves})
        current: dict[tuple[str, str], Marks] = {}
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start : start + CHUNK]
            for chat_id, user_id, delivered, read in json_rows(
                conn,
                f"WITH k(c, u) AS (VALUES {_values(len(chunk), 2)}) "
                "SELECT json_group_array(json_array(m.chat_id, m.user_id, m.delivered_seq, "
                "m.read_seq)) FROM k CROSS JOIN members m ON m.chat_id = k.c AND m.user_id = k.u",
                [v for key in chunk for v in key],
            ):
                current[(chat_id, user_id)] = Marks(int(delivered), int(read))
        changed: set[tuple[str, str]] = set()
        applied: list[WatermarkMove] = []
        for op in ops:
            assert isinstance(op, AdvanceOp)
            results: list[WatermarkResult | None] = []
            for move in op.moves:
                key = (move.chat_id, move.user_id)
                marks = current.get(key)
                if marks is None:
                    results.append(None)
                    continue
                after, result = apply_move(marks, move)
                if after != marks:
                    current[key] = after
                    changed.add(key)
                applied.append(move)
                results.append(result)
            op.result = results
        execute_rows(
            conn,
            "WITH v(c, u, d, r) AS (VALUES {values}) UPDATE members "
            "SET delivered_seq = v.d, read_seq = v.r "
            "FROM v WHERE members.chat_id = v.c AND members.user_id = v.u",
            4,
            [(*key, *current[key]) for key in changed],
        )
        cursors = acked_cursors(applied)
        # The devices have what they acknowledged: their ciphertexts go now.
        # (A key range each: almost always empty, so one cheap step per device.)
        conn.executemany(
            "DELETE FROM ciphertexts WHERE device_id = ? AND chat_id = ? AND seq <= ?",
            [(d, c, seq) for (d, c), seq in cursors.items()],
        )
        # Cursors are raised without being read: the upsert keeps the higher value.
        execute_rows(
            conn,
            "INSERT INTO device_cursors (device_id, chat_id, delivered_seq) VALUES {values} "
            "ON CONFLICT (device_id, chat_id) DO UPDATE "
            "SET delivered_seq = max(delivered_seq, excluded.delivered_seq)",
            3,
            [(d, c, seq) for (d, c), seq in cursors.items()],
        )


class SqliteReceipts:
    def __init__(self, db: Database) -> None:
        self._db = db
        db.register(AdvanceOp, AdvanceBatch())

    async def advance(self, moves: Sequence[WatermarkMove]) -> list[WatermarkResult | None]:
        if not moves:
            return []
        return await self._db.submit(AdvanceOp(moves))

    def advance_nowait(
        self, moves: Sequence[WatermarkMove]
    ) -> asyncio.Future[list[WatermarkResult | None]]:
        """``advance`` as a bare future, for the receipt fast path (no task per batch)."""
        return self._db.submit_nowait(AdvanceOp(moves))

    async def pending(self, user_id: str, device_id: str) -> list[PendingChat]:
        rows = await self._db.fetchall(
            "SELECT m.chat_id, m.joined_seq, m.left_seq, c.last_seq, c.last_activity, "
            "coalesce(dc.delivered_seq, 0) "
            "FROM members m JOIN chats c ON c.chat_id = m.chat_id "
            "LEFT JOIN device_cursors dc ON dc.device_id = ? AND dc.chat_id = m.chat_id "
            "WHERE m.user_id = ?",
            (device_id, user_id),
        )
        return pending_chats(
            Position(r[0], int(r[1]), r[2], int(r[3]), int(r[4]), int(r[5])) for r in rows
        )
