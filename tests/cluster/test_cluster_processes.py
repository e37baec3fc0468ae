"""Three real ``chatd serve`` processes on one ScyllaDB keyspace form a cluster
through seeds, and see a node killed with -9 go suspect, then dead, within the
contract's defaults (5 s and 15 s)."""

from __future__ import annotations

import asyncio
import os
import subprocess

import pytest

from chatd.client import ChatdClient
from tests.cluster.processes import CHATD, admin_token, cluster_key, node_process, statuses
from tests.subprocess_server import free_port


@pytest.fixture
async def cluster(tmp_path, server_overrides, server_storage):
    if server_storage != "scylla":
        pytest.skip("a cluster shares a ScyllaDB keyspace, not an SQLite file")
    key = cluster_key(tmp_path)
    ports = [free_port() for _ in range(3)]
    seed = f"127.0.0.1:{ports[0]}"
    servers = [
        node_process(
            tmp_path, server_overrides, f"node-{i}", bind=port, seed=seed if i else None, key=key
        )
        for i, port in enumerate(ports)
    ]
    yield servers, [f"127.0.0.1:{p}" for p in ports]
    for server in servers:
        server.stop()


async def test_three_processes_cluster_and_see_a_killed_one_suspect_then_dead(cluster):
    nodes, binds = cluster
    for server in nodes:
        await server.start()
    token = await admin_token(nodes[0])
    everyone = {"node-0": "alive", "node-1": "alive", "node-2": "alive"}
    clients = [ChatdClient(s.url, token=token) for s in nodes]
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while not all([statuses(await c.cluster()) == everyone for c in clients]):
            assert loop.time() < deadline, [await c.cluster() for c in clients]
            await asyncio.sleep(0.1)
        answer = await clients[0].cluster()
        assert answer["node_id"] == "node-0"
        assert {n["address"] for n in answer["nodes"]} == set(binds)
        assert (await clients[1].health())["cluster"] == {"nodes_alive": 3}

        shown = subprocess.run(
            [*CHATD, "cluster", "status", "--url", nodes[2].url],
            env={**os.environ, "CHATD_TOKEN": token},
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.count(" alive ") == 3 and "answered by node-2" in shown.stdout

        nodes[2].kill()  # SIGKILL: no goodbye
        killed = loop.time()
        seen: dict[str, float] = {}
        while "dead" not in seen:
            status = statuses(await clients[0].cluster())["node-2"]
            seen.setdefault(status, loop.time() - killed)
            assert loop.time() - killed < 20, seen
            await asyncio.sleep(0.1)
        assert seen["suspect"] <= 5.0 and seen["dead"] <= 15.0, seen
        assert (await clients[1].health())["cluster"] == {"nodes_alive": 2}
        metrics = await clients[0].metrics()
        assert 'chatd_cluster_peer_state{peer="node-2",status="dead"} 1.0' in metrics
        assert "chatd_cluster_probe_rtt_seconds_bucket" in metrics
    finally:
        for client in clients:
            await client.aclose()
