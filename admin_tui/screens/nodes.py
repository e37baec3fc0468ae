"""Nodes: every node of the cluster with its state (``GET /cluster``), every 5 s."""

from __future__ import annotations

from collections.abc import Iterable

from textual.widget import Widget
from textual.widgets import DataTable, Static

from admin_tui import format as fmt
from admin_tui.api import AdminError, NotAvailable
from admin_tui.screens.base import AdminScreen
from admin_tui.widgets.unavailable import Unavailable


class NodesScreen(AdminScreen):
    MODE = "nodes"
    CSS_PATH = "../styles/lists.tcss"
    AUTO_FOCUS = "#nodes"

    def body(self) -> Iterable[Widget]:
        yield Static("", id="answering")
        yield DataTable(id="nodes", cursor_type="row", zebra_stripes=True)
        yield Unavailable("The cluster view", "GET /api/v1/cluster", id="unavailable")

    def on_mount(self) -> None:
        self.query_one("#nodes", DataTable).add_columns(
            "node", "address", "status", "connections", "joined"
        )
        super().on_mount()
        self.set_interval(5, self.action_reload)

    async def load(self) -> None:
        if self.query_one(Unavailable).display:
            return
        try:
            body = await self.api.cluster()
        except NotAvailable:
            self.query_one("#nodes").display = False
            latest = self.admin.feed.latest or {}
            self.query_one("#answering", Static).update(
                f"This server runs as one node ({latest.get('node_id') or 'see the dashboard'})."
            )
            self.query_one(Unavailable).show()
            return
        except AdminError as exc:
            self.fail(exc)
            return
        me = body.get("node_id")
        nodes = [n for n in body.get("nodes") or [] if isinstance(n, dict)]
        alive = sum(1 for n in nodes if n.get("status") == "alive")
        self.query_one("#answering", Static).update(
            f"{len(nodes)} nodes, {alive} alive; answered by {me} (marked *)"
        )
        table = self.query_one("#nodes", DataTable)
        table.clear()
        for node in nodes:
            marker = "*" if node.get("node_id") == me else ""
            table.add_row(
                f"{node.get('node_id')}{marker}",
                str(node.get("address") or "-"),
                str(node.get("status", "-")),
                fmt.number(node.get("connections")),
                fmt.when(node.get("joined_at")),
            )
