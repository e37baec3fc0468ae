"""``GET /admin/stats``: one node's figures, sampled every second.

Rates and latencies are over the last ``WINDOW`` samples (10 s): the dashboard
shows what happens now, not averages since start. Counts that storage answers
(users, chats, messages) come from ``AdminService.counts`` (cached: on
ScyllaDB they are scans); ``push_outbox_depth`` is the push worker's last count.
``nodes`` is the cluster as gossip sees it, or this node alone (with no cluster
address) when it is not clustered; ``GET /cluster`` answers the same list.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from chatd.cluster.service import Cluster
from chatd.core.ids import format_ts, now_ms
from chatd.core.services.admin import AdminService
from chatd.gateway.sessions import SessionRegistry
from chatd.metrics import Metrics

WINDOW = 10


@dataclass(frozen=True)
class _Sample:
    at: float
    messages: float
    buckets: list[int]


class AdminStats:
    def __init__(
        self,
        *,
        node_id: str,
        storage_backend: str,
        sessions: SessionRegistry,
        metrics: Metrics,
        admin: AdminService,
        cluster: Cluster | None,
    ) -> None:
        self._node_id = node_id
        self._cluster = cluster
        self._backend = storage_backend
        self._sessions = sessions
        self._metrics = metrics
        self._admin = admin
        self._started = time.monotonic()
        self._joined_at = now_ms()
        self._samples: deque[_Sample] = deque(maxlen=WINDOW + 1)
        self.sample()

    def sample(self) -> None:
        _, counts = self._metrics.delivery_buckets()
        self._samples.append(_Sample(time.monotonic(), self._metrics.messages_accepted(), counts))

    async def run(self, interval: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval)
            self.sample()

    async def snapshot(self) -> dict[str, Any]:
        totals = await self._admin.counts.totals()
        p50, p99 = self._latencies()
        return {
            "node_id": self._node_id,
            "uptime_s": round(time.monotonic() - self._started, 3),
            "connections": len(self._sessions),
            "users": totals.users,
            "chats": totals.chats,
            "messages_total": totals.messages,
            "messages_per_s": self._rate(),
            "delivery_p50_ms": p50,
            "delivery_p99_ms": p99,
            "push_outbox_depth": self._admin.push_depth(),
            "storage": self._backend,
            "nodes": self.nodes(),
        }

    def nodes(self) -> list[dict[str, Any]]:
        """Every node of the cluster as gossip sees it; a node alone has no cluster address."""
        if self._cluster is not None:
            return self._cluster.describe(len(self._sessions))["nodes"]
        return [
            {
                "node_id": self._node_id,
                "address": None,
                "status": "alive",
                "connections": len(self._sessions),
                "joined_at": format_ts(self._joined_at),
            }
        ]

    def _window(self) -> tuple[_Sample, _Sample]:
        now = _Sample(
            time.monotonic(), self._metrics.messages_accepted(), self._metrics.delivery_buckets()[1]
        )
        return self._samples[0], now

    def _rate(self) -> float:
        first, last = self._window()
        elapsed = last.at - first.at
        return round((last.messages - first.messages) / elapsed, 2) if elapsed > 0 else 0.0

    def _latencies(self) -> tuple[float | None, float | None]:
        """p50 and p99 (ms) of the window's deliveries: the upper bound of the
        histogram bucket holding the quantile; None when nothing was delivered."""
        first, last = self._window()
        bounds, _ = self._metrics.delivery_buckets()
        deltas = [b - a for a, b in zip(first.buckets, last.buckets, strict=True)]
        total = sum(deltas)
        if total <= 0:
            return None, None

        def quantile(q: float) -> float:
            running = 0
            for i, count in enumerate(deltas):
                running += count
                if running >= q * total:
                    return round(bounds[min(i, len(bounds) - 1)] * 1000, 3)
            return round(bounds[-1] * 1000, 3)

        return quantile(0.5), quantile(0.99)
