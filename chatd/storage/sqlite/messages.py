"""Messages on SQLite, with appends batched into the writer's group commit."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from chatd.core.e2e import check_coverage
from chatd.core.errors import ChatdError
from chatd.core.ids import new_id, now_ms
from chatd.core.models import Appended, Message, MessageDraft
from chatd.core.watermarks import Marks, cursor_after_send, sent
from chatd.storage.sqlite.db import Database, WriteOp
from chatd.storage.sqlite.rows import (
    MESSAGE_COLUMNS,
    message_of,
    message_row,
    placeholders,
    width,
)

INSERT_MESSAGE = (
    f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES ({placeholders(MESSAGE_COLUMNS)})"
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

    Inside the writer's transaction: looks up repeats of ``client_msg_id``, the
    chats' last seq and the senders' watermarks in one query each, numbers the
    new messages in queue order, then inserts them and moves chats, sender
    watermarks and device cursors with one multi-row statement each.

    Why multi-row statements and JSON-aggregated reads rather than
    ``executemany`` and ``fetchall``: the sqlite3 module releases the GIL around
    every step, that is every row of an ``executemany`` and every row fetched,
    and getting it back from the busy event loop can take up to the interpreter's
    switch interval (5 ms). One statement is one step, whatever its rows.
    """

    def run_sync(self, conn: sqlite3.Connection, ops: Sequence[WriteOp]) -> None:
        drafts = [op.draft for op in ops if isinstance(op, AppendOp)]
        keys = list({(d.sender_id, d.client_msg_id) for d in drafts})
        known: dict[tuple[str, str], Message] = {}
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start : start + CHUNK]
            rows = conn.execute(
                f"WITH k(s, c) AS (VALUES {_values(len(chunk), 2)}) SELECT "
                + ", ".join(f"m.{c}" for c in MESSAGE_COLUMNS.split(", "))
                + " FROM k CROSS JOIN messages m ON m.sender_id = k.s AND m.client_msg_id = k.c",
                [v for key in chunk for v in key],
            ).fetchall()  # repeats only: nearly always no row
            for row in rows:
                m = message_of(row)
                known[(m.sender_id, m.client_msg_id)] = m
        chat_ids = list({d.chat_id for d in drafts})
        last_seq: dict[str, int] = {}
        for start in range(0, len(chat_ids), CHUNK):
            chunk = chat_ids[start : start + CHUNK]
            for chat_id, seq in json_rows(
                conn,
                "SELECT json_group_array(json_array(chat_id, last_seq)) FROM chats "
                f"WHERE chat_id IN ({','.join('?' * len(chunk))})",
                chunk,
            ):
                last_seq[chat_id] = int(seq)
        senders = list({(d.chat_id, d.sender_id) for d in drafts})
        # The senders' watermarks as they move through the batch.
        marks: dict[tuple[str, str], Marks] = {}
        for start in range(0, len(senders), CHUNK):
            chunk = senders[start : start + CHUNK]
            for chat_id, user_id, read, delivered in json_rows(
                conn,
                f"WITH k(c, u) AS (VALUES {_values(len(chunk), 2)}) "
                "SELECT json_group_array(json_array(m.chat_id, m.user_id, m.read_seq, "
                "m.delivered_seq)) FROM k CROSS JOIN members m "
                "ON m.chat_id = k.c AND m.user_id = k.u WHERE m.left_seq IS NULL",
                [v for key in chunk for v in key],
            ):
                marks[(chat_id, user_id)] = Marks(int(delivered), int(read))
        new: list[Message] = []
        drafts_of_new: list[MessageDraft] = []
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
            if d.encrypted:
                try:  # in the writer's transaction: no upload or revocation can interleave
                    check_coverage(_required_devices(conn, d), (d.ciphertexts or {}).keys())
                except ChatdError as exc:
                    op.result = exc
                    continue
            seq = last_seq[d.chat_id] = last_seq[d.chat_id] + 1
            message = d.to_message(message_id=new_id(), seq=seq, created_at=now)
            known[key] = message
            new.append(message)
            drafts_of_new.append(d)
            before = marks[(d.chat_id, d.sender_id)]
            marks[(d.chat_id, d.sender_id)] = sent(before, seq)
            op.result = Appended(message, True, before.read, before.delivered)
        if not new:
            return
        execute_rows(conn, INSERT_ROWS, width(MESSAGE_COLUMNS), [message_row(m) for m in new])
        sealed = [
            (device_id, m.chat_id, m.seq, c.type, c.body, now)
            for m, d in zip(new, drafts_of_new, strict=True)
            if d.ciphertexts
            for device_id, c in d.ciphertexts.items()
        ]
        execute_rows(conn, INSERT_CIPHERTEXTS, 6, sealed)
        carried = list({m.media_id for m in new if m.media_id is not None})
        if carried:  # the media is referenced from now on: retention keeps it
            conn.executemany(
                "UPDATE media SET referenced = 1 WHERE media_id = ? AND referenced = 0",
                [(media_id,) for media_id in carried],
            )
        chats_moved = {m.chat_id: m.seq for m in new}
        execute_rows(
            conn,
            "WITH v(c, s, a) AS (VALUES {values}) UPDATE chats "
            "SET last_seq = v.s, last_activity = v.a FROM v WHERE chats.chat_id = v.c",
            3,
            [(chat_id, seq, now) for chat_id, seq in chats_moved.items()],
        )
        # The sender has read what it wrote: its unread count stays right.
        own = {(m.chat_id, m.sender_id) for m in new}
        execute_rows(
            conn,
            "WITH v(c, u, d, r) AS (VALUES {values}) UPDATE members "
            "SET delivered_seq = v.d, read_seq = v.r "
            "FROM v WHERE members.chat_id = v.c AND members.user_id = v.u",
            4,
            [(*key, *marks[key]) for key in own],
        )
        _move_sender_cursors(conn, new)


def _move_sender_cursors(conn: sqlite3.Connection, new: Sequence[Message]) -> None:
    """The sending devices have their own messages: move their cursors, in seq
    order, where that leaves no gap (``cursor_after_send``)."""
    keys = list({(m.sender_device_id, m.chat_id) for m in new})
    cursors: dict[tuple[str, str], int] = {}
    for start in range(0, len(keys), CHUNK):
        chunk = keys[start : start + CHUNK]
        for device_id, chat_id, seq in json_rows(
            conn,
            f"WITH k(d, c) AS (VALUES {_values(len(chunk), 2)}) "
            "SELECT json_group_array(json_array(dc.device_id, dc.chat_id, dc.delivered_seq)) "
            "FROM k CROSS JOIN device_cursors dc ON dc.device_id = k.d AND dc.chat_id = k.c",
            [v for key in chunk for v in key],
        ):
            cursors[(device_id, chat_id)] = int(seq)
    moved: dict[tuple[str, str], int] = {}
    for m in new:
        key = (m.sender_device_id, m.chat_id)
        cursor = cursors.get(key, 0)
        cursors[key] = cursor_after_send(cursor, m.seq)
        if cursors[key] != cursor:
            moved[key] = cursors[key]
    execute_rows(
        conn,
        "INSERT INTO device_cursors (device_id, chat_id, delivered_seq) VALUES {values} "
        "ON CONFLICT (device_id, chat_id) DO UPDATE SET delivered_seq = excluded.delivered_seq",
        3,
        [(d, c, seq) for (d, c), seq in moved.items()],
    )


def _required_devices(conn: sqlite3.Connection, draft: MessageDraft) -> list[str]:
    """The devices an encrypted draft must cover: current members' devices with a
    bundle, not revoked, but the sending one."""
    rows = conn.execute(
        "SELECT k.device_id FROM members m JOIN device_keys k ON k.user_id = m.user_id "
        "JOIN devices d ON d.device_id = k.device_id "
        "WHERE m.chat_id = ? AND m.left_seq IS NULL AND d.revoked_at IS NULL "
        "AND k.device_id != ?",
        (draft.chat_id, draft.sender_device_id),
    ).fetchall()
    return [r[0] for r in rows]


INSERT_CIPHERTEXTS = (
    "INSERT OR REPLACE INTO ciphertexts (device_id, chat_id, seq, type, body, stored_at) "
    "VALUES {values}"
)

#: Rows per multi-row statement (at most 11 parameters each: far below SQLite's limit).
CHUNK = 400
INSERT_ROWS = f"INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES {{values}}"


def json_rows(conn: sqlite3.Connection, sql: str, params: Sequence[Any]) -> list[list[Any]]:
    """Rows of a query written to return them as one JSON array: one step, not one per row."""
    (text,) = conn.execute(sql, params).fetchone()
    return json.loads(text) if text else []


def execute_rows(
    conn: sqlite3.Connection, sql: str, width: int, rows: Sequence[tuple[Any, ...]]
) -> None:
    """Run ``sql`` (with ``{values}`` for the VALUES list) over ``rows``, CHUNK at a time."""
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        conn.execute(
            sql.format(values=_values(len(chunk), width)), [v for row in chunk for v in row]
        )


class SqliteMessages:
    def __init__(self, db: Database) -> None:
        self._db = db
        db.register(AppendOp, AppendBatch())

    async def append(self, draft: MessageDraft) -> Appended:
        return await self._db.submit(AppendOp(draft))

    def append_nowait(self, draft: MessageDraft) -> asyncio.Future[Appended]:
        """``append`` as a bare future: the WebSocket path then needs no task per message."""
        return self._db.submit_nowait(AppendOp(draft))

    async def get(self, chat_id: str, message_id: str) -> Message | None:
        row = await self._db.fetchone(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE message_id = ? AND chat_id = ?",
            (message_id, chat_id),
        )
        return message_of(row) if row else None

    async def at_seq(self, chat_id: str, seq: int) -> Message | None:
        row = await self._db.fetchone(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE chat_id = ? AND seq = ?", (chat_id, seq)
        )
        return message_of(row) if row else None

    async def before(
        self, chat_id: str, before_seq: int, limit: int, min_seq: int = 0
    ) -> list[Message]:
        rows = await self._db.fetchall(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE chat_id = ? AND seq < ? AND seq > ? "
            "ORDER BY seq DESC LIMIT ?",
            (chat_id, before_seq, min_seq, limit),
        )
        return [message_of(r) for r in rows]

    async def after(self, chat_id: str, after_seq: int, limit: int) -> list[Message]:
        rows = await self._db.fetchall(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE chat_id = ? AND seq > ? "
            "ORDER BY seq LIMIT ?",
            (chat_id, after_seq, limit),
        )
        return [message_of(r) for r in rows]

    async def senders_between(self, chat_id: str, low_seq: int, high_seq: int) -> set[str]:
        rows = await self._db.fetchall(
            "SELECT DISTINCT sender_id FROM messages WHERE chat_id = ? AND seq > ? AND seq <= ?",
            (chat_id, low_seq, high_seq),
        )
        return {r[0] for r in rows}
