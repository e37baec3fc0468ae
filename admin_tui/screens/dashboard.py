"""The server at a glance, live: rates and latency as sparklines, totals, nodes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import DataTable, Static

from admin_tui import format as fmt
from admin_tui.api import AdminError, NotAvailable
from admin_tui.live import SERIES
from admin_tui.screens.base import AdminScreen
from admin_tui.widgets.stat_spark import StatSpark

_SPARKS = {
    "messages_per_s": ("Messages/s", lambda v: fmt.number(v, 1)),
    "connections": ("Connections", fmt.number),
    "delivery_p99_ms": ("Delivery p99", lambda v: f"{fmt.number(v, 1)} ms"),
}


class DashboardScreen(AdminScreen):
    MODE = "dashboard"
    CSS_PATH = "../styles/dashboard.tcss"

    def __init__(self) -> None:
        super().__init__()
        self.cluster_available = True
        self.cluster_nodes: list[dict[str, Any]] = []

    def body(self) -> Iterable[Widget]:
        with Vertical(id="sparks"):
            for name in SERIES:
                label, shown = _SPARKS[name]
                yield StatSpark(label, shown, id=name.replace("_", "-"))
        yield Static("waiting for the first numbers...", id="totals")
        nodes = DataTable(id="nodes", cursor_type="row")
        nodes.display = False
        yield nodes

    def on_mount(self) -> None:
        feed = self.admin.feed
        feed.stats.subscribe(self, self.show_stats)
        self.query_one("#nodes", DataTable).add_columns(
            "node", "address", "status", "connections", "joined"
        )
        if feed.latest is not None:
            self.show_stats(feed.latest)
        super().on_mount()
        self.set_interval(5, self.action_reload)

    async def load(self) -> None:
        """The cluster's node list (the stats frames carry the numbers)."""
        if not self.cluster_available:
            return
        try:
            body = await self.api.cluster()
        except NotAvailable:
            self.cluster_available = False
            return
        except AdminError:  # the dashboard keeps its last list; the feed shows trouble
            return
        self.cluster_nodes = [n for n in body.get("nodes") or [] if isinstance(n, dict)]
        self._show_nodes()

    def show_stats(self, stats: dict[str, Any]) -> None:
        feed = self.admin.feed
        for name in SERIES:
            self.query_one(f"#{name.replace('_', '-')}", StatSpark).show(feed.series[name])
        nodes = stats.get("nodes")
        storage = stats.get("storage")
        if isinstance(storage, dict):
            storage = storage.get("backend") or storage.get("status") or fmt.detail(storage)
        node_count = len(nodes) if isinstance(nodes, list) else nodes
        rows = [
            ("Node", stats.get("node_id") or "-", "Uptime", fmt.duration(stats.get("uptime_s"))),
            ("Users", fmt.number(stats.get("users")), "Chats", fmt.number(stats.get("chats"))),
            (
                "Messages",
                fmt.number(stats.get("messages_total")),
                "Delivery p50",
                f"{fmt.number(stats.get('delivery_p50_ms'), 1)} ms",
            ),
            (
                "Push outbox",
                fmt.number(stats.get("push_outbox_depth")),
                "Storage",
                str(storage if storage is not None else "-"),
            ),
            ("Nodes", fmt.number(node_count) if node_count is not None else "1", "", ""),
        ]
        text = "\n".join(f"{a:<13}{b!s:<26}{c:<13}{d}".rstrip() for a, b, c, d in rows)
        self.query_one("#totals", Static).update(text)
        if isinstance(nodes, list) and all(isinstance(n, dict) for n in nodes):
            self.cluster_nodes = nodes
            self._show_nodes()

    def _show_nodes(self) -> None:
        table = self.query_one("#nodes", DataTable)
        table.display = len(self.cluster_nodes) > 1
        table.clear()
        for node in self.cluster_nodes:
            table.add_row(
                str(node.get("node_id", "-")),
                str(node.get("address") or "-"),
                str(node.get("status", "-")),
                fmt.number(node.get("connections")),
                fmt.when(node.get("joined_at")),
            )
