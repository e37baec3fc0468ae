"""Messages on SQLite, with appends batched into the writer's group commit."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiosqlite

from chatd.core.errors import ChatdError
from chatd.core.ids import new_id, now_ms
from chatd.core.models import Appended, Message, MessageDraft
from chatd.storage.sqlite.db import Database, WriteOp

_COLUMNS = (
    "message_id, chat_id, seq, sender_id, sender_device_id, type, content, client_msg_id, "
    "created_at, media_id, reply_to"
)


def _message(row: tuple[Any, ...]) -> Message:
    return Message(*row)


INSERT_MESSAGE = f"INSERT INTO messages ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)"


def message_row(m: Message) -> tuple[Any, ...]:
    return (
        m.message_id,
        m.chat_id,
        m.seq,
        m.sender_id,
        m.sender_device_id,
        m.type,
        m.content,
        m.client_msg_id,
        m.created_at,
        m.media_id,
        m.reply_to,
    )


def _values(n: int, width: int) -> str:
    one = "(" + ",".join("?" * width) + ")"
    return ",".join([one] * n)


class AppendOp(WriteOp):
    __slots__ = ("draft",)

    def __init__(self, draft: MessageDraft) -> None:
        super().__init__()
        self.draft = draft


class AppendBatch:
    """Stores a batch of drafts with a handful of statements, whatever its size.

    Inside the writer's transaction: looks up repeats of ``client_msg_id`` and the
    chats' last seq in one query each, numbers the new messages in queue order,
    then inserts them and moves chats and sender watermarks with ``executemany``.
    """

    async def run(self, conn: aiosqlite.Connection, ops: Sequence[WriteOp]) -> None:
        drafts = [op.draft for op in ops if isinstance(op, AppendOp)]
        keys = list({(d.sender_id, d.client_msg_id) for d in drafts})
        known: dict[tuple[str, str], Message] = {}
        for start in range(0, len(keys), 400):
            chunk = keys[start : start + 400]
            rows = await conn.execute_fetchall(
                f"WITH k(s, c) AS (VALUES {_values(len(chunk), 2)}) SELECT "
                + ", ".join(f"m.{c.strip()}" for c in _COLUMNS.split(","))
                + " FROM k CROSS JOIN messages m ON m.sender_id = k.s AND m.client_msg_id = k.c",
                [v for key in chunk for v in key],
            )
            for row in rows:
                m = _message(row)
                known[(m.sender_id, m.client_msg_id)] = m
        chat_ids = list({d.chat_id for d in drafts})
        marks = ",".join("?" * len(chat_ids))
        rows = await conn.execute_fetchall(
            f"SELECT chat_id, last_seq FROM chats WHERE chat_id IN ({marks})",
            chat_ids,
        )
        last_seq = {r[0]: int(r[1]) for r in rows}
        senders = list({(d.chat_id, d.sender_id) for d in drafts})
        rows = await conn.execute_fetchall(
            f"WITH k(c, u) AS (VALUES {_values(len(senders), 2)}) "
            "SELECT m.chat_id, m.user_id, m.read_seq, m.delivered_seq "
            "FROM k CROSS JOIN members m ON m.chat_id = k.c AND m.user_id = k.u "
            "WHERE m.left_seq IS NULL",
            [v for key in senders for v in key],
        )
        # The senders' watermarks as they move through the batch.
        marks = {(r[0], r[1]): (int(r[2]), int(r[3])) for r in rows}
        new: list[Message] = []
        now = now_ms()
        for op in ops:
            assert isinstance(op, AppendOp)
            d = op.draft
            key = (d.sender_id, d.client_msg_id)
            if key in known:
                op.result = Appended(known[key], created=False)
                continue
            if d.chat_id not in last_seq or (d.chat_id, d.sender_id) not in marks:
                op.result = ChatdError("not_found", "chat not found")
                continue
            seq = last_seq[d.chat_id] = last_seq[d.chat_id] + 1
            message = d.to_message(message_id=new_id(), seq=seq, created_at=now)
            known[key] = message
            new.append(message)
            read, delivered = marks[(d.chat_id, d.sender_id)]
            marks[(d.chat_id, d.sender_id)] = (max(read, seq), max(delivered, seq))
            op.result = Appended(message, True, read, delivered)
        if not new:
            return
        await conn.executemany(
            INSERT_MESSAGE,
            [message_row(m) for m in new],
        )
        carried = list({m.media_id for m in new if m.media_id is not None})
        if carried:  # the media is referenced from now on: retention keeps it
            await conn.executemany(
                "UPDATE media SET referenced = 1 WHERE media_id = ? AND referenced = 0",
                [(media_id,) for media_id in carried],
            )
        await conn.executemany(
            "UPDATE chats SET last_seq = ?, last_activity = ? WHERE chat_id = ?",
            [(seq, now, chat_id) for chat_id, seq in {m.chat_id: m.seq for m in new}.items()],
        )
        # The sender has read what it wrote: its unread count stays right.
        await conn.executemany(
            "UPDATE members SET delivered_seq = max(delivered_seq, ?), read_seq = max(read_seq, ?) "
            "WHERE chat_id = ? AND user_id = ?",
            [(m.seq, m.seq, m.chat_id, m.sender_id) for m in new],
        )
        # The sending device has its own message; move its cursor only when that
        # leaves no gap, so nothing it has not seen is skipped on replay.
        await conn.executemany(
            "INSERT OR IGNORE INTO device_cursors (device_id, chat_id, delivered_seq) "
            "SELECT ?, ?, 1 WHERE ? = 1",
            [(m.sender_device_id, m.chat_id, m.seq) for m in new],
        )
        await conn.executemany(
            "UPDATE device_cursors SET delivered_seq = ? "
            "WHERE device_id = ? AND chat_id = ? AND delivered_seq = ?",
            [(m.seq, m.sender_device_id, m.chat_id, m.seq - 1) for m in new if m.seq > 1],
        )


class SqliteMessages:
    def __init__(self, db: Database) -> None:
        self._db = db
        db.register(AppendOp, AppendBatch())

    async def append(self, draft: MessageDraft) -> Appended:
        return await self._db.submit(AppendOp(draft))

    async def get(self, chat_id: str, message_id: str) -> Message | None:
        row = await self._db.fetchone(
            f"SELECT {_COLUMNS} FROM messages WHERE message_id = ? AND chat_id = ?",
            (message_id, chat_id),
        )
        return _message(row) if row else None

    async def at_seq(self, chat_id: str, seq: int) -> Message | None:
        row = await self._db.fetchone(
            f"SELECT {_COLUMNS} FROM messages WHERE chat_id = ? AND seq = ?", (chat_id, seq)
        )
        return _message(row) if row else None

    async def before(
        self, chat_id: str, before_seq: int, limit: int, min_seq: int = 0
    ) -> list[Message]:
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM messages WHERE chat_id = ? AND seq < ? AND seq > ? "
            "ORDER BY seq DESC LIMIT ?",
            (chat_id, before_seq, min_seq, limit),
        )
        return [_message(r) for r in rows]

    async def after(self, chat_id: str, after_seq: int, limit: int) -> list[Message]:
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM messages WHERE chat_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (chat_id, after_seq, limit),
        )
        return [_message(r) for r in rows]

    async def senders_between(self, chat_id: str, low_seq: int, high_seq: int) -> set[str]:
        rows = await self._db.fetchall(
            "SELECT DISTINCT sender_id FROM messages WHERE chat_id = ? AND seq > ? AND seq <= ?",
            (chat_id, low_seq, high_seq),
        )
        return {r[0] for r in rows}
