"""One node's cluster parts, built from a membership, a sealer and a stream server.

``app.py`` builds these when ``[cluster] enabled`` and passes ``router``,
``presence`` and ``owners`` to ``build_services``; tests build several in one
process (one per app instance) on a test membership.
"""

from __future__ import annotations

from dataclasses import dataclass

from chatd.cluster.links import LinkLimits
from chatd.cluster.membership import Membership
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

    async def close(self) -> None:
        await self.node.close()


def build_cluster(
    membership: Membership,
    sealer: Sealer,
    server: StreamServer,
    *,
    limits: LinkLimits | None = None,
    call_timeout_s: float = 10.0,
) -> ClusterParts:
    node = ClusterNode(membership, sealer, server, limits=limits, call_timeout_s=call_timeout_s)
    presence = ClusterPresence(node)
    router = ClusterRouter(node, presence)
    return ClusterParts(node, router, presence, ClusterOwners(node))
