"""Audit: who changed what, when, to whom; newest first, a page at a time."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual.widget import Widget

from admin_tui import format as fmt
from admin_tui.api import AdminError
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

    def __init__(self) -> None:
        super().__init__()
        self.names: dict[Any, str] = {}  # actor id -> username

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
        for actor in {e.get("actor_id") for e in entries} - self.names.keys():
            if actor:
                self.names[actor] = await self._username(str(actor))
        for n, entry in enumerate(entries):
            entry["_row"] = f"{cursor or ''}:{n}"
            entry["actor_id"] = self.names.get(entry.get("actor_id"), entry.get("actor_id"))
        return body

    async def _username(self, user_id: str) -> str:
        try:
            return str((await self.api.user(user_id)).get("username") or user_id)
        except AdminError:
            return user_id  # a removed user: the id is all there is

    def on_paged_table_loaded(self, event: PagedTable.Loaded) -> None:
        self.table_title(event.table, "entries")
