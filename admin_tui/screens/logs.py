"""Logs: the server's log records (INFO and above) as they happen, filtered by level."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import RichLog

from admin_tui.screens.base import AdminScreen
from admin_tui.widgets.unavailable import Unavailable

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: the theme variable that colours each level (none: the theme's text colour)
_LEVEL_COLOUR = {"WARNING": "warning", "ERROR": "error", "CRITICAL": "error"}


def rank(level: Any) -> int:
    try:
        return LEVELS.index(str(level).upper())
    except ValueError:
        return LEVELS.index("INFO")


class LogsScreen(AdminScreen):
    MODE = "logs"
    CSS_PATH = "../styles/lists.tcss"
    BINDINGS = [
        Binding("l", "level", "Level"),
        Binding("c", "clear", "Clear"),
    ]
    AUTO_FOCUS = "#log"

    def __init__(self) -> None:
        super().__init__()
        self.min_level = "INFO"

    def body(self) -> Iterable[Widget]:
        yield RichLog(id="log", max_lines=2000, wrap=True)
        yield Unavailable("The live log tail", "GET /api/v1/admin/live", id="unavailable")

    def on_mount(self) -> None:
        feed = self.admin.feed
        feed.logs.subscribe(self, self.take)
        self.redraw()

    def action_reload(self) -> None:
        self.redraw()

    def take(self, record: dict[str, Any]) -> None:
        if self.admin.feed.logs_available is False:
            self.query_one("#log").display = False
            self.query_one(Unavailable).show()
            self.refresh_bindings()
            return
        if record and rank(record.get("level")) >= rank(self.min_level):
            self.query_one(RichLog).write(self.line(record))

    def line(self, record: dict[str, Any]) -> Text:
        level = str(record.get("level", "INFO")).upper()
        colour = _LEVEL_COLOUR.get(level)
        variables = self.app.theme_variables
        style = Style(color=variables[colour], bold=level != "WARNING") if colour else Style()
        stamp = str(record.get("time") or "")[11:19]
        return Text.assemble(
            (stamp + " ", Style(dim=True)),
            (f"{level:<8}", style),
            f" {record.get('logger', '')}: ",
            (str(record.get("message", "")), style),
        )

    def redraw(self) -> None:
        log = self.query_one(RichLog)
        log.clear()
        log.border_title = f"Server log · level {self.min_level} and above"
        log.border_subtitle = "l changes the level · c clears"
        for record in self.admin.feed.log_records:
            self.take(record)
        if self.admin.feed.logs_available is False:
            self.take({})

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("level", "clear"):
            return self.admin.feed.logs_available is not False
        return True

    def action_level(self) -> None:
        shown = LEVELS[1:]  # the server sends INFO and above
        self.min_level = shown[(shown.index(self.min_level) + 1) % len(shown)]
        self.redraw()

    def action_clear(self) -> None:
        self.admin.feed.log_records.clear()
        self.query_one(RichLog).clear()
