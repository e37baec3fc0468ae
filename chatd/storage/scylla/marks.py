"""Watermarks and last_seq as max registers, and the device-cursor cache.

A watermark cell is only ever written ``USING TIMESTAMP <its value>``: Scylla
keeps the cell with the highest timestamp, so the highest value wins whatever
order writes arrive in, on any node, with no read and no LWT. The cost: those
cells must never be written any other way (nor deleted).
"""

from __future__ import annotations

from collections import OrderedDict

from chatd.storage.scylla.bridge import Cql

CQL = {
    "marks.both": "UPDATE chat_members USING TIMESTAMP ? SET delivered_seq = ?, read_seq = ? "
    "WHERE chat_id = ? AND user_id = ?",
    "marks.delivered": "UPDATE chat_members USING TIMESTAMP ? SET delivered_seq = ? "
    "WHERE chat_id = ? AND user_id = ?",
    "marks.read": "UPDATE chat_members USING TIMESTAMP ? SET read_seq = ? "
    "WHERE chat_id = ? AND user_id = ?",
    "marks.last": "UPDATE chat_members USING TIMESTAMP ? SET last_seq = ?, last_activity = ? "
    "WHERE chat_id = ?",
    "marks.cursor": "UPDATE device_cursors USING TIMESTAMP ? SET delivered_seq = ? "
    "WHERE device_id = ? AND chat_id = ?",
    "marks.get_cursor": "SELECT delivered_seq FROM device_cursors "
    "WHERE device_id = ? AND chat_id = ?",
    "marks.cursors": "SELECT chat_id, delivered_seq FROM device_cursors WHERE device_id = ?",
}


def both(chat_id: str, user_id: str, seq: int) -> tuple[str, tuple[object, ...]]:
    return "marks.both", (seq, seq, seq, chat_id, user_id)


def last(chat_id: str, seq: int, activity: int) -> tuple[str, tuple[object, ...]]:
    return "marks.last", (seq, seq, activity, chat_id)


def cursor(device_id: str, chat_id: str, seq: int) -> tuple[str, tuple[object, ...]]:
    return "marks.cursor", (seq, seq, device_id, chat_id)


class CursorCache:
    """Lower bounds of device cursors seen or written by this process.

    An append moves its device's cursor only when the cursor is at seq - 1 (no
    gap). A cached value is never above the stored one (cursors only rise), so
    trusting it never skips a message; a stale one only costs a replay.
    """

    def __init__(self, cql: Cql, size: int = 100_000) -> None:
        self._cql = cql
        self._size = size
        self._known: OrderedDict[tuple[str, str], int] = OrderedDict()

    def raised(self, device_id: str, chat_id: str, seq: int) -> None:
        key = (device_id, chat_id)
        self._known[key] = max(seq, self._known.get(key, 0))
        self._known.move_to_end(key)
        if len(self._known) > self._size:
            self._known.popitem(last=False)

    async def get(self, device_id: str, chat_id: str) -> int:
        """The cursor as this process knows it; read from storage on a miss only.

        A device's acks and sends reach the node it is connected to, so a
        cached value is rarely behind; when it is, the device gets a replay.
        """
        cached = self._known.get((device_id, chat_id))
        if cached is not None:
            return cached
        row = await self._cql.one("marks.get_cursor", (device_id, chat_id))
        value = int(row.delivered_seq) if row is not None and row.delivered_seq else 0
        self.raised(device_id, chat_id, value)
        return value
