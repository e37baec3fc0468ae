"""Pieces shared by the ScyllaDB stores: message rows, buckets, ordered ids."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

from cassandra.query import UNSET_VALUE

from chatd.core.ids import new_id
from chatd.core.models import Message, MessageDraft, columns

#: Messages per partition: (chat_id, seq // BUCKET). 1,000 keeps the largest
#: possible partition (every message at the 64 KiB limit) at 64 MiB, and a
#: typical one (a few hundred bytes a message) well under a megabyte, while a
#: history page rarely spans two partitions. Changing it needs a data migration.
BUCKET = 1_000
MAX_BUCKET = 2**31 - 1

MESSAGE_COLUMNS = columns(Message)  # the table's other columns: bucket, change, epoch


def bucket_of(seq: int) -> int:
    return seq // BUCKET


def message_of(row: Any) -> Message:
    return Message(
        message_id=row.message_id,
        chat_id=row.chat_id,
        seq=int(row.seq),
        sender_id=row.sender_id,
        sender_device_id=row.sender_device_id,
        type=row.type,
        content=row.content,
        client_msg_id=row.client_msg_id,
        created_at=int(row.created_at),
        media_id=row.media_id,
        reply_to=row.reply_to,
        encrypted=bool(row.encrypted),
    )


def id_after(previous: str | None) -> str:
    """A fresh UUIDv7 that sorts after ``previous`` (the message at seq - 1).

    Ids of one chat must sort in seq order even when nodes' clocks differ: if
    this node's clock is behind, the id borrows the previous id's millisecond
    and counts up in its 12-bit counter, as RFC 9562 method 1 does.
    """
    candidate = new_id()
    if previous is None or candidate > previous:
        return candidate
    value = uuid.UUID(previous).int
    ms, counter = value >> 80, ((value >> 64) & 0xFFF) + 1
    if counter > 0xFFF:
        ms, counter = ms + 1, 0
    value = (ms << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | secrets.randbits(62)
    return str(uuid.UUID(int=value))


def or_zero(value: int | None) -> int:
    return int(value) if value is not None else 0


def build_message(draft: MessageDraft, message_id: str, seq: int, now: int) -> Message:
    return draft.to_message(message_id=message_id, seq=seq, created_at=now)


def claim_row(m: Message, bucket: int, change: str | None) -> tuple[object, ...]:
    unset = UNSET_VALUE
    return (
        m.chat_id,
        bucket,
        m.seq,
        m.message_id,
        m.sender_id,
        m.sender_device_id,
        m.type,
        m.content,
        m.client_msg_id,
        m.created_at,
        unset if m.media_id is None else m.media_id,
        unset if m.reply_to is None else m.reply_to,
        unset if change is None else change,
        True if m.encrypted else unset,
    )
