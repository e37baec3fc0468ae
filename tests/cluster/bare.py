"""Cluster nodes without apps: routers and presence over real links on loopback,
their sockets a ``RecordingSockets``, on a ``FixedCluster`` (test helpers)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass

from chatd.cluster.links import LinkLimits
from chatd.cluster.seal import Keyring, Sealer
from chatd.cluster.streams import StreamServer
from chatd.cluster.wiring import ClusterParts, build_cluster
from tests.cluster.fixed_membership import FixedCluster
from tests.ports.conftest import RecordingSockets


@dataclass
class BareNode:
    node_id: str
    parts: ClusterParts
    links: StreamServer
    sockets: RecordingSockets


KEY = os.urandom(32)


async def bare_cluster(
    count: int = 3, *, limits: LinkLimits | None = None, call_timeout_s: float = 10.0
) -> tuple[FixedCluster, list[BareNode]]:
    cluster = FixedCluster()
    nodes = []
    for i in range(count):
        nodes.append(await join_bare(cluster, f"node-{'abcdefgh'[i]}", limits, call_timeout_s))
    return cluster, nodes


async def join_bare(
    cluster: FixedCluster,
    node_id: str,
    limits: LinkLimits | None = None,
    call_timeout_s: float = 10.0,
) -> BareNode:
    """A new node, started and joined to ``cluster``."""
    links = StreamServer(Sealer(Keyring((KEY,))))
    await links.start("127.0.0.1", 0)
    parts = build_cluster(
        cluster.view(node_id),
        Sealer(Keyring((KEY,))),
        links,
        limits=limits,
        call_timeout_s=call_timeout_s,
    )
    sockets = RecordingSockets()
    parts.router.attach(node_id, sockets, sockets.apply)
    cluster.add(node_id, f"127.0.0.1:{links.port}")
    return BareNode(node_id, parts, links, sockets)


async def stop_bare(nodes: list[BareNode]) -> None:
    for node in nodes:
        await node.parts.close()
        await node.links.close()


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``check()`` holds (the network is asynchronous), or fail."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def user_homed_on(nodes: list[BareNode], node_id: str, prefix: str = "user") -> str:
    ring = nodes[0].parts.node.ring
    return next(f"{prefix}{i}" for i in range(10_000) if ring(f"{prefix}{i}") == node_id)
