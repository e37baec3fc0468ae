"""Media: how many files, how many bytes, how many no message refers to."""

from __future__ import annotations

from collections.abc import Iterable

from textual.widget import Widget
from textual.widgets import Static

from admin_tui import format as fmt
from admin_tui.screens.base import AdminScreen


class MediaScreen(AdminScreen):
    MODE = "media"
    CSS_PATH = "../styles/lists.tcss"

    def body(self) -> Iterable[Widget]:
        yield Static("loading...", id="usage")

    def on_mount(self) -> None:
        super().on_mount()
        self.set_interval(10, self.action_reload)

    async def load(self) -> None:
        usage = await self.attempt(self.api.media())
        if usage is None:
            return
        files = usage.get("files")
        unreferenced = usage.get("unreferenced_files")
        lines = [
            f"Files stored          {fmt.number(files)}",
            f"Space used            {fmt.size(usage.get('bytes'))}"
            f"  ({fmt.number(usage.get('bytes'))} bytes)",
            f"Unreferenced files    {fmt.number(unreferenced)}",
            "",
            "Unreferenced files are uploads no message or profile points at;",
            "the server removes them after their grace period.",
        ]
        self.query_one("#usage", Static).update("\n".join(lines))
        self.query_one("#usage").border_title = "Media usage"
