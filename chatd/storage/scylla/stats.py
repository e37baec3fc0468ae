"""Whole-store counts on ScyllaDB: paged scans (there is no cheap count).

``totals`` reads the partition keys of ``usernames`` and the static columns of
``chat_members`` (one row per chat: ``DISTINCT``); ``media_usage`` two columns
of ``media``. Each costs one pass over those tables, counted a page at a time
without keeping rows; the admin service caches the answers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from chatd.core.models import MediaUsage, Totals
from chatd.storage.scylla.bridge import Cql

PAGE = 5000

CQL = {
    "stats.users": "SELECT username FROM usernames",
    "stats.chats": "SELECT DISTINCT chat_id, last_seq FROM chat_members",
    "stats.media": "SELECT size, referenced FROM media",
}


class ScyllaStats:
    def __init__(self, cql: Cql) -> None:
        self._cql = cql

    async def _scan(self, name: str) -> AsyncIterator[list[Any]]:
        state: bytes | None = None
        while True:
            rs = await self._cql.execute(name, (), fetch_size=PAGE, paging_state=state)
            yield list(rs.current_rows)
            state = rs.paging_state
            if not state:
                return

    async def totals(self) -> Totals:
        users = chats = messages = 0
        async for rows in self._scan("stats.users"):
            users += len(rows)
        async for rows in self._scan("stats.chats"):
            chats += len(rows)
            messages += sum(int(r.last_seq or 0) for r in rows)
        return Totals(users=users, chats=chats, messages=messages)

    async def media_usage(self) -> MediaUsage:
        files = size = unreferenced = 0
        async for rows in self._scan("stats.media"):
            files += len(rows)
            size += sum(int(r.size or 0) for r in rows)
            unreferenced += sum(1 for r in rows if not r.referenced)
        return MediaUsage(files=files, bytes=size, unreferenced_files=unreferenced)
