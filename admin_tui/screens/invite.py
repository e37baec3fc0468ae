"""Makes an invite code (for ``registration = "invite"``) and shows it to pass on."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label, Static

from admin_tui import format as fmt
from admin_tui.api import AdminApi, AdminError


class InviteDialog(ModalScreen[None]):
    CSS_PATH = "../styles/dialogs.tcss"
    BINDINGS = [
        Binding("escape", "close", "Close"),
        Binding("ctrl+y", "copy", "Copy code"),
    ]

    def __init__(self, api: AdminApi) -> None:
        super().__init__()
        self.api = api
        self.code: str | None = None

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog invite"):
            yield Static("New invite code", classes="question")
            with Horizontal(classes="fields"):
                yield Label("uses")
                yield Input("1", type="integer", id="uses")
                yield Label("days")
                yield Input("7", type="integer", id="days")
            yield Static("", id="problem")
            yield Static("", id="code")
            with Horizontal(classes="buttons"):
                yield Button("Create", variant="primary", id="create")
                yield Button("Close", id="cancel")
        yield Footer()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.run_worker(self._create(), exclusive=True, exit_on_error=False)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "create":
            self.run_worker(self._create(), exclusive=True, exit_on_error=False)
        else:
            self.dismiss(None)

    async def _create(self) -> None:
        problem = self.query_one("#problem", Static)
        try:
            uses = int(self.query_one("#uses", Input).value)
            days = int(self.query_one("#days", Input).value)
        except ValueError:
            problem.update("Uses and days are whole numbers.")
            return
        if uses < 1 or days < 1:
            problem.update("Uses and days are at least 1.")
            return
        try:
            invite = await self.api.create_invite(uses, days * 86400)
        except AdminError as exc:
            problem.update(str(exc))
            return
        problem.update("")
        self.code = str(invite.get("code"))
        self.query_one("#code", Static).update(
            f"{self.code}\n\nfor {invite.get('uses')} registration(s), "
            f"until {fmt.when(invite.get('expires_at'))} UTC · Ctrl+Y copies it"
        )

    def action_copy(self) -> None:
        if self.code:
            self.app.copy_to_clipboard(self.code)
            self.notify("invite code copied")

    def action_close(self) -> None:
        self.dismiss(None)
