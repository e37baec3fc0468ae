"""The live feed: ``/admin/live`` frames in, recent history kept, screens told.

Screens subscribe to the ``stats``, ``logs`` and ``state`` signals and read the
history on mount, so switching to the dashboard shows the last two minutes at
once. A server without the live socket is polled on ``GET /admin/stats`` instead
(no log tail then); a lost socket is reconnected with backoff.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from textual.dom import DOMNode
from textual.signal import Signal

from admin_tui.api import AdminApi, AdminError, NotAvailable

#: The stats fields drawn as sparklines.
SERIES = ("messages_per_s", "connections", "delivery_p99_ms")


class LiveFeed:
    def __init__(
        self, owner: DOMNode, api: AdminApi, *, history: int = 120, poll_s: float = 1.0
    ) -> None:
        self.api = api
        self.poll_s = poll_s
        self.stats = Signal[dict[str, Any]](owner, "stats")
        self.logs = Signal[dict[str, Any]](owner, "logs")
        self.state = Signal[str](owner, "state")
        self.latest: dict[str, Any] | None = None
        self.series: dict[str, deque[float]] = {name: deque(maxlen=history) for name in SERIES}
        self.log_records: deque[dict[str, Any]] = deque(maxlen=2000)
        self.logs_available: bool | None = None  # None until the feed has answered
        self.status = "connecting"

    def _set_state(self, status: str) -> None:
        if status != self.status:
            self.status = status
            self.state.publish(status)

    async def run(self) -> None:
        """Forever (the app's worker): the socket, else polling; never raises."""
        delay = 1.0
        while True:
            try:
                async for frame in self.api.live():
                    self.logs_available = True
                    self._set_state("live")
                    delay = 1.0
                    self.take(frame)
                self._set_state("live feed closed; reconnecting")
            except NotAvailable:
                self.logs_available = False
                self.logs.publish({})
                await self._poll()
            except AdminError as exc:
                self._set_state(f"{exc}; retrying")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 15.0)

    async def _poll(self) -> None:
        self._set_state("polling")
        while True:
            try:
                self._take_stats(await self.api.stats())
                self._set_state("polling")
            except AdminError as exc:
                self._set_state(f"{exc}; retrying")
            await asyncio.sleep(self.poll_s)

    def take(self, frame: dict[str, Any]) -> None:
        """One frame of the live socket: ``{type: "stats"|"log", data}``."""
        data = frame.get("data")
        if not isinstance(data, dict):
            data = {k: v for k, v in frame.items() if k != "type"}
        if frame.get("type") == "stats":
            self._take_stats(data)
        elif frame.get("type") == "log":
            self.log_records.append(data)
            self.logs.publish(data)

    def _take_stats(self, stats: dict[str, Any]) -> None:
        self.latest = stats
        for name, series in self.series.items():
            value = stats.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                series.append(float(value))
        self.stats.publish(stats)
