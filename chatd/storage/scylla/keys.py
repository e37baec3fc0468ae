"""End-to-end encryption key bundles on ScyllaDB.

``device_keys`` holds a device's identity and signed prekey; its one-time
prekeys are the rows of one ``one_time_prekeys`` partition. A claim reads a few
candidates and deletes one with ``DELETE ... IF public_key = ?``: Paxos lets
exactly one claimant apply that delete, so a prekey is handed out at most once
across processes and nodes. Candidates are tried in random order so concurrent
claimants on other nodes rarely collide; in this process, claims for one
device queue on a lock. A claim whose outcome is unknown (timeout) counts as
lost, never as won: a wasted prekey is harmless, a prekey handed out twice is not.

An upload reads the partition (its ids and the static ``last_upload``, the id
of the last upload applied), checks the cap on what it read, and writes all of
its rows in one conditional batch on that partition, ``IF last_upload = <what
it read>``, setting ``last_upload`` to its own id. Two uploads that read the
same state cannot both apply: the loser re-reads (now counting the winner's
prekeys) and checks again, so concurrent uploads on any nodes never pass the
cap together, and an upload is applied whole or not at all. Claims only remove
prekeys and do not touch ``last_upload``: they never make an upload retry, and
can only make the count it checked an overestimate. A new identity key deletes
the old prekeys row by row in the same batch (a partition delete would shadow
the batch's own inserts, which share its timestamp).

Cost: a claim is one read and one LWT; an upload is two reads and one LWT (one
more read and LWT per lost race), then one write of the bundle. Every claim
leaves a row tombstone in the partition until ``gc_grace_seconds``, which the
next claims' reads skip over: bounded by the claims of that period.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Sequence

from chatd.core.errors import ChatdError
from chatd.core.models import DeviceKeys, Prekey
from chatd.core.prekeys import prekeys_to_add
from chatd.storage.scylla.bridge import Cql, KeyedLocks, unavailable
from chatd.storage.scylla.e2e import DeviceSets

CANDIDATES = 16
ROUNDS = 20

CQL = {
    "prekeys.get": "SELECT device_id, user_id, identity_key, signed_key_id, signed_public_key, "
    "signed_signature, updated_at FROM device_keys WHERE device_id = ?",
    "prekeys.put": "INSERT INTO device_keys (device_id, user_id, identity_key, signed_key_id, "
    "signed_public_key, signed_signature, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
    "prekeys.held": "SELECT last_upload, key_id FROM one_time_prekeys WHERE device_id = ?",
    "prekeys.last_upload": "SELECT last_upload FROM one_time_prekeys WHERE device_id = ? LIMIT 1",
    "prekeys.add_prekey": "INSERT INTO one_time_prekeys (device_id, key_id, public_key) "
    "VALUES (?, ?, ?)",
    "prekeys.drop_prekey": "DELETE FROM one_time_prekeys WHERE device_id = ? AND key_id = ?",
    "prekeys.mark_upload": "UPDATE one_time_prekeys SET last_upload = ? WHERE device_id = ? "
    "IF last_upload = ?",
    "prekeys.candidates": "SELECT key_id, public_key FROM one_time_prekeys WHERE device_id = ? "
    f"AND key_id >= 0 LIMIT {CANDIDATES}",
    "prekeys.take": "DELETE FROM one_time_prekeys WHERE device_id = ? AND key_id = ? "
    "IF public_key = ?",
    "prekeys.count": "SELECT COUNT(*) FROM one_time_prekeys WHERE device_id = ? AND key_id >= 0",
    "prekeys.revoked": "SELECT revoked_at FROM devices WHERE device_id = ?",
    "prekeys.drop_bundle": "DELETE FROM device_keys WHERE device_id = ?",
    "prekeys.drop_all": "DELETE FROM one_time_prekeys WHERE device_id = ?",
    "prekeys.all_bundles": "SELECT device_id, user_id FROM device_keys",
    "prekeys.filled": "SELECT device_id FROM e2e_devices WHERE user_id = ? LIMIT 1",
    "prekeys.mark_filled": "INSERT INTO e2e_devices (user_id, device_id) VALUES (?, '-')",
}
#: The ``e2e_devices`` partition that says ``fill_sets`` ran (not a user id: ids are UUIDs).
FILLED = "~filled"


async def _lost() -> bool:
    return False


class ScyllaKeys:
    def __init__(self, cql: Cql, sets: DeviceSets) -> None:
        self._cql = cql
        self._locks = KeyedLocks()
        self._sets = sets

    async def put(self, keys: DeviceKeys, one_time: Sequence[Prekey], *, limit: int) -> bool:
        """See ``KeyStore.put``; then the device joins its user's ``e2e_devices`` set
        (an LWT that moves the set's version), unless the device was revoked."""
        await self._put(keys, one_time, limit=limit)
        async with self._cql.gate.held():
            added = await self._sets.add(keys.user_id, keys.device_id)
            row = await self._cql.one("prekeys.revoked", (keys.device_id,), serial=True)
            if row is not None and row.revoked_at is not None:  # revoked meanwhile: it wins
                await self.forget(keys.user_id, keys.device_id)
                raise ChatdError("unauthorized", "the token is invalid, expired or revoked")
            return added

    async def fill_sets(self, *, again: bool = False) -> None:
        """Once per keyspace (or ``again``, after ``chatd migrate`` copied bundles in):
        put the devices that have a bundle in their users' sets, for bundles stored
        before ``e2e_devices`` existed (migration 7). Idempotent; marked as done by
        a row under a user id no user has."""
        if not again and await self._cql.one("prekeys.filled", (FILLED,)) is not None:
            return
        for row in await self._cql.all_rows("prekeys.all_bundles"):
            live = await self._cql.one("prekeys.revoked", (row.device_id,))
            if live is None or live.revoked_at is None:
                await self._sets.add(row.user_id, row.device_id)
        await self._cql.write("prekeys.mark_filled", (FILLED,))

    async def forget(self, user_id: str, device_id: str) -> None:
        """A revoked device: out of its user's set first, then its bundle and prekeys."""
        await self._sets.remove(user_id, device_id)
        await self._cql.writes(
            [("prekeys.drop_bundle", (device_id,)), ("prekeys.drop_all", (device_id,))]
        )

    async def _put(self, keys: DeviceKeys, one_time: Sequence[Prekey], *, limit: int) -> None:
        device_id = keys.device_id
        async with self._cql.gate.held(), self._locks.hold(("upload", device_id)):
            for _ in range(ROUNDS):
                current = await self._cql.one("prekeys.get", (device_id,))
                renewed = current is not None and current.identity_key != keys.identity_key
                rows = await self._cql.all_rows("prekeys.held", (device_id,))
                last = rows[0].last_upload if rows else None
                held = {int(r.key_id) for r in rows if r.key_id is not None}
                fresh = prekeys_to_add(set() if renewed else held, one_time, limit)
                stale = held - {p.key_id for p in one_time} if renewed else set()
                mine = uuid.uuid4()
                batch = self._cql.batch(
                    [("prekeys.add_prekey", (device_id, p.key_id, p.public_key)) for p in fresh]
                    + [("prekeys.drop_prekey", (device_id, key_id)) for key_id in stale]
                    + [("prekeys.mark_upload", (mine, device_id, last))]
                )

                async def applied(mine: uuid.UUID = mine) -> bool:
                    row = await self._cql.one("prekeys.last_upload", (device_id,), serial=True)
                    return row is not None and row.last_upload == mine

                if (await self._cql.lwt(batch, verify=applied)).applied:
                    # The bundle last: once it is visible, so are its prekeys.
                    await self._cql.write("prekeys.put", keys.flat())
                    return
            raise unavailable()  # other uploads for this device won every round

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
