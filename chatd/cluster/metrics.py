"""Per-peer link metrics and the routing tables' sizes, read when scraped."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from chatd.cluster.node import ClusterNode
from chatd.cluster.presence import ClusterPresence
from chatd.cluster.router import ClusterRouter


class ClusterCollector(Collector):
    def __init__(
        self, node: ClusterNode, presence: ClusterPresence, router: ClusterRouter | None = None
    ) -> None:
        self._node = node
        self._presence = presence
        self._router = router

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        up = GaugeMetricFamily(
            "chatd_cluster_peer_up", "1 while the link to the peer is connected", labels=["peer"]
        )
        rtt = GaugeMetricFamily(
            "chatd_cluster_peer_rtt_seconds", "Last ping round trip on the link", labels=["peer"]
        )
        queue = GaugeMetricFamily(
            "chatd_cluster_peer_queue_frames",
            "Frames queued for the peer or sent and not yet acknowledged",
            labels=["peer"],
        )
        dropped = CounterMetricFamily(
            "chatd_cluster_peer_dropped_frames",
            "Event frames dropped because the peer's queue was full",
            labels=["peer"],
        )
        sent = CounterMetricFamily(
            "chatd_cluster_peer_sent_frames", "Frames written to the peer", labels=["peer"]
        )
        for peer in self._node.peers():
            label = [peer["node_id"]]
            up.add_metric(label, 1.0 if peer["state"] == "up" else 0.0)
            if peer["rtt_ms"] is not None:
                rtt.add_metric(label, peer["rtt_ms"] / 1000)
            queue.add_metric(label, peer["queue"])
            dropped.add_metric(label, peer["dropped"])
            sent.add_metric(label, peer["sent"])
        yield from (up, rtt, queue, dropped, sent)
        if self._router is not None:
            yield CounterMetricFamily(
                "chatd_cluster_seq_gaps",
                "Chat events that skipped a seq here (two owners, or one lost): not "
                "delivered, their users' sockets reset to resync",
                value=self._router.gaps,
            )
        stats = self._presence.stats()
        yield GaugeMetricFamily(
            "chatd_cluster_homed_users",
            "Online users whose home is this node (the directory held here)",
            value=stats["homed_users"],
        )
        yield GaugeMetricFamily(
            "chatd_cluster_mirrored_users",
            "Online users anywhere in the cluster, as mirrored on this node",
            value=stats["mirrored_users"],
        )
