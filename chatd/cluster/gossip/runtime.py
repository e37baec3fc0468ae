"""``Gossip``: the membership of a running server, a ``Node`` on the real network."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from chatd.cluster.gossip.base import Timings
from chatd.cluster.gossip.node import Node
from chatd.cluster.gossip.transport import AsyncioClock, NetTransport, join_address, split_address
from chatd.cluster.membership import Member
from chatd.cluster.seal import Sealer
from chatd.cluster.streams import StreamServer


class Gossip:
    """``Membership`` by SWIM gossip on the cluster port (UDP, and TCP streams
    through ``streams``). Built before the event loop runs, so the rest of the
    server can subscribe; ``start`` binds and joins, ``stop`` leaves."""

    def __init__(
        self,
        node_id: str,
        advertise: str,
        sealer: Sealer,
        streams: StreamServer,
        *,
        timings: Timings | None = None,
        seeds: Sequence[str] = (),
        meta: Mapping[str, Any] | None = None,
        on_rtt: Callable[[str, float], None] = lambda node_id, seconds: None,
    ) -> None:
        self.node_id = node_id
        self._net = NetTransport(sealer, streams)
        self.node = Node(
            node_id,
            advertise,
            self._net,
            AsyncioClock(),
            timings=timings,
            seeds=seeds,
            meta=meta,
            on_rtt=on_rtt,
        )
        self._net.on_datagram = self.node.receive
        self._net.on_push_pull = self.node.answer_push_pull

    @property
    def address(self) -> str:
        return self.node.address

    async def start(self, host: str, port: int) -> None:
        """Listen for datagrams on ``host:port`` (the streams' port) and join the seeds."""
        await self._net.start(host, port)
        adv_host, adv_port = split_address(self.node.address)
        if adv_port == 0:  # a port chosen by the system (tests): advertise it
            self.node.readdress(join_address(adv_host, port))
        self.node.start()

    async def stop(self, *, leave_wait_s: float = 0.5) -> None:
        """Leave (peers see ``left`` at once), let the goodbye spread, and stop."""
        if self.node.running:
            self.node.leave()
            await asyncio.sleep(leave_wait_s)
        self.node.stop()
        await self._net.close()

    # -- Membership ---------------------------------------------------------------

    def members(self) -> list[Member]:
        return self.node.members()

    def alive(self) -> list[Member]:
        return self.node.alive()

    def subscribe(self, on_change: Callable[[Member], None]) -> None:
        self.node.subscribe(on_change)

    def set_meta(self, meta: Mapping[str, Any]) -> None:
        self.node.set_meta(meta)

    def member(self, node_id: str) -> Member | None:
        return self.node.member(node_id)
