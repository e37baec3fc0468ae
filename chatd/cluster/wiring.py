"""One node's cluster parts, built from a membership, a sealer and a stream server.

``app.py`` builds these when ``[cluster] enabled`` and passes ``router``,
``presence`` and ``owners`` to ``build_services``; tests build several in one
process (one per app instance) on a test membership.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from chatd.cluster.links import LinkLimits
from chatd.cluster.membership import Membership
from chatd.cluster.metrics import ClusterCollector
from chatd.cluster.node import ClusterNode
from chatd.cluster.owners import ClusterOwners
from chatd.cluster.presence import ClusterPresence
from chatd.cluster.router import ClusterRouter
from chatd.cluster.seal import Sealer
from chatd.cluster.streams import StreamServer


@dataclass
class ClusterParts:
    node: ClusterNode
    router: ClusterRouter
    presence: ClusterPresence
    owners: ClusterOwners
    #: What clients reach this node at (``[cluster] public_url``), shared with peers
    #: through gossip metadata for their draining clients.
    public_url: str = ""

    def with_url(self, meta: Callable[[], Mapping[str, Any]]) -> Callable[[], Mapping[str, Any]]:
        """``meta`` plus this node's ``url`` (when configured)."""
        if not self.public_url:
            return meta
        return lambda: {**meta(), "url": self.public_url}

    def register_metrics(self, registry: CollectorRegistry) -> None:
        """Per-peer rtt, queue depth, drops and state in the app's ``/metrics``."""
        registry.register(ClusterCollector(self.node, self.presence, self.router))

    def start(self) -> None:
        """Follow the membership: links, owners and homes (inside the running loop)."""
        self.node.start()

    def reconnect_url(self) -> str | None:
        """Where this node's clients may reconnect while it drains: another alive
        node's public URL (its ``url`` metadata), the least loaded of a random two."""
        me = self.node.node_id
        urls = [
            (int(m.meta.get("connections", 0) or 0), str(m.meta["url"]))
            for m in self.node.membership.alive()
            if m.node_id != me and m.status == "alive" and m.meta.get("url")
        ]
        if not urls:
            return None
        return min(random.sample(urls, min(2, len(urls))))[1]

    async def close(self) -> None:
        """Answer the forwarded writes being served, send what is queued, then stop."""
        await self.node.close()


def build_cluster(
    membership: Membership,
    sealer: Sealer,
    server: StreamServer,
    *,
    limits: LinkLimits | None = None,
    call_timeout_s: float = 10.0,
    public_url: str = "",
) -> ClusterParts:
    node = ClusterNode(membership, sealer, server, limits=limits, call_timeout_s=call_timeout_s)
    presence = ClusterPresence(node)
    router = ClusterRouter(node, presence)
    return ClusterParts(node, router, presence, ClusterOwners(node), public_url)
