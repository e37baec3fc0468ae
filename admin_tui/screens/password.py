"""Asks for a user's new password, twice; the dialog is the confirmation too."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Static


class PasswordDialog(ModalScreen[str | None]):
    """Dismissed with the new password, or None when cancelled."""

    CSS_PATH = "../styles/dialogs.tcss"
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, username: str) -> None:
        super().__init__()
        self.username = username

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(f"Reset the password of {self.username}?", classes="question")
            yield Static("Every device of theirs is logged out at once.", classes="consequence")
            yield Input(placeholder="new password", password=True, id="first")
            yield Input(placeholder="the same again", password=True, id="second")
            yield Static("", id="problem")
            with Horizontal(classes="buttons"):
                yield Button("Reset password", variant="error", id="confirm")
                yield Button("Cancel", id="cancel")
        yield Footer()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "first":
            self.query_one("#second", Input).focus()
        else:
            self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "confirm":
            self._submit()
        else:
            self.dismiss(None)

    def _submit(self) -> None:
        first = self.query_one("#first", Input).value
        second = self.query_one("#second", Input).value
        problem = self.query_one("#problem", Static)
        if not first:
            problem.update("Type the new password.")
        elif first != second:
            problem.update("The two passwords differ.")
        else:
            self.dismiss(first)

    def action_cancel(self) -> None:
        self.dismiss(None)
