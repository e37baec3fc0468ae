"""Registration invites on ScyllaDB: a compare-and-set loop on ``uses_left``.

Every write to an invite is an LWT, so all of them carry Paxos timestamps and
none can shadow another. Each successful consume adds its attempt id to
``ops``; a timed-out attempt is settled by looking for its id there.
"""

from __future__ import annotations

from cassandra.query import UNSET_VALUE

from chatd.core.errors import ChatdError
from chatd.core.ids import new_id
from chatd.storage.scylla.bridge import Cql, KeyedLocks

ATTEMPTS = 50

CQL = {
    "invites.insert": "INSERT INTO invites (code, uses_left, expires_at) VALUES (?, ?, ?) "
    "IF NOT EXISTS",
    "invites.get": "SELECT uses_left, expires_at, ops FROM invites WHERE code = ?",
    "invites.take": "UPDATE invites SET uses_left = ?, ops = ops + ? WHERE code = ? "
    "IF uses_left = ?",
}


class ScyllaInvites:
    def __init__(self, cql: Cql) -> None:
        self._cql = cql
        # One attempt per code at a time in this process: contention only between nodes.
        self._locks = KeyedLocks()

    async def create(self, code: str, uses: int, expires_at: int | None) -> None:
        async with self._cql.gate.held():
            expiry = UNSET_VALUE if expires_at is None else expires_at

            async def verify() -> bool:
                return await self._cql.one("invites.get", (code,), serial=True) is not None

            result = await self._cql.lwt("invites.insert", (code, uses, expiry), verify=verify)
            if not result.applied:
                raise ChatdError("conflict", "invite code exists")

    async def consume(self, code: str, now: int) -> bool:
        async with self._cql.gate.held(), self._locks.hold(code):
            return await self._consume(code, now)

    async def _consume(self, code: str, now: int) -> bool:
        row = await self._cql.one("invites.get", (code,))
        if row is None or row.uses_left is None:
            return False
        if row.expires_at is not None and row.expires_at <= now:
            return False  # expires_at never changes: no need to re-check it below
        uses_left = int(row.uses_left)
        for _ in range(ATTEMPTS):
            if uses_left <= 0:
                return False
            op = new_id()

            async def verify(op: str = op) -> bool:
                current = await self._cql.one("invites.get", (code,), serial=True)
                return current is not None and op in (current.ops or ())

            result = await self._cql.lwt(
                "invites.take", (uses_left - 1, {op}, code, uses_left), verify=verify
            )
            if result.applied:
                return True
            if result.rows:
                uses_left = int(result.rows[0].uses_left or 0)
            else:
                current = await self._cql.one("invites.get", (code,), serial=True)
                uses_left = int(current.uses_left or 0) if current is not None else 0
        raise ChatdError("unavailable", "the invite is contended; retry")
