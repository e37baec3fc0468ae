"""After the copy: the same state on both sides, per chat and per table.

Two independent checks, both computed on the source and on the target:

* **Per chat, through the store** (``ScyllaStorage``, the reads ``chatd serve``
  makes): the chat record (version, last_seq, title...), its current members in
  order and every past membership (roles, joined/left seqs, watermarks), every
  message in seq order (a checksum over seq, message_id, sender, device, type,
  content, client_msg_id, created_at, media_id, reply_to; a mismatch names the
  first differing seq), and the sequencer's epoch in every message bucket.
* **Per table, by full scans of the target**: every row of every table the
  importer writes (derived tables too: idempotency keys, id index, inbox,
  device tokens, prefix search, media indexes...) against the rows the source
  should have produced, as a count and an order-independent checksum (a sum of
  row hashes), per chat for tables that have a chat column. This catches rows
  missing, extra (a doubled import), or different.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from chatd.migrate.progress import Reporter
from chatd.migrate.source import SqliteSource
from chatd.migrate.steps import STEPS, EpochCache, puts_for
from chatd.storage.scylla.common import BUCKET
from chatd.storage.scylla.importer.images import Image, images
from chatd.storage.scylla.importer.records import message_puts
from chatd.storage.scylla.importer.tables import TABLES
from chatd.storage.scylla.importer.writer import Importer

MASK = (1 << 128) - 1
PAGE = 1000

#: (label, source table, target table, statics?): the entity counts of the summary.
ENTITIES = [
    ("users", "users", "users", False),
    ("devices", "devices", "devices", False),
    ("contacts", "contacts", "contacts", False),
    ("invites", "invites", "invites", False),
    ("chats", "chats", "chat_members", True),
    ("members", "members", "chat_members", False),
    ("messages", "messages", None, False),
    ("delivery cursors", "device_cursors", "device_cursors", False),
    ("media", "media", "media", False),
    ("device keys", "device_keys", "device_keys", False),
    ("one-time prekeys", "one_time_prekeys", "one_time_prekeys", False),
]


@dataclass
class Report:
    counts: list[tuple[str, int, int]] = field(default_factory=list)  # entity, source, target
    problems: list[str] = field(default_factory=list)
    chats: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems and all(s == t for _, s, t in self.counts)


def row_hash(image: Any) -> int:
    return int.from_bytes(
        hashlib.blake2b(orjson.dumps(tuple(image)), digest_size=16).digest(), "big"
    )


class Tally:
    """Count and sum of row hashes per (table, static, chat); sets for shared tables."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, bool, str], list[int]] = {}
        self.shared: dict[str, set[int]] = {}

    def add(self, rows: Iterable[Image]) -> None:
        for image in rows:
            spec = TABLES[image.table]
            if not spec.scan:
                continue
            h = row_hash(image)
            if spec.shared:
                self.shared.setdefault(image.table, set()).add(h)
                continue
            slot = self.rows.setdefault((image.table, image.static, image.group), [0, 0])
            slot[0] += 1
            slot[1] = (slot[1] + h) & MASK

    def count(self, table: str, static: bool) -> int:
        return sum(v[0] for (t, s, _), v in self.rows.items() if t == table and s == static)


async def verify(
    source: SqliteSource, importer: Importer, concurrency: int, reporter: Reporter
) -> Report:
    report = Report()
    expected, found = Tally(), Tally()
    epochs = EpochCache(source)
    counts = await source.run(source.counts)

    steps = [s for s in STEPS if s.name != "messages"]  # messages: per chat, below
    reporter.step("verify: expected rows", sum(counts[s.table] for s in steps), 0)
    for step in steps:
        position = None
        while True:
            page = await source.run(step.read, source, position, PAGE)
            if not page:
                break
            expected.add(images(await puts_for(step, page, epochs)))
            position = step.key(page[-1])
            reporter.advance("verify: expected rows", len(page))
    reporter.finish("verify: expected rows")

    reporter.step("verify: chats", counts["chats"], 0)
    target_messages = await _check_chats(
        source, importer, epochs, expected, report, concurrency, reporter
    )
    reporter.finish("verify: chats")

    scanned = [name for name, spec in TABLES.items() if spec.scan]
    reporter.step("verify: tables", len(scanned), 0)
    for name in scanned:
        async for page in importer.scan(name):
            found.add(page)
        reporter.advance("verify: tables", 1)
    reporter.finish("verify: tables")

    report.problems += _compare(expected, found)
    for label, src_table, dst_table, static in ENTITIES:
        target = target_messages if dst_table is None else found.count(dst_table, static)
        report.counts.append((label, counts[src_table], target))
    return report


async def _check_chats(
    source: SqliteSource,
    importer: Importer,
    epochs: EpochCache,
    expected: Tally,
    report: Report,
    concurrency: int,
    reporter: Reporter,
) -> int:
    """Every chat through the store; returns the target's message count."""
    total = 0
    slots = asyncio.Semaphore(max(1, concurrency))
    after = ""

    async def one(chat_id: str) -> None:
        nonlocal total
        async with slots:
            problems, count = await _check_chat(source, importer, epochs, chat_id, expected)
            report.problems += problems
            total += count
            report.chats += 1
            reporter.advance("verify: chats", 1)

    while True:
        ids = await source.run(source.chat_ids, after, PAGE)
        if not ids:
            return total
        await asyncio.gather(*(one(c) for c in ids))
        after = ids[-1]


async def _check_chat(
    source: SqliteSource, importer: Importer, epochs: EpochCache, chat_id: str, expected: Tally
) -> tuple[list[str], int]:
    store = importer.storage
    problems: list[str] = []
    found = await source.run(source.chat, chat_id)
    assert found is not None
    chat, members = found
    target_chat = await store.chats.get(chat_id)
    if target_chat != chat:
        problems.append(f"chat {chat_id}: chat record differs ({chat} != {target_chat})")
    current = sorted((m for m in members if m.left_seq is None), key=_joined)
    if await store.chats.members(chat_id) != current:
        problems.append(f"chat {chat_id}: current members differ")
    for m in members:
        if m.left_seq is not None and await store.chats.member(chat_id, m.user_id) != m:
            problems.append(f"chat {chat_id}: past membership of {m.user_id} differs")

    # Messages: both sides in seq order, (pos, pos + PAGE] at a time.
    # Every page is compared message by message until the first difference.
    src_count = dst_count = 0
    first_diff: int | None = None
    last = max(chat.last_seq, target_chat.last_seq if target_chat else 0)
    pos = 0
    while pos < last:
        mine = await source.run(source.chat_messages, chat_id, pos, PAGE)
        theirs = [m for m in await store.messages.after(chat_id, pos, PAGE) if m.seq <= pos + PAGE]
        expected.add(images(p for m in mine for p in message_puts(m)))
        src_count, dst_count = src_count + len(mine), dst_count + len(theirs)
        if first_diff is None:
            by_seq = {m.seq: m for m in theirs}
            for m in mine:
                if by_seq.pop(m.seq, None) != m:
                    first_diff = m.seq
                    break
            else:
                if by_seq:
                    first_diff = min(by_seq)
        pos += PAGE
    extra = await store.messages.after(chat_id, max(pos, last), 1)
    if first_diff is not None or extra:
        where = (
            f"first difference at seq {first_diff}" if first_diff is not None else "extra messages"
        )
        problems.append(
            f"chat {chat_id}: messages differ ({src_count} in the source, "
            f"{dst_count + len(extra)}+ in the target; {where})"
        )

    # The sequencer's fence in every bucket: what the next append will be checked against.
    if chat.last_seq:
        facts = await epochs.get(chat_id)
        buckets = list(range(chat.last_seq // BUCKET + 1))
        for bucket, got in zip(buckets, await importer.epochs(chat_id, buckets), strict=True):
            want = facts.of(bucket)
            if got != want:
                problems.append(
                    f"chat {chat_id}: sequencer state of bucket {bucket} is {got}, "
                    f"expected (epoch, epoch_seq) {want}"
                )
    return problems, dst_count


def _joined(m: Any) -> tuple[int, str]:
    return (m.joined_at, m.user_id)


def _compare(expected: Tally, found: Tally) -> list[str]:
    problems = []
    for key in sorted(set(expected.rows) | set(found.rows)):
        want, got = expected.rows.get(key, [0, 0]), found.rows.get(key, [0, 0])
        if want != got:
            table, static, chat = key
            what = f"{table} ({'chat statics' if static else 'rows'})"
            where = f"chat {chat}: " if chat else ""
            problems.append(
                f"{where}table {what}: {want[0]} row(s) expected, {got[0]} found"
                + (", contents differ" if want[0] == got[0] else "")
            )
    for table in sorted(set(expected.shared) | set(found.shared)):
        want_set, got_set = expected.shared.get(table, set()), found.shared.get(table, set())
        if want_set != got_set:
            problems.append(
                f"table {table}: {len(want_set)} row(s) expected, {len(got_set)} found"
                + (", contents differ" if len(want_set) == len(got_set) else "")
            )
    return problems
