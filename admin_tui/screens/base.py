"""What every top-level screen shares: header, screen bar, footer, refresh, errors."""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from typing import TYPE_CHECKING, TypeVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Header
from textual.worker import Worker, WorkerState

from admin_tui.api import AdminApi, AdminError
from admin_tui.widgets.nav import NavBar
from admin_tui.widgets.paged_table import PagedTable

if TYPE_CHECKING:
    from admin_tui.app import AdminApp

T = TypeVar("T")


class AdminScreen(Screen):
    """A screen of the console; subclasses give ``MODE``, ``body()`` and ``load()``."""

    MODE = ""
    BINDINGS = [Binding("ctrl+r", "reload", "Refresh")]

    @property
    def admin(self) -> AdminApp:
        return self.app  # type: ignore[return-value]

    @property
    def api(self) -> AdminApi:
        return self.admin.api

    def compose(self) -> ComposeResult:
        yield Header()
        if self.MODE:
            yield NavBar(self.MODE)
        yield from self.body()
        yield Footer()

    def body(self) -> Iterable[Widget]:
        return ()

    def on_mount(self) -> None:
        self.action_reload()

    def action_reload(self) -> None:
        self.run_worker(self.load, exclusive=True, group="load", exit_on_error=False)

    async def load(self) -> None:
        """Fetch what the screen shows (errors go through ``attempt``)."""

    async def attempt(self, call: Awaitable[T]) -> T | None:
        """``await call``; on failure say why in a notification and return None."""
        try:
            return await call
        except AdminError as exc:
            self.fail(exc)
            return None

    def fail(self, exc: AdminError) -> None:
        self.notify(str(exc), title="chatd said", severity="error", timeout=8)

    def on_paged_table_failed(self, event: PagedTable.Failed) -> None:
        self.fail(event.error)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A bug, not a refusal: still words on the screen, and the console goes on."""
        if event.state is WorkerState.ERROR:
            error = event.worker.error
            self.notify(
                f"{type(error).__name__}: {error}", title="unexpected error", severity="error"
            )

    def done(self, text: str) -> None:
        self.notify(text, timeout=4)

    def table_title(self, table: PagedTable, what: str) -> None:
        """``page 2 · 50 users · n next`` under a paged table."""
        more = " · n next" if table.has_next else ""
        back = " · p previous" if table.page > 1 else ""
        table.border_subtitle = f"page {table.page} · {table.row_count} {what}{more}{back}"
