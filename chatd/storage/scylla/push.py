"""Push targets and the notification outbox on ScyllaDB.

Tables (schema.cql):

- ``push_targets`` (partition: device) and ``push_user_targets`` (partition:
  user), written together in a logged batch: a target by device (REST, the
  worker) and a user's targets (the notify step) are each one read.
- ``push_outbox``, partition ``device_id``, rows by ``chat_id``: the waiting
  notifications of one device (bounded by its chats). Every write to these rows
  is a lightweight transaction conditioned on ``delivery_id`` (and, for a
  claim, on the claim and attempt count read), so Paxos orders them: two nodes
  never both claim one item, and a worker never deletes or reschedules an item
  that a later message replaced meanwhile. Contention is per device only.
- ``push_due``, partition ``shard`` (``crc32(device_id) % 64``), rows by
  device: the devices that have (or recently had) waiting notifications. It is
  how workers find due items without a scan: each poll reads the 64 shard
  partitions, then the listed devices' outbox partitions. An index row is
  written (plainly) before the device's item, so an item is never without one;
  a worker removes a row whose device has nothing waiting, once it is a minute
  old, with ``DELETE ... USING TIMESTAMP <its writetime>``: a newer write of the
  row (a new notification) has a later timestamp and survives the delete.
- ``push_dead``, partition ``shard`` (``crc32(delivery_id) % 16``), rows by
  delivery id: dead notifications until an admin retries them or the retention
  sweep (``expire_dead``) reads the 16 partitions and deletes the old rows,
  each ``USING TIMESTAMP`` of the row it read: an item revived and buried
  again meanwhile was written later and survives.
"""

from __future__ import annotations

import json
import uuid
import zlib
from collections.abc import Sequence
from typing import Any

from chatd.core.ports.push import DeadItem, OutboxItem, PushTarget, RegisteredTarget
from chatd.storage.scylla.bridge import Cql, gather_limited, unavailable

DUE_SHARDS = 64
DEAD_SHARDS = 16
#: An index row whose device has nothing waiting is removed once this old (µs).
STALE_INDEX_US = 60_000_000
ROUNDS = 10

_ITEM = "device_id, chat_id, user_id, delivery_id, seq, payload, due_at, attempts, last_error"
_T = "user_id, device_id, provider, push_token, endpoint, p256dh, auth, registered_at"

CQL = {
    "push.put_target": f"INSERT INTO push_targets ({_T}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    "push.put_user_target": f"INSERT INTO push_user_targets ({_T}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    "push.get_target": f"SELECT {_T} FROM push_targets WHERE device_id = ?",
    "push.user_targets": f"SELECT {_T} FROM push_user_targets WHERE user_id = ?",
    "push.drop_target": "DELETE FROM push_targets WHERE device_id = ?",
    "push.drop_user_target": "DELETE FROM push_user_targets WHERE user_id = ? AND device_id = ?",
    "push.items": f"SELECT {_ITEM}, claim_until, claimed_by FROM push_outbox WHERE device_id = ?",
    "push.item": f"SELECT {_ITEM}, claim_until, claimed_by FROM push_outbox "
    "WHERE device_id = ? AND chat_id = ?",
    "push.insert": f"INSERT INTO push_outbox ({_ITEM}, claim_until, claimed_by) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, '') IF NOT EXISTS",
    "push.replace": "UPDATE push_outbox SET delivery_id = ?, seq = ?, payload = ?, due_at = ?, "
    "attempts = 0, last_error = '', claim_until = 0, claimed_by = '' "
    "WHERE device_id = ? AND chat_id = ? IF delivery_id = ?",
    "push.claim": "UPDATE push_outbox SET claim_until = ?, claimed_by = ? "
    "WHERE device_id = ? AND chat_id = ? IF delivery_id = ? AND claim_until = ? AND attempts = ?",
    "push.retry": "UPDATE push_outbox SET attempts = ?, due_at = ?, last_error = ?, "
    "claim_until = 0, claimed_by = '' WHERE device_id = ? AND chat_id = ? IF delivery_id = ?",
    "push.delete": "DELETE FROM push_outbox WHERE device_id = ? AND chat_id = ? IF delivery_id = ?",
    "push.touch": "INSERT INTO push_due (shard, device_id, touched) VALUES (?, ?, ?)",
    "push.due": "SELECT device_id, writetime(touched) FROM push_due WHERE shard = ?",
    "push.untouch": "DELETE FROM push_due USING TIMESTAMP ? WHERE shard = ? AND device_id = ?",
    "push.bury": "INSERT INTO push_dead (shard, delivery_id, device_id, chat_id, user_id, seq, "
    "payload, attempts, last_error, dead_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "push.dead_page": "SELECT device_id, chat_id, user_id, delivery_id, seq, payload, dead_at, "
    "attempts, last_error FROM push_dead WHERE shard = ? AND delivery_id > ? LIMIT ?",
    "push.dead_one": "SELECT device_id, chat_id, user_id, delivery_id, seq, payload, dead_at, "
    "attempts, last_error FROM push_dead WHERE shard = ? AND delivery_id = ?",
    "push.unbury": "DELETE FROM push_dead WHERE shard = ? AND delivery_id = ?",
    "push.dead_ages": "SELECT delivery_id, dead_at, writetime(dead_at) FROM push_dead "
    "WHERE shard = ?",
    "push.expire_dead": "DELETE FROM push_dead USING TIMESTAMP ? "
    "WHERE shard = ? AND delivery_id = ?",
}


def due_shard(device_id: str) -> int:
    return zlib.crc32(device_id.encode()) % DUE_SHARDS


def dead_shard(delivery_id: str) -> int:
    return zlib.crc32(delivery_id.encode()) % DEAD_SHARDS


def _target(row: Any) -> RegisteredTarget:
    t = PushTarget(
        row.user_id, row.device_id, row.provider, row.push_token, row.endpoint, row.p256dh, row.auth
    )
    return RegisteredTarget(t, int(row.registered_at))


def _item(row: Any) -> OutboxItem:
    return OutboxItem(
        row.device_id,
        row.chat_id,
        row.user_id,
        row.delivery_id,
        int(row.seq),
        json.loads(row.payload),
        int(row[6]),
        int(row.attempts or 0),
        row.last_error or "",
    )


def _dump(payload: Any) -> str:
    return json.dumps(payload, separators=(",", ":"))


class ScyllaPush:
    def __init__(self, cql: Cql) -> None:
        self._cql = cql

    # -- targets ------------------------------------------------------------

    async def put_target(self, target: PushTarget, registered_at: int) -> None:
        t = target
        values = (t.user_id, t.device_id, t.provider, t.token, t.endpoint, t.p256dh, t.auth,
                  registered_at)  # fmt: skip
        async with self._cql.gate.held():
            batch = self._cql.batch(
                [("push.put_target", values), ("push.put_user_target", values)], logged=True
            )
            await self._cql.write(batch)

    async def get_target(self, device_id: str) -> RegisteredTarget | None:
        row = await self._cql.one("push.get_target", (device_id,))
        return _target(row) if row is not None else None

    async def delete_target(self, device_id: str) -> bool:
        async with self._cql.gate.held():
            current = await self.get_target(device_id)
            await self.cancel(device_id)
            if current is None:
                return False
            batch = self._cql.batch(
                [
                    ("push.drop_target", (device_id,)),
                    ("push.drop_user_target", (current.target.user_id, device_id)),
                ],
                logged=True,
            )
            await self._cql.write(batch)
            return True

    async def targets(self, user_id: str) -> list[RegisteredTarget]:
        return [_target(r) for r in await self._cql.rows("push.user_targets", (user_id,))]

    # -- outbox: writes ---------------------------------------------------------

    async def _serial_item(self, device_id: str, chat_id: str) -> Any:
        return await self._cql.one("push.item", (device_id, chat_id), serial=True)

    async def enqueue(self, items: Sequence[OutboxItem]) -> None:
        if not items:
            return
        async with self._cql.gate.held():
            touched = {i.device_id: i.due_at for i in items}
            await self._cql.writes(
                [("push.touch", (due_shard(d), d, at)) for d, at in touched.items()]
            )
            await gather_limited([self._upsert(i) for i in items])

    async def _upsert(self, item: OutboxItem) -> None:
        key = (item.device_id, item.chat_id)
        row = await self._cql.one("push.item", key)
        for _ in range(ROUNDS):
            if row is not None and int(row.seq) >= item.seq:
                return  # a later (or the same) notification waits already

            async def mine(d: str = item.delivery_id) -> bool:
                now = await self._serial_item(*key)
                return now is not None and now.delivery_id == d

            if row is None:
                values = _item_values(item)
                result = await self._cql.lwt("push.insert", values, verify=mine)
            else:
                due = max(int(row.due_at), item.due_at)
                params = (item.delivery_id, item.seq, _dump(item.payload), due, *key,
                          row.delivery_id)  # fmt: skip
                result = await self._cql.lwt("push.replace", params, verify=mine)
            if result.applied:
                return
            row = await self._serial_item(*key)
        raise unavailable()

    async def cancel(self, device_id: str) -> int:
        async with self._cql.gate.held():
            rows = await self._cql.rows("push.items", (device_id,))
            gone = await gather_limited([self._delete(r.device_id, r.chat_id, r.delivery_id)
                                         for r in rows])  # fmt: skip
            return sum(gone)

    async def _delete(self, device_id: str, chat_id: str, delivery_id: str) -> bool:
        async def gone() -> bool:
            row = await self._serial_item(device_id, chat_id)
            return row is None or row.delivery_id != delivery_id

        result = await self._cql.lwt("push.delete", (device_id, chat_id, delivery_id), verify=gone)
        return result.applied

    async def done(self, item: OutboxItem) -> bool:
        async with self._cql.gate.held():
            return await self._delete(item.device_id, item.chat_id, item.delivery_id)

    async def retry_later(self, item: OutboxItem, attempts: int, due_at: int, error: str) -> bool:
        key = (item.device_id, item.chat_id)

        async def applied() -> bool:
            row = await self._serial_item(*key)
            return (
                row is not None
                and row.delivery_id == item.delivery_id
                and (int(row.attempts) == attempts)
            )

        async with self._cql.gate.held():
            params = (attempts, due_at, error, *key, item.delivery_id)
            return (await self._cql.lwt("push.retry", params, verify=applied)).applied

    async def bury(self, item: OutboxItem, attempts: int, error: str, dead_at: int) -> bool:
        async with self._cql.gate.held():
            row = await self._serial_item(item.device_id, item.chat_id)
            if row is None or row.delivery_id != item.delivery_id:
                return False
            # The dead row first: a crash in between leaves the item to be retried
            # (and buried again under the same key), never lost.
            await self._cql.write(
                "push.bury",
                (dead_shard(item.delivery_id), item.delivery_id, item.device_id, item.chat_id,
                 item.user_id, item.seq, _dump(item.payload), attempts, error, dead_at),
            )  # fmt: skip
            return await self._delete(item.device_id, item.chat_id, item.delivery_id)

    # -- outbox: claims -----------------------------------------------------------

    async def claim(
        self, now: int, lease_ms: int, limit: int, devices: Sequence[str] | None = None
    ) -> list[OutboxItem]:
        """Claims go device by device (64 at a time) until ``limit`` is reached;
        every item claimed is returned, so a chunk may pass ``limit`` a little."""
        async with self._cql.gate.held():
            listed: list[tuple[str, int]] = (
                await self._due_devices() if devices is None else [(d, 0) for d in devices]
            )
            claimed: list[OutboxItem] = []
            for start in range(0, len(listed), 64):
                if len(claimed) >= limit:
                    break
                chunk = listed[start : start + 64]
                found = await gather_limited(
                    [self._claim_device(d, written, now, lease_ms) for d, written in chunk]
                )
                for items in found:
                    claimed.extend(items)
            return sorted(claimed, key=lambda i: i.due_at)

    async def _due_devices(self) -> list[tuple[str, int]]:
        """Every device in the index, with the writetime (µs) of its index row."""
        pages = await gather_limited(
            [self._cql.rows("push.due", (shard,)) for shard in range(DUE_SHARDS)], limit=16
        )
        return [(row.device_id, int(row[1] or 0)) for rows in pages for row in rows]

    async def _claim_device(
        self, device_id: str, written: int, now: int, lease_ms: int
    ) -> list[OutboxItem]:
        rows = await self._cql.rows("push.items", (device_id,))
        if not rows:
            if written and written < now * 1000 - STALE_INDEX_US:
                await self._cql.write("push.untouch", (written, due_shard(device_id), device_id))
            return []
        out: list[OutboxItem] = []
        for row in rows:
            if int(row.due_at) > now or int(row.claim_until or 0) > now:
                continue
            token = uuid.uuid4().hex

            async def mine(row: Any = row, token: str = token) -> bool:
                current = await self._serial_item(row.device_id, row.chat_id)
                return current is not None and current.claimed_by == token

            params = (now + lease_ms, token, row.device_id, row.chat_id, row.delivery_id,
                      int(row.claim_until or 0), int(row.attempts or 0))  # fmt: skip
            if (await self._cql.lwt("push.claim", params, verify=mine)).applied:
                out.append(_item(row))
        return out

    # -- dead items, depth ---------------------------------------------------------

    async def dead(self, limit: int, cursor: str = "") -> tuple[list[DeadItem], str | None]:
        shard, _, after = cursor.partition(":") if cursor else ("0", "", "")
        first = int(shard) if shard.isdigit() else 0
        out: list[DeadItem] = []
        for s in range(first, DEAD_SHARDS):
            want = limit + 1 - len(out)
            rows = await self._cql.rows("push.dead_page", (s, after if s == first else "", want))
            out.extend(DeadItem(_item(r), int(r.dead_at)) for r in rows)
            if len(out) > limit:
                page = out[:limit]
                last = page[-1].item.delivery_id
                return page, f"{dead_shard(last)}:{last}"
        return out, None

    async def revive(self, delivery_id: str, now: int) -> str | None:
        shard = dead_shard(delivery_id)
        async with self._cql.gate.held():
            row = await self._cql.one("push.dead_one", (shard, delivery_id))
            if row is None:
                return None
            item = OutboxItem(
                row.device_id, row.chat_id, row.user_id, row.delivery_id, int(row.seq),
                json.loads(row.payload), now,
            )  # fmt: skip
            await self._cql.write("push.touch", (due_shard(item.device_id), item.device_id, now))

            async def mine() -> bool:
                current = await self._serial_item(item.device_id, item.chat_id)
                return current is not None and current.delivery_id == delivery_id

            result = await self._cql.lwt("push.insert", _item_values(item), verify=mine)
            await self._cql.write("push.unbury", (shard, delivery_id))
            return "requeued" if result.applied else "superseded"

    async def expire_dead(self, before: int) -> int:
        async with self._cql.gate.held():
            shards = await gather_limited(
                [self._cql.all_rows("push.dead_ages", (s,)) for s in range(DEAD_SHARDS)]
            )
            old = [
                (int(row[2]), shard, row.delivery_id)
                for shard, rows in enumerate(shards)
                for row in rows
                if int(row.dead_at) < before
            ]
            await gather_limited([self._cql.write("push.expire_dead", params) for params in old])
            return len(old)

    async def depth(self) -> int:
        devices = dict.fromkeys(d for d, _ in await self._due_devices())
        counts = await gather_limited([self._cql.rows("push.items", (d,)) for d in devices])
        return sum(len(rows) for rows in counts)


def _item_values(item: OutboxItem) -> tuple[Any, ...]:
    return (
        item.device_id,
        item.chat_id,
        item.user_id,
        item.delivery_id,
        item.seq,
        _dump(item.payload),
        item.due_at,
        item.attempts,
        item.last_error,
    )
