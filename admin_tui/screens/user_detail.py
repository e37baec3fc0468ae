"""One user: profile, flags and devices, and every action on them.

Ban, password reset and device revocation ask first (each logs someone out);
making or unmaking an admin asks too, since it changes who can do all this.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from typing import Any

from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import DataTable, Static

from admin_tui import format as fmt
from admin_tui.api import AdminError
from admin_tui.screens.base import AdminScreen
from admin_tui.screens.confirm import ConfirmDialog
from admin_tui.screens.password import PasswordDialog


class UserDetailScreen(AdminScreen):
    CSS_PATH = "../styles/lists.tcss"
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("b", "ban", "Ban"),
        Binding("u", "unban", "Unban"),
        Binding("p", "password", "Password"),
        Binding("d", "revoke", "Revoke device"),
        Binding("a", "toggle_admin", "Admin"),
    ]
    AUTO_FOCUS = "#devices"

    def __init__(self, user_id: str, username: str = "") -> None:
        super().__init__()
        self.user_id = user_id
        self.username = username or user_id
        self.user: dict[str, Any] | None = None

    def body(self) -> Iterable[Widget]:
        yield Static(f"{self.username}\nloading...", id="profile")
        yield DataTable(id="devices", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        devices = self.query_one("#devices", DataTable)
        devices.add_columns("device", "name", "created", "last seen", "online")
        devices.border_title = "Devices"
        super().on_mount()

    async def load(self) -> None:
        user = await self.attempt(self.api.user(self.user_id))
        if user is None:
            return
        self.user = user
        self.username = user.get("username") or self.username
        lines = [
            f"{self.username}  ({user.get('display_name') or 'no display name'})",
            f"id {user.get('user_id')}",
            f"admin: {'yes' if user.get('is_admin') else 'no'}    "
            f"banned: {'YES' if user.get('banned') else 'no'}",
            f"created {fmt.when(user.get('created_at'))}    "
            f"last seen {fmt.when(user.get('last_seen'))}",
        ]
        self.query_one("#profile", Static).update("\n".join(lines))
        self.query_one("#profile").set_class(bool(user.get("banned")), "banned")
        table = self.query_one("#devices", DataTable)
        table.clear()
        devices = user.get("devices")
        for device in devices if isinstance(devices, list) else []:
            table.add_row(
                str(device.get("device_id")),
                str(device.get("device_name") or ""),
                fmt.when(device.get("created_at")),
                fmt.when(device.get("last_seen")),
                "online" if device.get("online") else "",
                key=str(device.get("device_id")),
            )
        table.border_subtitle = f"{table.row_count} devices · d revokes the selected one"
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        banned = bool(self.user and self.user.get("banned"))
        if action == "ban":
            return not banned
        if action == "unban":
            return banned
        if action == "revoke":
            return self.query_one("#devices", DataTable).row_count > 0 or None
        return True

    # -- actions -------------------------------------------------------------------

    async def _confirmed(self, question: str, consequence: str, confirm: str) -> bool:
        return bool(await self.app.push_screen_wait(ConfirmDialog(question, consequence, confirm)))

    def action_ban(self) -> None:
        self.run_worker(self._ban(), group="action", exit_on_error=False)

    async def _ban(self) -> None:
        if not await self._confirmed(
            f"Ban {self.username}?",
            "Every token of theirs is revoked and their open connections are closed "
            "on every node. Logging in is refused until you unban them.",
            "Ban",
        ):
            return
        if await self._run(self.api.ban(self.user_id)):
            await self._after(f"{self.username} is banned")

    def action_unban(self) -> None:
        self.run_worker(self._unban(), group="action", exit_on_error=False)

    async def _unban(self) -> None:
        if await self._run(self.api.unban(self.user_id)):
            await self._after(f"{self.username} may log in again")

    def action_password(self) -> None:
        self.run_worker(self._password(), group="action", exit_on_error=False)

    async def _password(self) -> None:
        password = await self.app.push_screen_wait(PasswordDialog(self.username))
        if not password:
            return
        if await self._run(self.api.set_password(self.user_id, password)):
            await self._after(f"password of {self.username} reset; their devices are logged out")

    def action_revoke(self) -> None:
        self.run_worker(self._revoke(), group="action", exit_on_error=False)

    async def _revoke(self) -> None:
        table = self.query_one("#devices", DataTable)
        if not table.row_count:
            return
        device_id = str(table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value)
        if not await self._confirmed(
            f"Revoke device {device_id} of {self.username}?",
            "Its token stops working at once and its connections are closed.",
            "Revoke",
        ):
            return
        if await self._run(self.api.revoke_device(self.user_id, device_id)):
            await self._after(f"device {device_id} revoked")

    def action_toggle_admin(self) -> None:
        self.run_worker(self._toggle_admin(), group="action", exit_on_error=False)

    async def _toggle_admin(self) -> None:
        make = not (self.user and self.user.get("is_admin"))
        question = (
            f"Make {self.username} a server admin?"
            if make
            else f"Take admin rights away from {self.username}?"
        )
        consequence = (
            "They can then do everything this console does."
            if make
            else "They can no longer use the admin API or this console."
        )
        if not await self._confirmed(question, consequence, "Make admin" if make else "Remove"):
            return
        if await self._run(self.api.set_admin(self.user_id, make)):
            await self._after(f"{self.username} is {'now' if make else 'no longer'} an admin")

    async def _run(self, call: Awaitable[Any]) -> bool:
        """True when the change went through; its failure is shown in words."""
        try:
            await call
        except AdminError as exc:
            self.fail(exc)
            return False
        return True

    async def _after(self, text: str) -> None:
        self.done(text)
        await self.load()
