"""Several app instances in one process, each a cluster node on its own links port,
on one store (one SQLite file, or one Cassandra keyspace), on a ``FixedCluster``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chatd.app import build_app
from chatd.cluster.links import LinkLimits
from chatd.cluster.seal import Keyring, Sealer
from chatd.cluster.streams import StreamServer
from chatd.cluster.wiring import ClusterParts, build_cluster
from tests.cluster.fixed_membership import FixedCluster
from tests.conftest import merge, test_config


@dataclass
class Node:
    node_id: str
    url: str
    parts: ClusterParts
    links: StreamServer
    app: Any
    server: Any


async def start_nodes(
    aiohttp_server: Any,
    data_dir: Path,
    overrides: dict[str, Any],
    count: int = 3,
    *,
    limits: LinkLimits | None = None,
    call_timeout_s: float = 10.0,
) -> tuple[FixedCluster, list[Node]]:
    key = os.urandom(32)
    cluster = FixedCluster()
    nodes: list[Node] = []
    for i in range(count):
        node_id = f"node-{'abcdefgh'[i]}"
        links = StreamServer(Sealer(Keyring((key,))))
        await links.start("127.0.0.1", 0)
        parts = build_cluster(
            cluster.view(node_id),
            Sealer(Keyring((key,))),
            links,
            limits=limits,
            call_timeout_s=call_timeout_s,
        )
        config = test_config(data_dir, merge(overrides, {"server": {"node_id": node_id}}))
        app = build_app(config, cluster=parts)
        server = await aiohttp_server(app)
        url = str(server.make_url("")).rstrip("/")
        nodes.append(Node(node_id, url, parts, links, app, server))
        cluster.add(node_id, f"127.0.0.1:{links.port}")
        cluster.view(node_id).set_meta({"url": url, "connections": 0})
    return cluster, nodes


async def stop_nodes(nodes: list[Node]) -> None:
    for node in nodes:  # the apps close their cluster parts; the links servers stay
        await node.links.close()
