"""The line under the header naming every screen and its key (1-8 or F1-F8)."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

#: (mode name, title) in key order: key 1 (or F1) opens the first.
SCREENS: tuple[tuple[str, str], ...] = (
    ("dashboard", "Dashboard"),
    ("users", "Users"),
    ("groups", "Groups"),
    ("push", "Push"),
    ("media", "Media"),
    ("nodes", "Nodes"),
    ("logs", "Logs"),
    ("audit", "Audit"),
)


class NavBar(Static):
    """``1 Dashboard  2 Users ...`` with the current screen highlighted."""

    def __init__(self, current: str) -> None:
        super().__init__(id="nav")
        self.current = current

    def on_mount(self) -> None:
        parts: list[Content | str] = []
        for n, (mode, title) in enumerate(SCREENS, 1):
            style = (
                "$block-cursor-foreground on $block-cursor-background"
                if mode == self.current
                else ""
            )
            parts.append(Content.styled(str(n), "bold $accent"))
            parts.append(Content.styled(f" {title}", style) if style else f" {title}")
            parts.append("  ")
        self.update(Content.assemble(*parts[:-1]))
