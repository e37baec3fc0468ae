"""End-to-end encryption key bundles on ScyllaDB.

``device_keys`` holds a device's identity and signed prekey; its one-time
prekeys are the rows of one ``one_time_prekeys`` partition. A claim reads a few
candidates and deletes one with ``DELETE ... IF public_key = ?``: Paxos lets
exactly one claimant apply that delete, so a prekey is handed out at most once
across processes and nodes. Candidates are tried in random order so concurrent
claimants on other nodes rarely collide; in this process, claims for one
device queue on a lock. A claim whose outcome is unknown (timeout) counts as
lost, never as won: a wasted prekey is harmless, a prekey handed out twice is not.

Cost: a claim is one read and one LWT; an upload is one read and one batch.
Every claim leaves a row tombstone in the partition until ``gc_grace_seconds``,
which the next claims' reads skip over: bounded by the claims of that period.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from chatd.core.models import DeviceKeys, Prekey
from chatd.storage.scylla.bridge import Cql, KeyedLocks

CANDIDATES = 16
ROUNDS = 20
INSERTS_PER_BATCH = 100

CQL = {
    "prekeys.get": "SELECT device_id, user_id, identity_key, signed_key_id, signed_public_key, "
    "signed_signature, updated_at FROM device_keys WHERE device_id = ?",
    "prekeys.put": "INSERT INTO device_keys (device_id, user_id, identity_key, signed_key_id, "
    "signed_public_key, signed_signature, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
    "prekeys.drop_prekeys": "DELETE FROM one_time_prekeys WHERE device_id = ?",
    "prekeys.prekey_ids": "SELECT key_id FROM one_time_prekeys WHERE device_id = ?",
    "prekeys.add_prekey": "INSERT INTO one_time_prekeys (device_id, key_id, public_key) "
    "VALUES (?, ?, ?)",
    "prekeys.candidates": "SELECT key_id, public_key FROM one_time_prekeys WHERE device_id = ? "
    f"LIMIT {CANDIDATES}",
    "prekeys.take": "DELETE FROM one_time_prekeys WHERE device_id = ? AND key_id = ? "
    "IF public_key = ?",
    "prekeys.count": "SELECT COUNT(*) FROM one_time_prekeys WHERE device_id = ?",
}


async def _lost() -> bool:
    return False


class ScyllaKeys:
    def __init__(self, cql: Cql) -> None:
        self._cql = cql
        self._locks = KeyedLocks()

    async def put(self, keys: DeviceKeys, one_time: Sequence[Prekey]) -> None:
        async with self._cql.gate.held():
            current = await self._cql.one("prekeys.get", (keys.device_id,))
            known: set[int] = set()
            if current is not None and current.identity_key != keys.identity_key:
                # Written (and acknowledged) before the new rows, so it cannot shadow them.
                await self._cql.write("prekeys.drop_prekeys", (keys.device_id,))
            elif current is not None:
                rows = await self._cql.all_rows("prekeys.prekey_ids", (keys.device_id,))
                known = {int(r.key_id) for r in rows}
            fresh = [p for p in one_time if p.key_id not in known]
            writes = [
                self._cql.batch(
                    [
                        ("prekeys.add_prekey", (keys.device_id, p.key_id, p.public_key))
                        for p in fresh[start : start + INSERTS_PER_BATCH]
                    ]
                )
                for start in range(0, len(fresh), INSERTS_PER_BATCH)
            ]
            await self._cql.writes([(batch, ()) for batch in writes])
            # The bundle last: once it is visible, so are its prekeys.
            await self._cql.write("prekeys.put", keys.flat())

    async def get(self, device_id: str) -> DeviceKeys | None:
        row = await self._cql.one("prekeys.get", (device_id,))
        return DeviceKeys.from_flat(row) if row is not None else None

    async def claim(self, device_id: str) -> Prekey | None:
        async with self._cql.gate.held(), self._locks.hold(device_id):
            for _ in range(ROUNDS):
                rows = await self._cql.rows("prekeys.candidates", (device_id,))
                if not rows:
                    return None
                random.shuffle(rows)
                for row in rows:
                    result = await self._cql.lwt(
                        "prekeys.take", (device_id, row.key_id, row.public_key), verify=_lost
                    )
                    if result.applied:
                        return Prekey(int(row.key_id), row.public_key)
            return None  # contended throughout: the sender falls back to the signed prekey

    async def count(self, device_id: str) -> int:
        row = await self._cql.one("prekeys.count", (device_id,))
        return int(row[0]) if row is not None else 0
