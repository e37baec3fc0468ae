"""The watermark rules, written once: every storage adapter computes with these.

A member of a chat has two watermarks (``Member.delivered_seq``/``read_seq``)
and each of its devices a delivery cursor per chat (what the device itself has,
so a reconnecting device is replayed exactly what it misses). The rules:

* **Watermarks only rise**, whatever order receipts arrive in; reading a
  message implies having received it, so ``read`` also raises ``delivered``.
* **The sender has read and received what it wrote**: appending a message
  raises the sender's own watermarks to its seq (its unread count stays right).
* **The device-cursor gap rule**: the sending device has its own message, so its
  cursor moves to the message's seq, but only if it had everything up to
  seq - 1; otherwise a replay would skip the messages in between.
* **Pending chats**: a device has something to catch up on in a chat when the
  chat's last seq it may see (up to where the user left) is above both where
  the user joined and the device's cursor.

Pure functions over plain values, so adapters can apply them inside their own
transactions or batches, and tests can check them without a store.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from chatd.core.models import PendingChat, WatermarkMove, WatermarkResult


class Marks(NamedTuple):
    """A member's watermarks in one chat."""

    delivered: int = 0
    read: int = 0


def advance(marks: Marks, delivered: int, read: int) -> Marks:
    """``marks`` raised to a receipt: never lowered, and ``read`` raises ``delivered`` too."""
    new_read = max(marks.read, read)
    return Marks(max(marks.delivered, delivered, new_read), new_read)


def apply_move(marks: Marks, move: WatermarkMove) -> tuple[Marks, WatermarkResult]:
    """The member's marks after ``move``, and the before/after the store reports for it."""
    after = advance(marks, move.delivered_seq, move.read_seq)
    return after, WatermarkResult(marks.delivered, after.delivered, marks.read, after.read)


def sent(marks: Marks, seq: int) -> Marks:
    """The sender's marks once its message ``seq`` is stored: it has read what it wrote."""
    return advance(marks, seq, seq)


def cursor_after_send(cursor: int, seq: int) -> int:
    """The sending device's cursor once its message ``seq`` is stored.

    It moves only when it leaves no gap (the device had everything up to
    seq - 1): a cursor above a message the device never received would make a
    replay skip it.
    """
    return seq if cursor == seq - 1 else cursor


def acked_cursors(moves: Iterable[WatermarkMove]) -> dict[tuple[str, str], int]:
    """``(device_id, chat_id)`` -> the highest seq the device acknowledged in ``moves``.

    Only moves that name a device and a delivered seq move a cursor; the store
    raises each cursor to its value, never lowers one.
    """
    highest: dict[tuple[str, str], int] = {}
    for move in moves:
        if move.device_id is None or move.delivered_seq <= 0:
            continue
        key = (move.device_id, move.chat_id)
        highest[key] = max(highest.get(key, 0), move.delivered_seq)
    return highest


@dataclass(frozen=True, slots=True)
class Position:
    """What ``pending_chats`` needs of one of the user's memberships, for one device."""

    chat_id: str
    joined_seq: int
    left_seq: int | None
    last_seq: int  # the chat's
    last_activity: int  # the chat's
    cursor: int  # the device's delivery cursor in the chat (0: none yet)


def pending_chat(p: Position) -> PendingChat | None:
    """The messages of one chat the device has not acknowledged, if any.

    They start after the later of the user's join and the device's cursor, and
    end at the chat's last seq, or where the user left (the last message a past
    member may see). ``last_seq - after_seq`` of them: seqs have no gaps.
    """
    last = p.last_seq if p.left_seq is None else min(p.last_seq, p.left_seq)
    after = max(p.joined_seq, p.cursor)
    return PendingChat(p.chat_id, after, last) if last > after else None


def pending_chats(positions: Iterable[Position]) -> list[PendingChat]:
    """The chats with unacknowledged messages, least recently active first."""
    found = [
        (p.last_activity, pending) for p in positions if (pending := pending_chat(p)) is not None
    ]
    found.sort(key=lambda item: item[0])
    return [pending for _, pending in found]
