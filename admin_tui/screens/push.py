"""The push outbox: how deep it is, and the dead notifications with their last error.

``r`` sends the selected dead item again (same ``delivery_id``). A server without
the push outbox (404) gets a plain sentence instead of an empty table.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import Static

from admin_tui import format as fmt
from admin_tui.api import AdminError, NotAvailable
from admin_tui.screens.base import AdminScreen
from admin_tui.widgets.paged_table import PagedTable
from admin_tui.widgets.unavailable import Unavailable


def dead_row(item: dict[str, Any]) -> tuple[Any, ...]:
    return (
        item.get("provider"),
        item.get("device_id"),
        item.get("attempts"),
        item.get("last_error") or "",
        fmt.when(item.get("created_at")),
    )


class PushScreen(AdminScreen):
    MODE = "push"
    CSS_PATH = "../styles/lists.tcss"
    BINDINGS = [Binding("r", "retry", "Retry")]
    AUTO_FOCUS = "#dead"

    def __init__(self) -> None:
        super().__init__()
        self.available = True

    def body(self) -> Iterable[Widget]:
        yield Static("Outbox: -", id="depth")
        yield PagedTable(
            ("provider", "device", "tries", "last error", "created"),
            items="dead",
            key="id",
            row=dead_row,
            id="dead",
        )
        yield Unavailable("The push outbox", "GET /api/v1/admin/push", id="unavailable")

    def on_mount(self) -> None:
        self.query_one(PagedTable).border_title = "Dead notifications"
        super().on_mount()

    def action_reload(self) -> None:
        self.query_one(PagedTable).reload(lambda cursor: self.api.push(cursor=cursor))

    def on_paged_table_loaded(self, event: PagedTable.Loaded) -> None:
        depth = fmt.number(event.body.get("outbox_depth"))
        self.query_one("#depth", Static).update(
            f"Outbox: {depth} waiting to be sent · dead items below, r sends one again"
        )
        self.table_title(event.table, "dead")

    def on_paged_table_failed(self, event: PagedTable.Failed) -> None:
        if isinstance(event.error, NotAvailable):
            self._unavailable()
        else:
            self.fail(event.error)

    def _unavailable(self) -> None:
        self.available = False
        self.query_one("#depth").display = False
        self.query_one(PagedTable).display = False
        self.query_one(Unavailable).show()
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "retry":
            return self.available and (self.query_one(PagedTable).row_count > 0 or None)
        return True

    def action_retry(self) -> None:
        item = self.query_one(PagedTable).selected()
        if item is not None:
            self.run_worker(self._retry(item), group="action", exit_on_error=False)

    async def _retry(self, item: dict[str, Any]) -> None:
        try:
            await self.api.retry_push(str(item["id"]))
        except AdminError as exc:
            self.fail(exc)
            return
        self.done(f"notification {item['id']} queued to be sent again")
        self.query_one(PagedTable).refresh_page()
