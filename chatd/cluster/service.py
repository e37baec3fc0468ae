"""The cluster side of one server: key, sealed streams, gossip, metrics.

``Cluster.from_config`` builds it without opening anything (the app wires
routing on it first); ``start`` listens on ``[cluster] bind``, joins through
the seeds and keeps this node's meta (``connections``, ``load``) fresh;
``stop`` leaves the cluster and closes the port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from chatd.cluster.gossip.base import Timings
from chatd.cluster.gossip.runtime import Gossip
from chatd.cluster.gossip.transport import split_address
from chatd.cluster.membership import Member
from chatd.cluster.seal import BadKey, Keyring, Sealer
from chatd.cluster.streams import StreamServer
from chatd.config import ClusterConfig, ConfigError
from chatd.core.ids import format_ts

log = logging.getLogger(__name__)

STATUSES = ("alive", "suspect", "dead", "left")
_RTT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1)


def timings_of(c: ClusterConfig) -> Timings:
    return Timings(
        probe_interval_s=c.probe_interval_s,
        probe_timeout_s=c.probe_timeout_s,
        indirect_checks=c.indirect_checks,
        suspicion_mult=c.suspicion_mult,
        suspicion_max_timeout_mult=c.suspicion_max_timeout_mult,
        retransmit_mult=c.retransmit_mult,
        gossip_interval_s=c.gossip_interval_s,
        gossip_nodes=c.gossip_nodes,
        push_pull_interval_s=c.push_pull_interval_s,
        dead_forget_s=c.dead_forget_s,
    )


class Cluster:
    def __init__(
        self,
        node_id: str,
        keyring: Keyring,
        *,
        bind: str,
        advertise: str = "",
        seeds: list[str] | None = None,
        timings: Timings | None = None,
        meta_refresh_s: float = 2.0,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.node_id = node_id
        self.bind = bind
        self.sealer = Sealer(keyring)
        #: Node-to-node TCP streams on the cluster port; routing registers its kinds here.
        self.streams = StreamServer(self.sealer)
        self._rtt: Histogram | None = None
        if registry is not None:
            self._rtt = Histogram(
                "chatd_cluster_probe_rtt_seconds",
                "Round trip of gossip probes answered, by peer",
                ["peer"],
                buckets=_RTT_BUCKETS,
                registry=registry,
            )
        self.membership = Gossip(
            node_id,
            advertise or bind,
            self.sealer,
            self.streams,
            timings=timings,
            seeds=seeds or [],
            on_rtt=self._observe_rtt,
        )
        if registry is not None:
            registry.register(_ClusterCollector(self))
        self._meta_refresh_s = meta_refresh_s
        self._refresh: asyncio.Task[None] | None = None

    @classmethod
    def from_config(
        cls, c: ClusterConfig, node_id: str, registry: CollectorRegistry | None = None
    ) -> Cluster:
        try:
            keyring = Keyring.from_files(
                Path(c.secret_file).expanduser(),
                [Path(p).expanduser() for p in c.previous_secret_files],
            )
        except BadKey as exc:
            raise ConfigError(f"[cluster] secret_file: {exc}") from None
        return cls(
            node_id,
            keyring,
            bind=c.bind,
            advertise=c.advertise,
            seeds=list(c.seeds),
            timings=timings_of(c),
            meta_refresh_s=c.meta_refresh_s,
            registry=registry,
        )

    def _observe_rtt(self, peer: str, seconds: float) -> None:
        if self._rtt is not None:
            self._rtt.labels(peer).observe(seconds)

    @property
    def dropped(self) -> Counter[str]:
        """Packets and frames refused, by reason: the seal's and the codec's."""
        return self.sealer.dropped + self.membership.node.dropped

    def describe(self, connections: int) -> dict[str, Any]:
        """``GET /cluster``: every node known; ``left`` shows as ``dead`` (the
        contract's three states), this node's connections counted now."""
        nodes = []
        for m in sorted(self.membership.members(), key=lambda m: m.node_id):
            own = m.node_id == self.node_id
            nodes.append(
                {
                    "node_id": m.node_id,
                    "address": m.address,
                    "status": "dead" if m.status == "left" else m.status,
                    "connections": connections if own else int(m.meta.get("connections", 0)),
                    "joined_at": format_ts(m.joined_at_ms),
                }
            )
        return {"node_id": self.node_id, "nodes": nodes}

    def nodes_alive(self) -> int:
        return sum(1 for m in self.membership.members() if m.status == "alive")

    async def start(self, meta: Callable[[], Mapping[str, Any]] | None = None) -> None:
        host, port = split_address(self.bind)
        await self.streams.start(host, port)
        try:
            if meta is not None:
                self.membership.set_meta(meta())
            await self.membership.start(host, self.streams.port)
        except BaseException:
            await self.streams.close()
            raise
        if meta is not None:
            self._refresh = asyncio.create_task(self._keep_meta(meta), name="cluster-meta")
        log.info("cluster node %s on %s", self.node_id, self.membership.address)

    async def _keep_meta(self, meta: Callable[[], Mapping[str, Any]]) -> None:
        while True:
            await asyncio.sleep(self._meta_refresh_s)
            try:
                self.membership.set_meta(meta())
            except Exception:
                log.exception("refreshing this node's cluster meta failed")

    async def stop(self) -> None:
        if self._refresh is not None:
            self._refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh
        await self.membership.stop()
        await self.streams.close()


def load_meta(connections: Callable[[], int]) -> Callable[[], dict[str, Any]]:
    """This node's meta: open connections and the 1-minute load average per core."""

    def meta() -> dict[str, Any]:
        try:
            load = os.getloadavg()[0] / (os.cpu_count() or 1)
        except OSError:
            load = 0.0
        return {"connections": connections(), "load": round(load, 2)}

    return meta


class _ClusterCollector(Collector):
    """Membership and drops, read when scraped."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        dropped = CounterMetricFamily(
            "chatd_cluster_dropped",
            "Cluster packets and frames dropped: bad key or tag, stale, replayed, malformed",
            labels=["reason"],
        )
        for reason, count in sorted(self._cluster.dropped.items()):
            dropped.add_metric([reason], count)
        yield dropped
        members = self._cluster.membership.members()
        by_status = GaugeMetricFamily(
            "chatd_cluster_members", "Nodes known to this one, by status", labels=["status"]
        )
        counts = Counter(m.status for m in members)
        for status in STATUSES:
            by_status.add_metric([status], counts[status])
        yield by_status
        peers = GaugeMetricFamily(
            "chatd_cluster_peer_state",
            "1 for the status each peer is in, as this node sees it",
            labels=["peer", "status"],
        )
        for member in _peers(members, self._cluster.node_id):
            for status in STATUSES:
                peers.add_metric([member.node_id, status], int(member.status == status))
        yield peers


def _peers(members: list[Member], node_id: str) -> list[Member]:
    return [m for m in members if m.node_id != node_id]
