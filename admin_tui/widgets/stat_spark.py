"""One live number with its recent history as a sparkline."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Sparkline, Static


class StatSpark(Horizontal):
    """``Messages/s   12.5  ▁▂▅▇█▅...``: the label and latest value, then the history."""

    def __init__(self, label: str, fmt: Callable[[float], str], *, id: str) -> None:
        super().__init__(id=id, classes="stat-spark")
        self.label = label
        self.fmt = fmt
        self.value: float | None = None

    def compose(self) -> ComposeResult:
        yield Static(self._text(), classes="stat-value")
        yield Sparkline([], summary_function=max)

    def _text(self) -> str:
        shown = "-" if self.value is None else self.fmt(self.value)
        return f"{self.label:<13}{shown}"

    def show(self, history: Sequence[float]) -> None:
        self.value = history[-1] if history else None
        self.query_one(".stat-value", Static).update(self._text())
        self.query_one(Sparkline).data = list(history)
