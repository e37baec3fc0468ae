"""The audit log on ScyllaDB: a partition per UTC day, clustered newest first.

``audit_days`` lists the days that have entries (newest first), so a page walks
back from the cursor's day without probing empty days.
"""

from __future__ import annotations

from chatd.core.models import AuditEntry
from chatd.storage.scylla.bridge import Cql

DAY_MS = 86_400_000
_COLUMNS = "entry_id, time, actor_id, action, target_id, detail"

CQL = {
    "audit.insert": f"INSERT INTO audit (day, {_COLUMNS}) VALUES (?,?,?,?,?,?,?)",
    "audit.day": "INSERT INTO audit_days (shard, day) VALUES (0, ?)",
    "audit.days": "SELECT day FROM audit_days WHERE shard = 0 AND day <= ?",
    "audit.newest": f"SELECT {_COLUMNS} FROM audit WHERE day = ? LIMIT ?",
    "audit.before": f"SELECT {_COLUMNS} FROM audit WHERE day = ? "
    "AND (time, entry_id) < (?, ?) LIMIT ?",
}


def day_of(time_ms: int) -> int:
    return time_ms // DAY_MS


class ScyllaAudit:
    def __init__(self, cql: Cql) -> None:
        self._cql = cql

    async def append(self, entry: AuditEntry) -> None:
        day = day_of(entry.time)
        row = (
            day,
            entry.entry_id,
            entry.time,
            entry.actor_id,
            entry.action,
            entry.target_id,
            entry.detail,
        )
        async with self._cql.gate.held():
            await self._cql.writes([("audit.insert", row), ("audit.day", (day,))])

    async def page(self, limit: int, before: tuple[int, str] | None = None) -> list[AuditEntry]:
        out: list[AuditEntry] = []
        if limit <= 0:
            return out
        start = day_of(before[0]) if before else 2**31 - 1
        for day_row in await self._cql.all_rows("audit.days", (start,)):
            want = limit - len(out)
            if before is not None and day_row.day == day_of(before[0]):
                rows = await self._cql.rows("audit.before", (day_row.day, *before, want))
            else:
                rows = await self._cql.rows("audit.newest", (day_row.day, want))
            out.extend(
                AuditEntry(
                    r.entry_id, int(r.time), r.actor_id, r.action, r.target_id, r.detail or ""
                )
                for r in rows
            )
            if len(out) >= limit:
                break
        return out
