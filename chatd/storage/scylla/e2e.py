"""End-to-end encrypted messages on ScyllaDB: device sets, coverage, ciphertexts.

**Device sets.** ``e2e_devices`` holds, per user, the devices with a key bundle
that are not revoked, and a static ``version`` that every change moves in the
same LWT (``add``: a bundle for a new device; ``remove``: a revocation).

**Coverage, atomic with the append.** SQLite checks inside the writer's
transaction; here the seq claim is a Paxos round on the chat's bucket, which
cannot also read the members' device sets. So an encrypted draft is checked by
the sequencer, in submission order, right before its claim (``check``: the
chat's members, then each member's set by a SERIAL read, remembering the
versions), and re-checked right after its claim (``recheck``: the versions
again, SERIAL). Equal versions prove that no set changed between the two
reads, an interval that contains the claim: the map was exact at the moment the
message was stored. Different versions (a bundle upload or a revocation that
raced this very send) are compensated before the append answers:

- a device revoked meanwhile gets no ciphertext (its copy is dropped): the
  revoked device could not fetch it anyway;
- a device that got its bundle meanwhile and is not in the map is treated as
  having joined just after this message: its ciphertexts of this chat with a
  lower seq are deleted, so what it holds is always a suffix of the chat
  (never a message without its entry between two with one). What the live
  fan-out already pushed to it in that window stays pushed.

The window is one claim round trip; in one process, sends of a chat are
checked and claimed in order, so a send submitted after one that was refused
for a device is refused too. See docs/architecture.md.

**Ciphertexts.** A partition per (chat, device), rows by seq, written after the
claim and before the append answers; an acknowledgement is one range delete.
The retention sweep reads ``ciphertext_hours`` (per hour, the partitions
written) for hours entirely before the cutoff, reads each partition's seqs and
times, and range deletes what was stored before the cutoff.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from chatd.core.e2e import check_coverage
from chatd.core.ids import now_ms
from chatd.core.models import Ciphertext, Message, MessageDraft
from chatd.storage.scylla.bridge import Cql, gather_limited, unavailable

log = logging.getLogger("chatd.storage.scylla")

HOUR_MS = 3_600_000
ROUNDS = 20

CQL = {
    "e2e.set": "SELECT device_id, version FROM e2e_devices WHERE user_id = ?",
    "e2e.version": "SELECT version FROM e2e_devices WHERE user_id = ? LIMIT 1",
    "e2e.add": "INSERT INTO e2e_devices (user_id, device_id) VALUES (?, ?)",
    "e2e.drop": "DELETE FROM e2e_devices WHERE user_id = ? AND device_id = ?",
    "e2e.move": "UPDATE e2e_devices SET version = ? WHERE user_id = ? IF version = ?",
    "e2e.members": "SELECT user_id, role, left_seq FROM chat_members WHERE chat_id = ?",
    "e2e.write": "INSERT INTO ciphertexts (chat_id, device_id, seq, type, body, stored_at) "
    "VALUES (?, ?, ?, ?, ?, ?)",
    "e2e.hour": "INSERT INTO ciphertext_hours (hour, chat_id, device_id) VALUES (?, ?, ?)",
    "e2e.list_hour": "INSERT INTO ciphertext_hour_list (shard, hour) VALUES (0, ?)",
    "e2e.hours": "SELECT hour FROM ciphertext_hour_list WHERE shard = 0 AND hour < ?",
    "e2e.hour_rows": "SELECT chat_id, device_id FROM ciphertext_hours WHERE hour = ?",
    "e2e.stored": "SELECT seq, stored_at FROM ciphertexts WHERE chat_id = ? AND device_id = ?",
    "e2e.drop_hour": "DELETE FROM ciphertext_hours WHERE hour = ?",
    "e2e.unlist_hour": "DELETE FROM ciphertext_hour_list WHERE shard = 0 AND hour = ?",
    "e2e.between": "SELECT seq, type, body FROM ciphertexts "
    "WHERE chat_id = ? AND device_id = ? AND seq >= ? AND seq <= ?",
    "e2e.ack": "DELETE FROM ciphertexts WHERE chat_id = ? AND device_id = ? AND seq <= ?",
    "e2e.drop_one": "DELETE FROM ciphertexts WHERE chat_id = ? AND device_id = ? AND seq = ?",
    "e2e.drop_before": "DELETE FROM ciphertexts WHERE chat_id = ? AND device_id = ? AND seq < ?",
}


class DeviceSets:
    """``e2e_devices``: who must be covered, and a version to tell it changed."""

    def __init__(self, cql: Cql) -> None:
        self._cql = cql

    async def read(self, user_id: str) -> tuple[set[str], uuid.UUID | None]:
        rows = await self._cql.all_rows("e2e.set", (user_id,), serial=True)
        version = rows[0].version if rows else None
        return {r.device_id for r in rows if r.device_id is not None}, version

    async def version(self, user_id: str) -> uuid.UUID | None:
        row = await self._cql.one("e2e.version", (user_id,), serial=True)
        return row.version if row is not None else None

    async def add(self, user_id: str, device_id: str) -> bool:
        """Put the device in its user's set; True if it was not there."""
        return await self._change(user_id, device_id, "e2e.add")

    async def remove(self, user_id: str, device_id: str) -> bool:
        return await self._change(user_id, device_id, "e2e.drop")

    async def _change(self, user_id: str, device_id: str, statement: str) -> bool:
        for _ in range(ROUNDS):
            devices, version = await self.read(user_id)
            if (device_id in devices) == (statement == "e2e.add"):
                return False
            mine = uuid.uuid4()
            batch = self._cql.batch(
                [(statement, (user_id, device_id)), ("e2e.move", (mine, user_id, version))]
            )

            async def applied(mine: uuid.UUID = mine) -> bool:
                return await self.version(user_id) == mine

            if (await self._cql.lwt(batch, verify=applied)).applied:
                return True
        raise unavailable()


class Coverage:
    """The check and re-check of an encrypted draft around its seq claim."""

    def __init__(self, cql: Cql, sets: DeviceSets) -> None:
        self._cql = cql
        self._sets = sets

    async def check(self, draft: MessageDraft) -> dict[str, uuid.UUID | None]:
        """Raise ``DeviceMismatch`` unless the map is exact now; the versions read."""
        rows = await self._cql.all_rows("e2e.members", (draft.chat_id,), serial=True)
        members = [r.user_id for r in rows if r.role is not None and r.left_seq is None]
        sets = await gather_limited([self._sets.read(u) for u in members])
        required = {d for devices, _ in sets for d in devices} - {draft.sender_device_id}
        check_coverage(required, (draft.ciphertexts or {}).keys())
        return {u: version for u, (_, version) in zip(members, sets, strict=True)}

    async def recheck(
        self, draft: MessageDraft, versions: Mapping[str, uuid.UUID | None]
    ) -> tuple[set[str], set[str]]:
        """After the claim: (devices to drop from the map, devices that joined meanwhile)."""
        now = await gather_limited([self._sets.version(u) for u in versions])
        if all(v == versions[u] for u, v in zip(versions, now, strict=True)):
            return set(), set()
        sets = await gather_limited([self._sets.read(u) for u in versions])
        current = {d for devices, _ in sets for d in devices} - {draft.sender_device_id}
        given = set(draft.ciphertexts or {})
        log.warning("device set changed while an encrypted message to %s was stored", draft.chat_id)
        return given - current, current - given


class ScyllaCiphertexts:
    def __init__(self, cql: Cql) -> None:
        self._cql = cql
        self._listed_hour = -1

    def writes(
        self, message: Message, ciphertexts: Mapping[str, Ciphertext]
    ) -> list[tuple[str, tuple[object, ...]]]:
        """The rows of one stored message's ciphertexts, and their retention entries."""
        now = now_ms()
        hour = now // HOUR_MS
        out: list[tuple[str, tuple[object, ...]]] = []
        for device_id, c in ciphertexts.items():
            key = (message.chat_id, device_id)
            out.append(("e2e.write", (*key, message.seq, c.type, c.body, now)))
            out.append(("e2e.hour", (hour, *key)))
        if hour != self._listed_hour:
            out.append(("e2e.list_hour", (hour,)))
            self._listed_hour = hour
        return out

    async def between(
        self, device_id: str, chat_id: str, low_seq: int, high_seq: int
    ) -> dict[int, Ciphertext]:
        rows = await self._cql.all_rows("e2e.between", (chat_id, device_id, low_seq, high_seq))
        return {int(r.seq): Ciphertext(r.type, r.body) for r in rows}

    async def expire(self, before: int) -> int:
        removed = 0
        for row in await self._cql.all_rows("e2e.hours", (before // HOUR_MS,)):
            hour = int(row.hour)
            entries = await self._cql.all_rows("e2e.hour_rows", (hour,))
            counts = await gather_limited(
                [self._expire(e.chat_id, e.device_id, before) for e in entries]
            )
            await self._cql.write("e2e.drop_hour", (hour,))
            await self._cql.write("e2e.unlist_hour", (hour,))
            removed += sum(counts)
        return removed

    async def _expire(self, chat_id: str, device_id: str, before: int) -> int:
        """One range delete: the partition's rows up to the last one stored before
        ``before`` (a chat's seqs follow the time they were stored)."""
        rows = await self._cql.all_rows("e2e.stored", (chat_id, device_id))
        old = [int(r.seq) for r in rows if int(r.stored_at) < before]
        if old:
            await self._cql.write("e2e.ack", (chat_id, device_id, max(old)))
        return len(old)


def ack_writes(cursors: Mapping[tuple[str, str], int]) -> list[tuple[str, Sequence[Any]]]:
    """Range deletes of what devices acknowledged (``ReceiptStore.advance``)."""
    return [("e2e.ack", (chat_id, device_id, seq)) for (device_id, chat_id), seq in cursors.items()]
