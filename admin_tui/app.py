"""The admin console app: eight screens as modes, one live feed, one API."""

from __future__ import annotations

import contextlib

from textual.app import App
from textual.binding import Binding
from textual.worker import WorkerCancelled, WorkerFailed

from admin_tui.api import AdminApi
from admin_tui.commands import AdminCommands
from admin_tui.live import LiveFeed
from admin_tui.names import Names
from admin_tui.screens.audit import AuditScreen
from admin_tui.screens.dashboard import DashboardScreen
from admin_tui.screens.groups import GroupsScreen
from admin_tui.screens.logs import LogsScreen
from admin_tui.screens.media import MediaScreen
from admin_tui.screens.nodes import NodesScreen
from admin_tui.screens.push import PushScreen
from admin_tui.screens.users import UsersScreen
from admin_tui.widgets.nav import SCREENS


class AdminApp(App):
    """``AdminApp(AdminApi(url, token)).run()``; tests drive it with ``run_test``."""

    TITLE = "chatd admin"
    CSS_PATH = "styles/app.tcss"
    MODES = {
        "dashboard": DashboardScreen,
        "users": UsersScreen,
        "groups": GroupsScreen,
        "push": PushScreen,
        "media": MediaScreen,
        "nodes": NodesScreen,
        "logs": LogsScreen,
        "audit": AuditScreen,
    }
    DEFAULT_MODE = "dashboard"
    BINDINGS = [
        *(
            Binding(f"{n},f{n}", f"switch_mode('{mode}')", title, show=False)
            for n, (mode, title) in enumerate(SCREENS, 1)
        ),
        Binding("q", "quit", "Quit"),
    ]
    COMMANDS = App.COMMANDS | {AdminCommands}

    def __init__(
        self,
        api: AdminApi,
        *,
        theme: str | None = None,
        label: str | None = None,
        poll_s: float = 1.0,
    ) -> None:
        """``label``: what the header calls the server (default: its URL)."""
        super().__init__()
        self.api = api
        self.label = label or api.base_url
        self.names = Names(api)
        self.feed = LiveFeed(self, api, poll_s=poll_s)
        if theme:
            self.theme = theme

    def on_mount(self) -> None:
        self.sub_title = self.label
        self.feed.state.subscribe(self, self._feed_state)
        self._feed_worker = self.run_worker(
            self.feed.run(), name="live feed", group="live", exit_on_error=False
        )

    def _feed_state(self, status: str) -> None:
        self.sub_title = f"{self.label} · {status}"

    async def on_unmount(self) -> None:
        """The live socket closes before the HTTP session it runs on."""
        self._feed_worker.cancel()
        with contextlib.suppress(WorkerCancelled, WorkerFailed):
            await self._feed_worker.wait()
        await self.api.aclose()
