"""The revocation feed: a gap-free log of ids 1, 2, 3... shared by every node.

Pollers read "ids > cursor" in order, so an id must never appear below one a
poller has already passed. Ids are therefore claimed like message seqs: the
entry row itself is inserted ``IF NOT EXISTS`` (several in one conditional
batch, one Paxos round), and id n is only ever tried when n - 1 is known to
exist. A lost race returns the rows that exist; the writer moves past them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from chatd.core.errors import ChatdError
from chatd.core.ids import now_ms
from chatd.storage.scylla.bridge import Cql

FEED_BUCKET = 10_000
MAX_ENTRIES = 100  # rows per conditional batch
PAGE = 1000
ATTEMPTS = 200

CQL = {
    "feed.claim": "INSERT INTO revocations (bucket, id, device_id, at) VALUES (?, ?, ?, ?) "
    "IF NOT EXISTS",
    "feed.top": "SELECT id FROM revocations WHERE bucket = ? ORDER BY id DESC LIMIT 1",
    "feed.at": "SELECT device_id FROM revocations WHERE bucket = ? AND id = ?",
    "feed.since": "SELECT id, device_id FROM revocations WHERE bucket = ? AND id > ? LIMIT ?",
    "feed.head": "SELECT last_id FROM feed_head WHERE name = 'revocations'",
    "feed.set_head": "UPDATE feed_head USING TIMESTAMP ? SET last_id = ? "
    "WHERE name = 'revocations'",
}


class RevocationFeed:
    def __init__(self, cql: Cql) -> None:
        self._cql = cql
        self._lock = asyncio.Lock()  # one writer per process: no self-inflicted contention
        self._next: int | None = None  # an id whose predecessor is known to exist

    async def _top(self) -> int:
        """The highest id that exists (0 for an empty feed)."""
        row = await self._cql.one("feed.head", ())
        top = int(row.last_id) if row is not None and row.last_id is not None else 0
        bucket = top // FEED_BUCKET
        while True:
            found = await self._cql.one("feed.top", (bucket,), serial=True)
            if found is not None:
                top = max(top, int(found.id))
            if top < (bucket + 1) * FEED_BUCKET - 1:
                return top
            bucket += 1

    async def append(self, device_ids: Sequence[str]) -> None:
        """Put devices on the feed, in order; durable when it returns."""
        pending = list(device_ids)
        async with self._lock:
            at = now_ms()
            for _ in range(ATTEMPTS):
                if not pending:
                    break
                if self._next is None:
                    self._next = await self._top() + 1
                first = self._next
                room = (first // FEED_BUCKET + 1) * FEED_BUCKET - first
                chunk = pending[: min(MAX_ENTRIES, room)]
                bucket = first // FEED_BUCKET
                batch = self._cql.batch(
                    [("feed.claim", (bucket, first + i, d, at)) for i, d in enumerate(chunk)]
                )

                async def verify(
                    bucket: int = bucket, first: int = first, d: str = chunk[0]
                ) -> bool:
                    row = await self._cql.one("feed.at", (bucket, first), serial=True)
                    return row is not None and row.device_id == d

                result = await self._cql.lwt(batch, verify=verify)
                if result.applied:
                    pending = pending[len(chunk) :]
                    self._next = first + len(chunk)
                    last = self._next - 1
                    await self._cql.write("feed.set_head", (last, last))
                elif result.rows:
                    self._next = max(int(r.id) for r in result.rows if r.id is not None) + 1
                else:
                    self._next = None
            if pending:
                raise ChatdError("unavailable", "the revocation feed is too busy; retry")

    async def since(self, cursor: int) -> tuple[list[str], int]:
        if cursor < 0:
            return [], await self._top()
        found: list[str] = []
        position = cursor
        bucket = (position + 1) // FEED_BUCKET
        while len(found) < PAGE:
            rows = await self._cql.rows("feed.since", (bucket, position, PAGE - len(found)))
            for row in rows:
                found.append(row.device_id)
                position = int(row.id)
            if position != (bucket + 1) * FEED_BUCKET - 1:
                break
            bucket += 1
        return found, position
