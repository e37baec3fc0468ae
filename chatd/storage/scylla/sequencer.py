"""Numbering messages: per-chat group commit over Paxos, gap-free across nodes.

A seq is claimed by inserting the message row itself ``IF NOT EXISTS`` into its
bucket partition; several rows go in one conditional batch (one Paxos round),
so a burst to one chat costs one round, not one per message. Seq n is only
tried when n - 1 is known to exist (we claimed it, a lost race returned it, or
a read saw it), so seqs stay gap-free even if a process dies anywhere; the
loser of a race learns the rows that won and moves past them.

Every claim is also conditional on the bucket's static ``epoch``: the chat
version the claimer's membership view was read at. A group change moves the
epoch in the same Paxos round that numbers its system message, so a send
checked against an older member list fails its claim, re-reads the members
and is refused if its sender was removed: a removal and a send cannot
interleave. The first claim in a bucket copies the epoch of the (full, hence
frozen) previous bucket.

One task per chat drains that chat's queue in submission order, so seq order
follows call order within a process.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from chatd.core.errors import ChatdError, StaleVersion, not_found
from chatd.core.ids import now_ms
from chatd.core.models import Message, MessageDraft
from chatd.core.watermarks import Marks, sent
from chatd.storage.scylla.bridge import Cql, LwtResult, unavailable
from chatd.storage.scylla.common import (
    BUCKET,
    bucket_of,
    build_message,
    claim_row,
    id_after,
    or_zero,
)

log = logging.getLogger("chatd.storage.scylla")

MAX_ROWS = 64
MAX_BYTES = 512 * 1024
ATTEMPTS = 400
#: An append whose key is older than this starts no new claim (see messages.py).
OWNER_DEADLINE_S = 5.0
MAX_IDLE_CHATS = 10_000

CQL = {
    "seq.claim": "INSERT INTO messages (chat_id, bucket, seq, message_id, sender_id, "
    "sender_device_id, type, content, client_msg_id, created_at, media_id, reply_to, change, "
    "encrypted) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) IF NOT EXISTS",
    "seq.keep_epoch": "UPDATE messages SET epoch = ? WHERE chat_id = ? AND bucket = ? IF epoch = ?",
    "seq.move_epoch": "UPDATE messages SET epoch = ?, epoch_seq = ? "
    "WHERE chat_id = ? AND bucket = ? IF epoch = ?",
    "seq.init_epoch": "UPDATE messages SET epoch = ?, epoch_seq = ? "
    "WHERE chat_id = ? AND bucket = ? IF epoch = null",
    "seq.top": "SELECT seq, message_id FROM messages WHERE chat_id = ? AND bucket = ? "
    "ORDER BY seq DESC LIMIT 1",
    "seq.epoch": "SELECT epoch, epoch_seq FROM messages WHERE chat_id = ? AND bucket = ? LIMIT 1",
    "seq.row_id": "SELECT message_id FROM messages WHERE chat_id = ? AND bucket = ? AND seq = ?",
    "seq.view": "SELECT user_id, role, left_seq, version, last_seq, read_seq, delivered_seq "
    "FROM chat_members "
    "WHERE chat_id = ? AND user_id IN ?",
    "seq.last_seq": "SELECT last_seq FROM chat_members WHERE chat_id = ? LIMIT 1",
}


@dataclass(eq=False)
class Entry:
    """A draft waiting for its seq. ``ready`` says whether to number it at all
    (False: it was settled elsewhere, e.g. as a repeat); ``expected`` marks a
    group change's system message (the version it applies to)."""

    draft: MessageDraft
    future: asyncio.Future[Message]
    ready: Awaitable[bool] | None = None
    keyed_at: float = field(default_factory=time.monotonic)
    change: str | None = None
    expected: int | None = None
    owner: str | None = None  # the idempotency key this append holds
    created: bool = True  # False when the future got an earlier message (a repeat)
    numbered: bool = False  # stored: only its own follow-up may answer it now
    previous: Marks | None = None  # the sender's watermarks before it
    #: An encrypted draft's coverage check, run in submission order right before
    #: each claim attempt (it raises to refuse); ``checked`` keeps what it read.
    check: Callable[[Entry], Awaitable[None]] | None = None
    checked: Any = None

    @property
    def size(self) -> int:
        return 512 + len(self.draft.content) + len(self.change or "")


Numbered = Callable[[str, list[tuple[Entry, Message]]], Awaitable[None]]
#: (entry, error, release): release=True when no claim of it can have been applied.
Rejected = Callable[[Entry, ChatdError, bool], Awaitable[None]]
RollForward = Callable[[str, int, int], Awaitable[None]]


@dataclass(eq=False)
class ChatState:
    chat_id: str
    queue: deque[Entry] = field(default_factory=deque)
    task: asyncio.Task[None] | None = None
    version: int | None = None  # the version ``members`` was read at
    members: dict[str, bool] = field(default_factory=dict)  # sender -> current member
    marks: dict[str, Marks] = field(default_factory=dict)  # sender -> its watermarks
    next: int | None = None  # a seq whose predecessor exists
    prev_id: str | None = None  # message_id at next - 1, when known
    ready_bucket: int | None = None  # a bucket whose epoch is known to be set
    init_bucket: int | None = None  # a bucket found without an epoch
    hint: int = 0  # the chat's last_seq as last read


class Sequencer:
    def __init__(
        self, cql: Cql, *, numbered: Numbered, rejected: Rejected, roll_forward: RollForward
    ) -> None:
        self._cql = cql
        self._numbered = numbered
        self._rejected = rejected
        self._roll_forward = roll_forward
        self._chats: OrderedDict[str, ChatState] = OrderedDict()

    def submit(self, entry: Entry) -> None:
        """Queue ``entry``; its future resolves with the stored message."""
        chat_id = entry.draft.chat_id
        st = self._chats.get(chat_id)
        if st is None:
            st = self._chats[chat_id] = ChatState(chat_id)
            self._evict()
        self._chats.move_to_end(chat_id)
        st.queue.append(entry)
        if st.task is None:
            st.task = asyncio.create_task(self._drain(st), name=f"seq-{chat_id[-8:]}")

    def _evict(self) -> None:
        if len(self._chats) <= MAX_IDLE_CHATS:
            return
        idle = [k for k, s in self._chats.items() if s.task is None]
        for chat_id in idle[: max(0, len(self._chats) - MAX_IDLE_CHATS)]:
            del self._chats[chat_id]

    async def _drain(self, st: ChatState) -> None:
        try:
            while st.queue:
                if st.queue[0].expected is not None:
                    batch = [st.queue.popleft()]
                else:
                    batch = []
                    while st.queue and st.queue[0].expected is None and len(batch) < 4 * MAX_ROWS:
                        batch.append(st.queue.popleft())
                todo = []
                for entry in batch:
                    try:
                        if entry.ready is None or await entry.ready:
                            todo.append(entry)
                    except Exception as exc:
                        await self._rejected(entry, _as_chatd(exc), False)
                try:
                    await self._number(st, todo)
                except Exception as exc:
                    # The outcome of the last claim is unknown: keep the keys, so a
                    # retry finds (or takes over) whatever was stored.
                    st.next, st.version = None, None
                    for entry in todo:
                        if not entry.future.done() and not entry.numbered:
                            await self._rejected(entry, _as_chatd(exc), False)
        finally:
            st.task = None

    # -- the claim loop ----------------------------------------------------------

    async def _number(self, st: ChatState, entries: list[Entry]) -> None:
        for attempt in range(ATTEMPTS):
            entries = [e for e in entries if not e.future.done()]
            if not entries:
                return
            change = entries[0].expected is not None
            if change:
                version = entries[0].expected
            else:
                entries = await self._members_only(st, entries, attempt == 0)
                entries = await self._covered(entries)
                if not entries:
                    return
                version = st.version
            assert version is not None
            if st.next is None:
                await self._probe(st)
            assert st.next is not None
            first = st.next
            bucket = bucket_of(first)
            chunk, size = [], 0
            room = min(MAX_ROWS, (bucket + 1) * BUCKET - first)
            for entry in entries[:room]:
                if chunk and size + entry.size > MAX_BYTES:
                    break
                chunk.append(entry)
                size += entry.size
            epoch = version + 1 if change else version
            static = await self._static(st, bucket, first, version, epoch)
            stale = static is None
            if static is not None:
                now = now_ms()
                messages, previous = [], st.prev_id
                for i, entry in enumerate(chunk):
                    previous = id_after(previous)
                    messages.append(build_message(entry.draft, previous, first + i, now))
                result = await self._claim(st.chat_id, bucket, static, chunk, messages)
                if result.applied:
                    st.next, st.prev_id = first + len(chunk), messages[-1].message_id
                    st.ready_bucket, st.init_bucket = bucket, None
                    entries = entries[len(chunk) :]
                    for entry, m in zip(chunk, messages, strict=True):
                        entry.numbered = True
                        entry.previous = st.marks.get(m.sender_id, Marks())
                        st.marks[m.sender_id] = sent(entry.previous, m.seq)
                    await self._settle(st, chunk, messages, version)
                    continue
                if not result.rows:  # verified as not ours: re-read where the chat is
                    st.next = None
                    continue
                stale = await self._lost(st, result.rows, bucket, len(chunk), version)
                if not stale:  # another node won this round: let it breathe, then retry
                    await asyncio.sleep(random.uniform(0, 0.002))
            if stale and change:
                await self._rejected(entries[0], StaleVersion("the group changed; retry"), True)
                return
        for entry in entries:
            if not entry.future.done():
                error = ChatdError("unavailable", "chat is too busy; retry")
                await self._rejected(entry, error, True)

    async def _members_only(self, st: ChatState, entries: list[Entry], reread: bool) -> list[Entry]:
        """Refuse drafts whose sender is not a current member at the view's version.

        Read once per batch (one single-partition query), which also gives the
        senders' watermarks; a view found stale by a claim is read again.
        """
        deadline = time.monotonic() - OWNER_DEADLINE_S
        senders = list(dict.fromkeys(e.draft.sender_id for e in entries))
        if reread or st.version is None:
            unknown = senders
        else:
            unknown = [u for u in senders if st.members.get(u) is not True]
        if unknown:
            rows = await self._cql.rows("seq.view", (st.chat_id, unknown))
            version = rows[0].version if rows else None
            if rows and version is not None and version != st.version:
                st.version, st.members = int(version), {}
                if len(unknown) < len(senders):
                    return await self._members_only(st, entries, True)
            for user_id in unknown:
                st.members[user_id] = False
            for row in rows:
                if row.version is not None and int(row.version) == st.version:
                    st.members[row.user_id] = row.role is not None and row.left_seq is None
                    st.marks[row.user_id] = Marks(or_zero(row.delivered_seq), or_zero(row.read_seq))
                if row.last_seq is not None:
                    st.hint = max(st.hint, int(row.last_seq))
        keep = []
        for entry in entries:
            if st.version is None or not st.members.get(entry.draft.sender_id):
                await self._rejected(entry, not_found("chat not found"), True)
            elif entry.keyed_at < deadline:
                await self._rejected(entry, ChatdError("unavailable", "timed out; retry"), True)
            else:
                keep.append(entry)
        return keep

    async def _covered(self, entries: list[Entry]) -> list[Entry]:
        """Refuse encrypted drafts whose ciphertexts do not cover exactly the devices
        they must (``Entry.check``), one after the other, right before the claim."""
        keep = []
        for entry in entries:
            if entry.check is not None:
                try:
                    await entry.check(entry)
                except Exception as exc:
                    await self._rejected(entry, _as_chatd(exc), True)
                    continue
            keep.append(entry)
        return keep

    async def _probe(self, st: ChatState) -> None:
        """Find the chat's top seq, starting at its (possibly lagging) last_seq."""
        if not st.hint:
            row = await self._cql.one("seq.last_seq", (st.chat_id,))
            st.hint = int(row.last_seq) if row is not None and row.last_seq is not None else 0
        bucket, top, top_id = bucket_of(st.hint), 0, None
        while True:
            row = await self._cql.one("seq.top", (st.chat_id, bucket))
            if row is not None:
                top, top_id = int(row.seq), row.message_id
            if row is None or top < (bucket + 1) * BUCKET - 1:
                break
            bucket += 1
        if top >= st.hint:
            st.next, st.prev_id = top + 1, top_id
        else:  # a read behind last_seq: trust last_seq, which only names existing seqs
            st.next, st.prev_id = st.hint + 1, None

    async def _static(
        self, st: ChatState, bucket: int, first: int, version: int, epoch: int
    ) -> tuple[str, tuple[object, ...]] | None:
        """The epoch condition for a claim in ``bucket`` (None: the view is stale)."""
        first_slot = first == max(1, bucket * BUCKET)
        needs_init = st.init_bucket == bucket or (first_slot and st.ready_bucket != bucket)
        moved = epoch != version
        if not needs_init:
            if moved:
                return "seq.move_epoch", (epoch, first, st.chat_id, bucket, version)
            return "seq.keep_epoch", (epoch, st.chat_id, bucket, version)
        epoch_seq: int = first if moved else 0
        if bucket > 0:
            row = await self._cql.one("seq.epoch", (st.chat_id, bucket - 1), serial=True)
            if row is None or row.epoch is None or int(row.epoch) != version:
                if row is not None and row.epoch is not None:
                    await self._stale(st, int(row.epoch), int(row.epoch_seq or 0))
                else:
                    st.next = None
                return None
            if not moved:
                epoch_seq = int(row.epoch_seq or 0)
        return "seq.init_epoch", (epoch, epoch_seq, st.chat_id, bucket)

    async def _claim(
        self,
        chat_id: str,
        bucket: int,
        static: tuple[str, tuple[object, ...]],
        chunk: list[Entry],
        messages: list[Message],
    ) -> LwtResult:
        items: list[tuple[str, tuple[object, ...]]] = [static]
        for entry, m in zip(chunk, messages, strict=True):
            items.append(("seq.claim", claim_row(m, bucket, entry.change)))
        batch = self._cql.batch(items)

        async def verify() -> bool:
            row = await self._cql.one("seq.row_id", (chat_id, bucket, messages[0].seq), serial=True)
            return row is not None and row.message_id == messages[0].message_id

        return await self._cql.lwt(batch, verify=verify)

    async def _lost(
        self, st: ChatState, rows: list[Any], bucket: int, count: int, version: int
    ) -> bool:
        """Learn from a claim that was not applied; True if the view was stale."""
        taken = [r for r in rows if r.seq is not None]
        if taken:
            top = max(taken, key=lambda r: r.seq)
            st.next, st.prev_id = int(top.seq) + 1, top.message_id
            if len(taken) == count:
                st.hint, st.next = int(top.seq), None  # maybe more beyond: probe from there
        epoch = rows[0].epoch
        if epoch is None:
            st.init_bucket = bucket
            return False
        st.ready_bucket, st.init_bucket = bucket, None
        if int(epoch) == version:
            return False
        await self._stale(st, int(epoch), int(rows[0].epoch_seq or 0))
        return True

    async def _stale(self, st: ChatState, epoch: int, epoch_seq: int) -> None:
        """The chat moved to ``epoch``: finish applying that change, drop the view."""
        await self._roll_forward(st.chat_id, epoch, epoch_seq)
        st.version, st.members = None, {}

    async def _settle(
        self, st: ChatState, chunk: list[Entry], messages: list[Message], version: int
    ) -> None:
        if chunk[0].expected is not None:  # a group change: it is committed now
            st.version, st.members = None, {}
            try:
                await self._roll_forward(st.chat_id, version + 1, messages[0].seq)
            except ChatdError:
                log.warning("group change %s committed, applying it failed", st.chat_id)
            chunk[0].future.set_result(messages[0])
            return
        await self._numbered(st.chat_id, list(zip(chunk, messages, strict=True)))


def _as_chatd(exc: Exception) -> ChatdError:
    if isinstance(exc, ChatdError):
        return exc
    log.error("numbering failed", exc_info=exc)
    return unavailable()
