"""Devices on ScyllaDB: three views of one record, revocation by LWT, the feed.

A revoked device's key bundle goes with it: ``forget`` drops it and takes the
device out of its user's ``e2e_devices`` set, after the revoking LWT (also when
healing a revoke that died midway).

``by_token`` runs on every REST call, so ``device_tokens`` carries the whole
device and answers it in one read. ``revoke`` marks the token and user views
revoked *first*, then decides with ``IF revoked_at = null`` which call revoked
it: a process dying in between leaves a dead token (the safe side), and a later
``revoke`` finishes the job.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from cassandra.query import UNSET_VALUE

from chatd.core.ids import new_id, now_ms
from chatd.core.models import Device
from chatd.storage.scylla.bridge import Cql, gather_limited
from chatd.storage.scylla.feed import RevocationFeed

CQL = {
    "devices.insert": "INSERT INTO devices "
    "(device_id, user_id, token_hash, name, created_at, expires_at, revoked_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)",
    "devices.insert_token": "INSERT INTO device_tokens "
    "(token_hash, device_id, user_id, name, created_at, expires_at, revoked_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?)",
    "devices.insert_user": "INSERT INTO user_devices "
    "(user_id, device_id, name, created_at, expires_at, revoked_at) VALUES (?, ?, ?, ?, ?, ?)",
    "devices.by_token": "SELECT device_id, user_id, name, created_at, expires_at, revoked_at "
    "FROM device_tokens WHERE token_hash = ?",
    "devices.get": "SELECT device_id, user_id, token_hash, revoked_at, revoke_op "
    "FROM devices WHERE device_id = ?",
    "devices.of_user": "SELECT device_id, user_id, name, created_at, expires_at, revoked_at "
    "FROM user_devices WHERE user_id = ?",
    "devices.revoke": "UPDATE devices SET revoked_at = ?, revoke_op = ? WHERE device_id = ? "
    "IF revoked_at = null",
    "devices.mark_token": "UPDATE device_tokens SET revoked_at = ? WHERE token_hash = ?",
    "devices.mark_user": "UPDATE user_devices SET revoked_at = ? "
    "WHERE user_id = ? AND device_id = ?",
}


def _device(row: Any) -> Device:
    return Device(
        device_id=row.device_id,
        user_id=row.user_id,
        name=row.name,
        created_at=int(row.created_at),
        expires_at=int(row.expires_at),
        revoked_at=row.revoked_at,
    )


class ScyllaDevices:
    def __init__(self, cql: Cql, feed: RevocationFeed) -> None:
        self._cql = cql
        self._feed = feed
        #: Drops a revoked device's keys and takes it out of its user's device set
        #: (``ScyllaKeys.forget``, set at wiring).
        self.forget: Callable[[str, str], Awaitable[None]]

    async def create(self, device: Device, token_hash: str) -> None:
        d = device
        # revoked_at is left unset, not null: a null would be a tombstone that a
        # later LWT write (with the server's clock) might not shadow.
        revoked = UNSET_VALUE if d.revoked_at is None else d.revoked_at
        times = (d.created_at, d.expires_at, revoked)
        async with self._cql.gate.held():
            batch = self._cql.batch(
                [
                    ("devices.insert", (d.device_id, d.user_id, token_hash, d.name, *times)),
                    ("devices.insert_token", (token_hash, d.device_id, d.user_id, d.name, *times)),
                    (
                        "devices.insert_user",
                        (d.user_id, d.device_id, d.name, *times),
                    ),
                ],
                logged=True,
            )
            await self._cql.write(batch)

    async def by_token(self, token_hash: str) -> Device | None:
        row = await self._cql.one("devices.by_token", (token_hash,))
        return _device(row) if row is not None and row.device_id is not None else None

    async def list_for_user(self, user_id: str) -> list[Device]:
        rows = await self._cql.all_rows("devices.of_user", (user_id,))
        live = [_device(r) for r in rows if r.revoked_at is None and r.name is not None]
        return sorted(live, key=lambda d: (d.created_at, d.device_id))

    async def _revoke_one(self, device_id: str) -> bool:
        """Revoke without touching the feed; True if this call revoked it."""
        row = await self._cql.one("devices.get", (device_id,))
        if row is None or row.user_id is None:
            return False
        if row.revoked_at is not None:
            await self._mark(row, int(row.revoked_at))  # heal a revoke that died midway
            await self.forget(row.user_id, device_id)
            return False
        now, op = now_ms(), new_id()
        await self._mark(row, now)

        async def verify() -> bool:
            current = await self._cql.one("devices.get", (device_id,), serial=True)
            return current is not None and current.revoke_op == op

        result = await self._cql.lwt("devices.revoke", (now, op, device_id), verify=verify)
        if not result.applied:
            current = await self._cql.one("devices.get", (device_id,), serial=True)
            if current is not None and current.revoked_at is not None:
                await self._mark(current, int(current.revoked_at))
        await self.forget(row.user_id, device_id)  # revoked now, by this call or another
        return result.applied

    async def _mark(self, row: Any, revoked_at: int) -> None:
        await self._cql.writes(
            [
                ("devices.mark_token", (revoked_at, row.token_hash)),
                ("devices.mark_user", (revoked_at, row.user_id, row.device_id)),
            ]
        )

    async def revoke(self, device_id: str) -> bool:
        async with self._cql.gate.held():
            revoked = await self._revoke_one(device_id)
            if revoked:
                await self._feed.append([device_id])
            return revoked

    async def revoke_all(self, user_id: str) -> list[str]:
        async with self._cql.gate.held():
            rows = await self._cql.all_rows("devices.of_user", (user_id,))
            ids = [r.device_id for r in rows if r.revoked_at is None and r.name is not None]
            done = await gather_limited([self._revoke_one(d) for d in ids])
            revoked = [d for d, ok in zip(ids, done, strict=True) if ok]
            await self._feed.append(revoked)
            return revoked

    async def record_ban(self, user_id: str) -> None:
        async with self._cql.gate.held():
            rows = await self._cql.all_rows("devices.of_user", (user_id,))
            await self._feed.append(
                [r.device_id for r in rows if r.revoked_at is None and r.name is not None]
            )

    async def revocations_since(self, cursor: int) -> tuple[list[str], int]:
        return await self._feed.since(cursor)
