"""Media records on ScyllaDB, their references from messages, and retention candidates.

Tables (schema.cql): ``media`` (the record and its ``referenced`` flag),
``media_refs`` (messages carrying a media, by media), ``media_by_sha`` (records
serving a blob), ``media_unreferenced`` (uploads no message carries yet, by hour)
and ``media_unreferenced_hours`` (the hours that may hold such rows).

The fence between a send and the retention job is the ``referenced`` flag, and
only Paxos writes the ``media`` row: ``create`` (``IF NOT EXISTS``), a message's
first send (``IF referenced = false``) and retention (``DELETE ... IF referenced =
false``). So the two LWTs on one record are ordered, and a plain write can never
shadow the flag (a plain write takes the client's clock, an LWT the ballot's: a
plain ``INSERT`` of ``referenced = false`` from a fast clock could outlive a later
LWT that set it). ``referenced`` only ever goes from false to true, so a record
seen referenced stays so: this process remembers such ids and marks them no more.

``MessageStore.append`` of a draft with media calls ``mark_referenced`` before its
seq claim (concurrently with its idempotency key, so it adds no round trip to the
wait), and writes the ``media_refs`` row after the claim, before it answers
(``ref_writes``). If the process dies between the steps:

- after the mark, before the claim: the record is kept although nothing carries
  it (the same if the send is then refused, e.g. its sender was removed): a
  leaked upload, never a deleted one that a message carries;
- after the claim, before the reference row: the message is stored but was not
  acknowledged, so the client sends it again with the same ``client_msg_id``, and
  the repeat writes the row before answering. Until then only the uploader can
  open the media; retention keeps it (it is marked).

So a reference row always names a stored message (it is written only after the
claim), and an acknowledged message always has its row. A draft whose media does
not exist (never created, or deleted by retention first) is stored as it is and
its reference recorded, as on SQLite; the service refuses unknown media before it
appends, and refuses to send an upload close to its retention deadline.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from typing import Any

from cassandra.query import UNSET_VALUE

from chatd.core.errors import ChatdError
from chatd.core.ids import now_ms
from chatd.core.models import Media, MediaRef, Message
from chatd.storage.scylla.bridge import Cql, Row, gather_limited

log = logging.getLogger("chatd.storage.scylla")

HOUR_MS = 3_600_000
#: A ``media_unreferenced`` row whose record is missing this long after its
#: ``created_at`` is a leftover of a create or a delete that died midway (a create
#: takes seconds): it is removed with its ``media_by_sha`` rows.
ORPHAN_AFTER_MS = HOUR_MS
#: ``get_many`` reads at most this many records at once: a history page at a time.
PARALLEL_READS = 128
#: Media ids known to be referenced (which is permanent): no LWT for their sends.
REMEMBERED = 10_000

_COLUMNS = (
    "media_id, uploader_id, sha256, mime_type, size, created_at, filename, width, height, "
    "duration_ms, thumbnail_sha256, thumbnail_mime, thumbnail_size"
)

CQL = {
    "media.create": f"INSERT INTO media ({_COLUMNS}, referenced) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, false) IF NOT EXISTS",
    "media.get": f"SELECT {_COLUMNS}, referenced FROM media WHERE media_id = ?",
    "media.mark": "UPDATE media SET referenced = true WHERE media_id = ? IF referenced = false",
    "media.delete": "DELETE FROM media WHERE media_id = ? IF referenced = false",
    "media.add_ref": "INSERT INTO media_refs (media_id, message_id, chat_id, seq) "
    "VALUES (?, ?, ?, ?)",
    "media.refs": "SELECT message_id, chat_id, seq FROM media_refs WHERE media_id = ? LIMIT ?",
    "media.add_sha": "INSERT INTO media_by_sha (sha256, media_id) VALUES (?, ?)",
    "media.drop_sha": "DELETE FROM media_by_sha WHERE sha256 = ? AND media_id = ?",
    "media.sha_used": "SELECT media_id FROM media_by_sha WHERE sha256 = ? LIMIT 1",
    "media.list": "INSERT INTO media_unreferenced "
    "(hour, created_at, media_id, sha256, thumbnail_sha256) VALUES (?, ?, ?, ?, ?)",
    "media.unlist": "DELETE FROM media_unreferenced "
    "WHERE hour = ? AND created_at = ? AND media_id = ?",
    "media.listed": "SELECT created_at, media_id, sha256, thumbnail_sha256 "
    "FROM media_unreferenced WHERE hour = ? AND created_at < ?",
    "media.any_listed": "SELECT media_id FROM media_unreferenced WHERE hour = ? LIMIT 1",
    "media.add_hour": "INSERT INTO media_unreferenced_hours (shard, hour) VALUES (0, ?)",
    "media.hours": "SELECT hour FROM media_unreferenced_hours WHERE shard = 0 AND hour <= ?",
    "media.drop_hour": "DELETE FROM media_unreferenced_hours WHERE shard = 0 AND hour = ?",
}

Write = tuple[str, tuple[object, ...]]


def hour_of(ms: int) -> int:
    return ms // HOUR_MS


def _media(row: Row) -> Media:
    return Media(
        media_id=row.media_id,
        uploader_id=row.uploader_id,
        sha256=row.sha256,
        mime_type=row.mime_type,
        size=int(row.size),
        created_at=int(row.created_at),
        filename=row.filename,
        width=row.width,
        height=row.height,
        duration_ms=row.duration_ms,
        thumbnail_sha256=row.thumbnail_sha256,
        thumbnail_mime=row.thumbnail_mime,
        thumbnail_size=row.thumbnail_size,
    )


def _or_unset(value: object) -> object:
    return UNSET_VALUE if value is None else value


def shas_of(sha256: str, thumbnail_sha256: str | None) -> list[str]:
    """The distinct blobs a record serves (its file and its thumbnail)."""
    return list(dict.fromkeys(s for s in (sha256, thumbnail_sha256) if s))


def ref_writes(messages: Iterable[Message]) -> list[Write]:
    """The ``media_refs`` rows of the messages that carry a media (idempotent upserts)."""
    return [
        ("media.add_ref", (m.media_id, m.message_id, m.chat_id, m.seq))
        for m in messages
        if m.media_id is not None
    ]


class ScyllaMedia:
    def __init__(self, cql: Cql) -> None:
        self._cql = cql
        self._referenced: OrderedDict[str, None] = OrderedDict()
        self._listed_hours: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- records -----------------------------------------------------------------

    async def create(self, media: Media) -> None:
        """The blob and retention rows, then its hour, then the record (one LWT).

        A crash in between leaves index rows without a record: ``blob_in_use``
        then keeps the blob (safe), and ``unreferenced`` removes them after
        ``ORPHAN_AFTER_MS``. The other order could leave a record whose blob a
        retention run deletes, finding no index row for it. Cost: 2-3 concurrent
        writes, 1 write for a new hour (once an hour per process), 1 LWT.
        """
        async with self._cql.gate.held():
            hour = hour_of(media.created_at)
            writes: list[Write] = [
                ("media.add_sha", (sha, media.media_id))
                for sha in shas_of(media.sha256, media.thumbnail_sha256)
            ]
            writes.append(
                (
                    "media.list",
                    (
                        hour,
                        media.created_at,
                        media.media_id,
                        media.sha256,
                        _or_unset(media.thumbnail_sha256),
                    ),
                )
            )
            await self._cql.writes(writes)
            # The hour after its row: see unreferenced() for why that order. Only
            # a recent hour is remembered: no scan drops it before it is old.
            recent = (hour + 1) * HOUR_MS > now_ms() - ORPHAN_AFTER_MS // 2
            if not (recent and hour in self._listed_hours):
                await self._cql.write("media.add_hour", (hour,))
                if len(self._listed_hours) > 16:
                    self._listed_hours.clear()
                if recent:
                    self._listed_hours.add(hour)
            values = (
                media.media_id,
                media.uploader_id,
                media.sha256,
                media.mime_type,
                media.size,
                media.created_at,
                _or_unset(media.filename),
                _or_unset(media.width),
                _or_unset(media.height),
                _or_unset(media.duration_ms),
                _or_unset(media.thumbnail_sha256),
                _or_unset(media.thumbnail_mime),
                _or_unset(media.thumbnail_size),
            )

            async def verify() -> bool:
                row = await self._row(media.media_id, serial=True)
                return row is not None and row.uploader_id == media.uploader_id

            result = await self._cql.lwt("media.create", values, verify=verify)
            if not result.applied:
                raise ChatdError("conflict", "media id already in use")

    async def _row(self, media_id: str, *, serial: bool = False) -> Row | None:
        return await self._cql.one("media.get", (media_id,), serial=serial)

    async def get(self, media_id: str) -> Media | None:
        row = await self._row(media_id)
        return _media(row) if row is not None else None

    async def _rows(self, media_ids: Sequence[str]) -> dict[str, Row]:
        """Concurrent single-partition reads, each sent to a replica of its record.

        Not ``IN``: a multi-partition ``IN`` cannot be routed to a replica, makes
        one coordinator wait for every partition (the slowest replica delays all)
        and fails as a whole. In parallel, a page costs one round trip of latency.
        """
        ids = list(dict.fromkeys(media_ids))
        rows = await gather_limited([self._row(i) for i in ids], PARALLEL_READS)
        return {i: row for i, row in zip(ids, rows, strict=True) if row is not None}

    async def get_many(self, media_ids: Sequence[str]) -> dict[str, Media]:
        return {i: _media(row) for i, row in (await self._rows(media_ids)).items()}

    # -- references ------------------------------------------------------------

    async def mark_referenced(self, media_id: str) -> None:
        """Before a message carrying ``media_id`` is numbered: retention must keep it.

        One LWT the first time (``IF referenced = false``); none when this process
        knows it referenced. A missing record is left alone (the append goes on, as
        on SQLite). Raises ``unavailable`` if the outcome cannot be known.
        """
        if media_id in self._referenced:
            self._referenced.move_to_end(media_id)
            return

        async def verify() -> bool:
            row = await self._row(media_id, serial=True)
            return row is not None and bool(row.referenced)

        result = await self._cql.lwt("media.mark", (media_id,), verify=verify)
        if result.applied:
            self._spawn(self._unlist_referenced(media_id))
        elif not result.rows or not getattr(result.rows[0], "referenced", None):
            return  # no such record
        self._referenced[media_id] = None
        if len(self._referenced) > REMEMBERED:
            self._referenced.popitem(last=False)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _unlist_referenced(self, media_id: str) -> None:
        """Off the send's path: drop the retention row of a newly referenced record
        (``unreferenced`` drops it too if this fails)."""
        try:
            async with self._cql.gate.held():
                row = await self._row(media_id)
                if row is not None:
                    created = int(row.created_at)
                    await self._cql.write("media.unlist", (hour_of(created), created, media_id))
        except ChatdError:
            pass

    async def references(self, media_id: str, limit: int = 1000) -> list[MediaRef]:
        if limit <= 0:
            return []
        rows = await self._cql.rows("media.refs", (media_id, limit), fetch_size=limit)
        return [MediaRef(media_id, r.chat_id, int(r.seq), r.message_id) for r in rows]

    # -- retention ---------------------------------------------------------------

    async def unreferenced(self, created_before: int, limit: int) -> list[Media]:
        """Oldest first, from the listed hours up to ``created_before``'s.

        Reads the hour list (one small partition) and then hour partitions in
        order until ``limit`` records are found: only hours that still hold rows
        are listed, so that is 1-2 partitions when retention keeps up. Rows of
        records found referenced or missing are removed on the way; an hour found
        empty, over an hour in the past and wholly before ``created_before``, is
        removed from the list (``_drop_hour``).
        """
        if limit <= 0:
            return []
        async with self._cql.gate.held():
            found: list[Media] = []
            now = now_ms()
            hours = await self._cql.all_rows("media.hours", (hour_of(created_before - 1),))
            for hour in (int(h.hour) for h in hours):
                seen, state = 0, None
                while len(found) < limit:
                    rs = await self._cql.execute(
                        "media.listed",
                        (hour, created_before),
                        fetch_size=min(1000, max(64, limit)),
                        paging_state=state,
                    )
                    page = list(rs.current_rows)
                    seen += len(page)
                    found += await self._candidates(page, now)
                    state = rs.paging_state
                    if not state:
                        break
                if len(found) >= limit:
                    return found[:limit]
                end = (hour + 1) * HOUR_MS
                if not seen and end <= created_before and end <= now - ORPHAN_AFTER_MS:
                    await self._drop_hour(hour)
            return found

    async def _drop_hour(self, hour: int) -> None:
        """Unlist an hour found empty, then look again: a create writes its row
        before its hour, so one that raced the first look is seen by the second
        and its hour listed again."""
        await self._cql.write("media.drop_hour", (hour,))
        self._listed_hours.discard(hour)
        if await self._cql.one("media.any_listed", (hour,)) is not None:
            await self._cql.write("media.add_hour", (hour,))

    async def _candidates(self, page: list[Row], now: int) -> list[Media]:
        """The records of ``page`` that are still unreferenced; tidies the others."""
        rows = await self._rows([r.media_id for r in page])
        out: list[Media] = []
        repairs = []
        for r in page:
            row = rows.get(r.media_id)
            if row is not None and not row.referenced:
                out.append(_media(row))
            elif row is not None:  # referenced, and the first send's cleanup failed
                repairs.append(self._unlist(r))
            elif int(r.created_at) < now - ORPHAN_AFTER_MS:
                repairs.append(self._drop_orphan(r))
        if repairs:
            try:
                await asyncio.gather(*repairs)
            except ChatdError:
                log.warning("could not tidy media retention rows; next run retries")
        return out

    async def _unlist(self, listed: Row) -> None:
        key = (hour_of(int(listed.created_at)), int(listed.created_at), listed.media_id)
        await self._cql.write("media.unlist", key)

    async def _drop_orphan(self, listed: Row) -> None:
        """A create or delete died midway. SERIAL: a create's LWT left in flight is
        finished first, so a record cannot appear after its index rows are gone."""
        if await self._row(listed.media_id, serial=True) is not None:
            return
        shas = shas_of(listed.sha256, listed.thumbnail_sha256)
        await self._cql.writes([("media.drop_sha", (sha, listed.media_id)) for sha in shas])
        await self._unlist(listed)

    async def delete_unreferenced(self, media_id: str) -> bool:
        """Read, ``DELETE ... IF referenced = false`` (Paxos orders it against the
        first send's mark), then the index rows: the blob rows before the retention
        row, so that a crash leaves the retention row to finish the job."""
        async with self._cql.gate.held():
            row = await self._row(media_id)
            if row is None or row.referenced:
                return False

            async def verify() -> bool:
                return await self._row(media_id, serial=True) is None

            result = await self._cql.lwt("media.delete", (media_id,), verify=verify)
            if not result.applied:
                return False
            created = int(row.created_at)
            shas = shas_of(row.sha256, row.thumbnail_sha256)
            try:
                await self._cql.writes([("media.drop_sha", (sha, media_id)) for sha in shas])
                await self._cql.write("media.unlist", (hour_of(created), created, media_id))
            except ChatdError:
                # Deleted; the leftover rows keep its blobs (blob_in_use) until a
                # later unreferenced() finds the retention row and removes them.
                log.warning("media %s deleted, its index rows not yet", media_id)
            return True

    async def blob_in_use(self, sha256: str) -> bool:
        """One read. A leftover row of a dead create or delete counts as in use:
        a blob is kept too long rather than deleted under a record."""
        return await self._cql.one("media.sha_used", (sha256,)) is not None
