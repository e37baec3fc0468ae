"""Audit: who changed what, when, to whom; newest first, a page at a time."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual.widget import Widget

from admin_tui import format as fmt
from admin_tui.screens.base import AdminScreen
from admin_tui.widgets.paged_table import PagedTable


def entry_row(entry: dict[str, Any]) -> tuple[Any, ...]:
    return (
        fmt.when(entry.get("time")),
        entry.get("actor_id"),
        entry.get("action"),
        entry.get("target_id") or "",
        fmt.detail(entry.get("detail")),
    )


class AuditScreen(AdminScreen):
    MODE = "audit"
    CSS_PATH = "../styles/lists.tcss"
    AUTO_FOCUS = "#audit"

    def body(self) -> Iterable[Widget]:
        table = PagedTable(
            ("time", "actor", "action", "target", "detail"),
            items="entries",
            key="_row",
            row=entry_row,
            id="audit",
        )
        table.border_title = "Audit log, newest first"
        yield table

    def action_reload(self) -> None:
        self.query_one(PagedTable).reload(self._page)

    async def _page(self, cursor: str | None) -> dict[str, Any]:
        """A page of entries, actors by username; each gets a row key (entries have no id)."""
        body = await self.api.audit(cursor=cursor)
        entries = body.get("entries") or []
        names = await self.admin.names.resolve(e.get("actor_id") for e in entries)
        for n, entry in enumerate(entries):
            entry["_row"] = f"{cursor or ''}:{n}"
            actor = str(entry.get("actor_id") or "")
            entry["actor_id"] = names.get(actor, actor)
        return body

    def on_paged_table_loaded(self, event: PagedTable.Loaded) -> None:
        self.table_title(event.table, "entries")
