"""AuditStore: entries come back newest first, paged by (time, entry_id)."""

from __future__ import annotations

from chatd.core.ids import new_id
from chatd.core.models import AuditEntry

DAY = 86_400_000


def entry(time: int, action: str = "ban", **fields: str) -> AuditEntry:
    return AuditEntry(
        entry_id=fields.get("entry_id", new_id()),
        time=time,
        actor_id=fields.get("actor_id", "admin-1"),
        action=action,
        target_id=fields.get("target_id", "user-1"),
        detail=fields.get("detail", ""),
    )


async def test_empty_log_has_no_entries(storage):
    assert await storage.audit.page(10) == []


async def test_an_entry_comes_back_as_written(storage):
    written = entry(1_800_000_000_000, "password", actor_id="cli", detail="tokens revoked")
    await storage.audit.append(written)
    assert await storage.audit.page(10) == [written]


async def test_pages_are_newest_first_across_days_and_ties(storage):
    base = 1_800_000_000_000
    times = [base - 3 * DAY, base - DAY, base, base, base + 1, base + 2 * DAY]
    written = [entry(t, f"action-{i}") for i, t in enumerate(times)]
    for e in written:
        await storage.audit.append(e)
    newest_first = sorted(written, key=lambda e: (e.time, e.entry_id), reverse=True)
    seen: list[AuditEntry] = []
    before = None
    while page := await storage.audit.page(2, before):
        assert len(page) <= 2
        seen.extend(page)
        before = (page[-1].time, page[-1].entry_id)
    assert seen == newest_first
    assert await storage.audit.page(100) == newest_first


async def test_entries_added_while_paging_are_neither_skipped_nor_repeated(storage):
    base = 1_800_000_000_000
    for i in range(5):
        await storage.audit.append(entry(base + i))
    first = await storage.audit.page(2)
    await storage.audit.append(entry(base + 10))  # newer than the cursor
    rest = await storage.audit.page(10, (first[-1].time, first[-1].entry_id))
    assert [e.time for e in first + rest] == [base + 4, base + 3, base + 2, base + 1, base]
