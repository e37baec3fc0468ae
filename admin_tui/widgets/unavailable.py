"""What a screen shows instead of its data when the server lacks the endpoint."""

from __future__ import annotations

from textual.widgets import Static


class Unavailable(Static):
    """Hidden until ``show()``: says which endpoint is missing, in words."""

    def __init__(self, what: str, endpoint: str, *, id: str | None = None) -> None:
        super().__init__(
            f"{what} is not available on this server.\n\n"
            f"It answered 404 for {endpoint}: this chatd version does not have it yet, "
            "or the feature is not enabled.",
            id=id,
            classes="unavailable",
        )
        self.display = False

    def show(self) -> None:
        self.display = True
