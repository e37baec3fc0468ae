"""Messages on ScyllaDB: idempotent appends over the sequencer, and history reads.

An append first claims its idempotency key ``(sender_id, client_msg_id)`` with
``IF NOT EXISTS`` (started at once, so keys of a burst are claimed in parallel
while earlier drafts are being numbered), then waits for its seq. A key found
taken means a repeat: with a seq, the first message is returned; without one,
its owner is still numbering it (or died), so we poll, and once the owner's
lease is surely over (``TAKEOVER_AFTER_MS``; an owner starts no claim after
``OWNER_DEADLINE_S``) we take the key over by LWT, look for the message the
owner may have stored, and number ours only if there is none.

A draft with a ``media_id`` marks the media referenced before its seq claim
(concurrently with its key) and gets its ``media_refs`` row after the claim,
before any answer, first or repeat (why this order is safe: media.py). An
encrypted draft is checked against the members' device sets right before its
claim and again right after, and gets its ciphertext rows before any answer,
first or repeat (e2e.py).
"""

from __future__ import annotations

import asyncio
import logging
import time

from chatd.core.errors import ChatdError
from chatd.core.ids import new_id, now_ms
from chatd.core.models import Appended, Message, MessageDraft
from chatd.core.watermarks import cursor_after_send
from chatd.storage.scylla import marks
from chatd.storage.scylla.bridge import Cql, Row, unavailable
from chatd.storage.scylla.common import (
    BUCKET,
    MAX_BUCKET,
    MESSAGE_COLUMNS,
    bucket_of,
    message_of,
)
from chatd.storage.scylla.e2e import Coverage, ScyllaCiphertexts
from chatd.storage.scylla.media import ScyllaMedia, ref_writes
from chatd.storage.scylla.sequencer import Entry, Sequencer

log = logging.getLogger("chatd.storage.scylla")

TAKEOVER_AFTER_MS = 15_000
#: How much longer than that a repeat waits for its first copy before giving up.
FOLLOW_SLACK_MS = 10_000
#: A takeover looks this far before the key's claim time for the owner's message.
SCAN_MARGIN_MS = 60_000

CQL = {
    "keys.claim": "INSERT INTO msg_keys (sender_id, client_msg_id, owner, chat_id, claimed_at) "
    "VALUES (?, ?, ?, ?, ?) IF NOT EXISTS",
    "keys.get": "SELECT owner, chat_id, claimed_at, seq FROM msg_keys "
    "WHERE sender_id = ? AND client_msg_id = ?",
    "keys.done": "UPDATE msg_keys SET seq = ?, message_id = ? "
    "WHERE sender_id = ? AND client_msg_id = ?",
    "keys.chat": "UPDATE msg_keys SET chat_id = ? WHERE sender_id = ? AND client_msg_id = ? "
    "IF owner = ?",
    "keys.release": "DELETE FROM msg_keys WHERE sender_id = ? AND client_msg_id = ? IF owner = ?",
    "keys.take_over": "UPDATE msg_keys SET owner = ?, claimed_at = ?, chat_id = ? "
    "WHERE sender_id = ? AND client_msg_id = ? IF owner = ? AND seq = null",
    "messages.index": "INSERT INTO message_ids (message_id, chat_id, seq) VALUES (?, ?, ?)",
    "messages.by_id": "SELECT chat_id, seq FROM message_ids WHERE message_id = ?",
    "messages.at": f"SELECT {MESSAGE_COLUMNS} FROM messages "
    "WHERE chat_id = ? AND bucket = ? AND seq = ?",
    "messages.after": f"SELECT {MESSAGE_COLUMNS} FROM messages "
    "WHERE chat_id = ? AND bucket = ? AND seq > ? LIMIT ?",
    "messages.before": f"SELECT {MESSAGE_COLUMNS} FROM messages "
    "WHERE chat_id = ? AND bucket = ? AND seq < ? AND seq > ? ORDER BY seq DESC LIMIT ?",
    "messages.senders": "SELECT seq, sender_id FROM messages "
    "WHERE chat_id = ? AND bucket = ? AND seq > ? AND seq <= ?",
    "messages.top": "SELECT seq FROM messages WHERE chat_id = ? AND bucket = ? "
    "ORDER BY seq DESC LIMIT 1",
    "messages.last_seq": "SELECT last_seq FROM chat_members WHERE chat_id = ? LIMIT 1",
}


class ScyllaMessages:
    def __init__(self, cql: Cql, cursors: marks.CursorCache) -> None:
        self._cql = cql
        self._cursors = cursors
        self._inflight: dict[tuple[str, str], asyncio.Future[Message]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.sequencer: Sequencer  # set by ScyllaStorage (it needs the chat store too)
        self.media: ScyllaMedia  # set by ScyllaStorage
        self.coverage: Coverage  # set by ScyllaStorage
        self.ciphertexts: ScyllaCiphertexts  # set by ScyllaStorage

    # -- append ------------------------------------------------------------------

    async def append(self, draft: MessageDraft) -> Appended:
        self._cql.gate.enter()
        try:
            key = (draft.sender_id, draft.client_msg_id)
            first = self._inflight.get(key)
            if first is not None:  # a repeat while the first is still being stored
                return Appended(await asyncio.shield(first), created=False)
            done: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
            self._inflight[key] = done
            try:
                appended = await self._append(draft)
            except BaseException as exc:
                done.set_exception(exc)
                done.exception()  # retrieved: nobody else may be waiting
                raise
            finally:
                del self._inflight[key]
            done.set_result(appended.message)
            return appended
        finally:
            self._cql.gate.leave()

    async def _append(self, draft: MessageDraft) -> Appended:
        entry = Entry(draft, asyncio.get_running_loop().create_future(), owner=new_id())
        if draft.encrypted:
            entry.check = self._check
        entry.ready = asyncio.ensure_future(self._ready(entry))
        self.sequencer.submit(entry)
        message = await entry.future
        if not entry.created or entry.previous is None:
            return Appended(message, created=entry.created)
        before = entry.previous
        return Appended(
            message, True, previous_read_seq=before.read, previous_delivered_seq=before.delivered
        )

    async def _claim_key(self, entry: Entry) -> bool:
        """True if this append owns its key; False if it was handed to ``_follow``."""
        d = entry.draft

        async def verify() -> bool:
            row = await self._cql.one("keys.get", (d.sender_id, d.client_msg_id), serial=True)
            return row is not None and row.owner == entry.owner

        result = await self._cql.lwt(
            "keys.claim",
            (d.sender_id, d.client_msg_id, entry.owner, d.chat_id, now_ms()),
            verify=verify,
        )
        entry.keyed_at = time.monotonic()
        if result.applied:
            return True
        row = result.rows[0] if result.rows else None
        self._spawn(self._follow(entry, row))
        return False

    async def _ready(self, entry: Entry) -> bool:
        """Claim the key and, for a draft with media, mark the media referenced.

        Both before the seq claim, concurrently. If the key is ours but the mark
        failed, nothing is stored: the key is given back and the append fails.
        """
        media_id = entry.draft.media_id
        if media_id is None:
            return await self._claim_key(entry)
        owned, marked = await asyncio.gather(
            self._claim_key(entry), self.media.mark_referenced(media_id), return_exceptions=True
        )
        if isinstance(owned, BaseException):
            raise owned
        if owned and isinstance(marked, BaseException):
            error = marked if isinstance(marked, ChatdError) else unavailable(marked)
            await self.rejected(entry, error, True)
            return False
        return owned

    async def _marked(self, entry: Entry) -> bool:
        """A taken-over draft is numbered here: mark its media first (see ``_ready``)."""
        assert entry.draft.media_id is not None
        try:
            await self.media.mark_referenced(entry.draft.media_id)
        except ChatdError as exc:
            await self.rejected(entry, exc, True)
            return False
        return True

    async def _check(self, entry: Entry) -> None:
        """The sequencer's coverage check of an encrypted draft (see e2e.py)."""
        entry.checked = await self.coverage.check(entry.draft)

    async def _sealed_writes(
        self, entry: Entry, m: Message
    ) -> list[tuple[str, tuple[object, ...]]]:
        """After the claim: re-check the device sets, compensate a race, and the
        ciphertext rows to write (see e2e.py)."""
        given = dict(entry.draft.ciphertexts or {})
        if entry.checked is None:  # a repeat or a taken-over key: no check to compare
            return self.ciphertexts.writes(m, given)
        dropped, joined = await self.coverage.recheck(entry.draft, entry.checked)
        kept = {d: c for d, c in given.items() if d not in dropped}
        writes = self.ciphertexts.writes(m, kept)
        writes += [("e2e.drop_before", (m.chat_id, device_id, m.seq)) for device_id in joined]
        return writes

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _follow(self, entry: Entry, row: Row | None) -> None:
        """Settle a repeat whose key is held elsewhere: wait, or take it over."""
        d, delay = entry.draft, 0.005
        give_up = time.monotonic() + (TAKEOVER_AFTER_MS + FOLLOW_SLACK_MS) / 1000
        try:
            while not entry.future.done():
                if row is None:  # the owner gave the key up: try again from the start
                    entry.owner, entry.created = new_id(), True
                    entry.ready = asyncio.ensure_future(self._ready(entry))
                    self.sequencer.submit(entry)
                    return
                if row.seq is not None:
                    message = await self.at_seq(row.chat_id, int(row.seq))
                    if message is not None:
                        # The first copy may have died before writing it (or its
                        # ciphertexts): a retry carries them again.
                        await self._cql.writes(ref_writes([message]))
                        if message.encrypted and d.ciphertexts:
                            await self._cql.writes(self.ciphertexts.writes(message, d.ciphertexts))
                        entry.created = False
                        entry.future.set_result(message)
                        return
                elif now_ms() >= int(row.claimed_at) + TAKEOVER_AFTER_MS and (
                    await self._take_over(entry, row)
                ):
                    return
                if time.monotonic() > give_up:
                    raise ChatdError("unavailable", "a repeat of this message is still pending")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.25)
                row = await self._cql.one("keys.get", (d.sender_id, d.client_msg_id))
        except Exception as exc:
            if not entry.future.done():
                entry.future.set_exception(
                    exc if isinstance(exc, ChatdError) else ChatdError("unavailable", str(exc))
                )

    async def _take_over(self, entry: Entry, row: Row) -> bool:
        d, owner = entry.draft, new_id()

        async def verify() -> bool:
            now = await self._cql.one("keys.get", (d.sender_id, d.client_msg_id), serial=True)
            return now is not None and now.owner == owner

        result = await self._cql.lwt(
            "keys.take_over",
            (owner, now_ms(), d.chat_id, d.sender_id, d.client_msg_id, row.owner),
            verify=verify,
        )
        if not result.applied:
            return False
        log.warning("took over idempotency key %s of a silent owner", d.client_msg_id)
        found = await self._find(row.chat_id, d.sender_id, d.client_msg_id, row.claimed_at)
        if found is not None:
            if found.chat_id != d.chat_id:  # the key must name the chat it was found in
                key = (found.chat_id, d.sender_id, d.client_msg_id, owner)
                await self._cql.lwt("keys.chat", key, verify=_true)
            # The owner died before its follow-up writes: the chat's last_seq (which
            # bounds history reads) and the sender's marks are repaired here too.
            chat_rows = [
                marks.last(found.chat_id, found.seq, found.created_at),
                marks.both(found.chat_id, d.sender_id, found.seq),
            ]
            await self._cql.writes(
                [
                    (self._cql.batch(chat_rows), ()),
                    ("keys.done", (found.seq, found.message_id, d.sender_id, d.client_msg_id)),
                    ("messages.index", (found.message_id, found.chat_id, found.seq)),
                    *ref_writes([found]),
                    *(
                        self.ciphertexts.writes(found, d.ciphertexts)
                        if found.encrypted and d.ciphertexts
                        else []
                    ),
                ]
            )
            entry.created = False
            entry.future.set_result(found)
        else:
            entry.owner, entry.ready, entry.keyed_at = owner, None, time.monotonic()
            if d.media_id is not None:
                entry.ready = asyncio.ensure_future(self._marked(entry))
            self.sequencer.submit(entry)
        return True

    async def _find(
        self, chat_id: str, sender_id: str, client_msg_id: str, claimed_at: int
    ) -> Message | None:
        """The message a dead owner may have stored: newest first, back to its claim time."""
        row = await self._cql.one("messages.last_seq", (chat_id,))
        bucket = bucket_of(int(row.last_seq or 0) if row is not None else 0)
        top = 0
        while True:  # SERIAL: a Paxos round the owner left in flight is finished first
            found = await self._cql.one("messages.top", (chat_id, bucket), serial=True)
            if found is None or int(found.seq) < (bucket + 1) * BUCKET - 1:
                top = int(found.seq) if found is not None else top
                break
            top, bucket = int(found.seq), bucket + 1
        before = top + 1
        while before > 1:
            page = await self.before(chat_id, before, 200)
            for m in page:
                if m.sender_id == sender_id and m.client_msg_id == client_msg_id:
                    return m
            if not page or page[-1].created_at < claimed_at - SCAN_MARGIN_MS:
                return None
            before = page[-1].seq
        return None

    # -- sequencer hooks ---------------------------------------------------------

    async def numbered(self, chat_id: str, pairs: list[tuple[Entry, Message]]) -> None:
        """Stored: move device cursors (in order, here), then write the rest and answer."""
        cursors: dict[str, int] = {}
        moved: dict[str, int] = {}
        for _, m in pairs:
            device = m.sender_device_id
            cursor = cursors.get(device)
            if cursor is None:
                try:
                    cursor = await self._cursors.get(device, chat_id)
                except ChatdError:
                    continue  # unknown cursor: leave it (the device gets a replay)
            cursors[device] = cursor_after_send(cursor, m.seq)
            if cursors[device] != cursor:
                moved[device] = cursors[device]
                self._cursors.raised(device, chat_id, m.seq)
        self._spawn(self._finish(chat_id, pairs, moved))

    async def _finish(
        self, chat_id: str, pairs: list[tuple[Entry, Message]], moved: dict[str, int]
    ) -> None:
        messages = [m for _, m in pairs]
        top = messages[-1]
        senders = {m.sender_id: m.seq for m in messages}
        chat_rows = [marks.last(chat_id, top.seq, top.created_at)]
        chat_rows += [marks.both(chat_id, user, seq) for user, seq in senders.items()]
        writes: list[tuple[object, tuple[object, ...]]] = [(self._cql.batch(chat_rows), ())]
        for m in messages:
            writes.append(("keys.done", (m.seq, m.message_id, m.sender_id, m.client_msg_id)))
            writes.append(("messages.index", (m.message_id, m.chat_id, m.seq)))
        writes += [marks.cursor(device, chat_id, seq) for device, seq in moved.items()]

        async def derived() -> None:
            try:
                await self._cql.writes(writes)  # type: ignore[arg-type]
            except ChatdError:
                # The messages are stored (the claim is the durability point); what is
                # missing is derived and repaired by later writes or a retry's lookup.
                log.warning("follow-up writes failed for %d message(s) in %s", len(pairs), chat_id)

        async def sealed(entry: Entry, m: Message) -> None:
            await self._cql.writes(await self._sealed_writes(entry, m))

        # Media references and ciphertexts are not left to repair: an append that
        # answers has them, so one that could not write them fails (the retry's
        # repeat writes them).
        encrypted = [(e, m) for e, m in pairs if m.encrypted]
        _, refs, *sealing = await asyncio.gather(
            derived(),
            self._cql.writes(ref_writes(messages)),
            *(sealed(e, m) for e, m in encrypted),
            return_exceptions=True,
        )
        failed = {id(e): s for (e, _), s in zip(encrypted, sealing, strict=True) if s is not None}
        for entry, m in pairs:
            if entry.future.done():
                continue
            error = failed.get(id(entry))
            if error is None and isinstance(refs, BaseException) and m.media_id is not None:
                error = refs
            if error is not None:
                entry.future.set_exception(
                    error if isinstance(error, ChatdError) else unavailable(error)
                )
            else:
                entry.future.set_result(m)

    async def rejected(self, entry: Entry, error: ChatdError, release: bool) -> None:
        """Refused or failed: give the key back when nothing can have been stored."""
        d = entry.draft
        if release and entry.owner is not None:
            try:
                await self._cql.lwt(
                    "keys.release",
                    (d.sender_id, d.client_msg_id, entry.owner),
                    verify=_true,
                )
            except ChatdError:
                log.warning("could not release idempotency key %s", d.client_msg_id)
        if not entry.future.done():
            entry.future.set_exception(error)

    # -- reads -------------------------------------------------------------------

    async def get(self, chat_id: str, message_id: str) -> Message | None:
        row = await self._cql.one("messages.by_id", (message_id,))
        if row is None or row.chat_id != chat_id:
            return None
        return await self.at_seq(chat_id, int(row.seq))

    async def at_seq(self, chat_id: str, seq: int) -> Message | None:
        if seq <= 0 or bucket_of(seq) > MAX_BUCKET:
            return None
        row = await self._cql.one("messages.at", (chat_id, bucket_of(seq), seq))
        return message_of(row) if row is not None and row.message_id is not None else None

    async def after(self, chat_id: str, after_seq: int, limit: int) -> list[Message]:
        out: list[Message] = []
        position = max(after_seq, 0)
        bucket = bucket_of(position + 1)
        while len(out) < limit and bucket <= MAX_BUCKET:
            rows = await self._cql.rows(
                "messages.after", (chat_id, bucket, position, limit - len(out))
            )
            out.extend(message_of(r) for r in rows)
            if not rows or int(rows[-1].seq) != (bucket + 1) * BUCKET - 1:
                break  # the bucket is not full, so nothing comes after it
            position, bucket = int(rows[-1].seq), bucket + 1
        return out

    async def before(
        self, chat_id: str, before_seq: int, limit: int, min_seq: int = 0
    ) -> list[Message]:
        if before_seq - 1 <= min_seq or limit <= 0:
            return []
        bucket = bucket_of(before_seq - 1)
        row = await self._cql.one("messages.last_seq", (chat_id,))
        if row is None:
            return []
        top = bucket_of(int(row.last_seq or 0))
        bucket = min(bucket, top + 1)  # last_seq may lag by a bucket, never more
        out: list[Message] = []
        while len(out) < limit and bucket >= 0:
            rows = await self._cql.rows(
                "messages.before", (chat_id, bucket, before_seq, min_seq, limit - len(out))
            )
            out.extend(message_of(r) for r in rows)
            if bucket * BUCKET <= min_seq + 1:
                break
            bucket -= 1
        return out

    async def senders_between(self, chat_id: str, low_seq: int, high_seq: int) -> set[str]:
        found: set[str] = set()
        if high_seq <= low_seq:
            return found
        for bucket in range(bucket_of(low_seq + 1), min(bucket_of(high_seq), MAX_BUCKET) + 1):
            rows = await self._cql.all_rows(
                "messages.senders", (chat_id, bucket, low_seq, high_seq), page_size=5000
            )
            if not rows:
                break
            found.update(r.sender_id for r in rows)
        return found


async def _true() -> bool:
    return True
