"""Delivery and read watermarks on ScyllaDB, batched per process.

Watermarks are max registers (see marks.py), so no write ever lowers one, on any
node. The before/after values a call reports come from a read; calls are
applied one batch at a time in this process, so within a process every change
is reported exactly once. Across nodes two calls may report overlapping
ranges (at worst a duplicate receipt event), never a lowered mark.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from chatd.core.models import PendingChat, WatermarkMove, WatermarkResult
from chatd.core.watermarks import Marks, Position, acked_cursors, apply_move, pending_chats
from chatd.storage.scylla import marks
from chatd.storage.scylla.bridge import Cql, gather_limited
from chatd.storage.scylla.common import or_zero
from chatd.storage.scylla.e2e import ack_writes

CQL = {
    "receipts.member": "SELECT role, delivered_seq, read_seq FROM chat_members "
    "WHERE chat_id = ? AND user_id = ?",
    "receipts.inbox": "SELECT chat_id FROM user_chats WHERE user_id = ?",
    "receipts.state": "SELECT role, joined_seq, left_seq, last_seq, last_activity, created_at "
    "FROM chat_members WHERE chat_id = ? AND user_id = ?",
}

_Op = tuple[Sequence[WatermarkMove], "asyncio.Future[list[WatermarkResult | None]]"]


class ScyllaReceipts:
    def __init__(self, cql: Cql, cursors: marks.CursorCache) -> None:
        self._cql = cql
        self._cursors = cursors
        self._queue: list[_Op] = []
        self._task: asyncio.Task[None] | None = None

    async def advance(self, moves: Sequence[WatermarkMove]) -> list[WatermarkResult | None]:
        if not moves:
            return []
        async with self._cql.gate.held():
            future: asyncio.Future[list[WatermarkResult | None]] = (
                asyncio.get_running_loop().create_future()
            )
            self._queue.append((moves, future))
            if self._task is None:
                self._task = asyncio.create_task(self._drain(), name="scylla-receipts")
            return await future

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    await self._apply(batch)
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
        finally:
            self._task = None

    async def _apply(self, batch: list[_Op]) -> None:
        keys = list(dict.fromkeys((m.chat_id, m.user_id) for ms, _ in batch for m in ms))
        rows = await gather_limited([self._cql.one("receipts.member", k) for k in keys])
        current: dict[tuple[str, str], Marks] = {
            k: Marks(or_zero(r.delivered_seq), or_zero(r.read_seq))
            for k, r in zip(keys, rows, strict=True)
            if r is not None and r.role is not None
        }
        start = dict(current)
        applied: list[WatermarkMove] = []
        answers = []
        for moves, _ in batch:
            results: list[WatermarkResult | None] = []
            for move in moves:
                key = (move.chat_id, move.user_id)
                mark = current.get(key)
                if mark is None:
                    results.append(None)
                    continue
                current[key], result = apply_move(mark, move)
                applied.append(move)
                results.append(result)
            answers.append(results)
        cursors = acked_cursors(applied)
        writes: list[tuple[Any, Sequence[Any]]] = []
        for key, (delivered, read) in current.items():
            before = start[key]
            items = []
            if delivered > before.delivered:
                items.append(("marks.delivered", (delivered, delivered, *key)))
            if read > before.read:
                items.append(("marks.read", (read, read, *key)))
            if items:
                writes.append((self._cql.batch(items), ()))
        for (device_id, chat_id), seq in cursors.items():
            writes.append(marks.cursor(device_id, chat_id, seq))
        writes += ack_writes(cursors)  # the devices have what they acknowledged
        await self._cql.writes(writes)
        for (device_id, chat_id), seq in cursors.items():
            self._cursors.raised(device_id, chat_id, seq)
        for (_, future), results in zip(batch, answers, strict=True):
            if not future.done():
                future.set_result(results)

    async def pending(self, user_id: str, device_id: str) -> list[PendingChat]:
        chats = [r.chat_id for r in await self._cql.all_rows("receipts.inbox", (user_id,))]
        if not chats:
            return []
        cursor_rows = await self._cql.all_rows("marks.cursors", (device_id,))
        cursors = {r.chat_id: or_zero(r.delivered_seq) for r in cursor_rows}
        states = await gather_limited(
            [self._cql.one("receipts.state", (chat_id, user_id)) for chat_id in chats]
        )
        return pending_chats(
            Position(
                chat_id,
                joined_seq=or_zero(row.joined_seq),
                left_seq=None if row.left_seq is None else int(row.left_seq),
                last_seq=or_zero(row.last_seq),
                last_activity=or_zero(
                    row.last_activity if row.last_activity is not None else row.created_at
                ),
                cursor=cursors.get(chat_id, 0),
            )
            for chat_id, row in zip(chats, states, strict=True)
            if row is not None and row.role is not None
        )
