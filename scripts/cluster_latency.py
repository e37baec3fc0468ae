#!/usr/bin/env python3
"""Cross-node delivery latency of in-process cluster nodes (until bench.py drives
real nodes): N app instances in this process on one SQLite file, each a cluster
node with its own links port, on a fixed test membership (tests/cluster).

    .venv/bin/python scripts/cluster_latency.py --nodes 3
    .venv/bin/python scripts/cluster_latency.py --nodes 1     # the same harness, one node
    .venv/bin/python scripts/cluster_latency.py --nodes 3 --scylla 127.0.0.1:9042
        # real ``chatd serve`` processes clustered by gossip on one fresh keyspace

pairs: P sender/receiver pairs, the receiver on the next node (so every message
crosses nodes when N > 1), one message in flight per sender. group: one group of
M members spread over the nodes, S senders on different nodes, one in flight
each. Latency: from the send to the receiver's frame, on this process's clock.
Everything (servers and clients) shares this one event loop: figures include
the clients' own cost and compare the harness with 1 and N nodes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from chatd.core.events import Event

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from benchlib.common import Server, free_port, percentiles, rounded  # noqa: E402

from chatd.app import build_app  # noqa: E402
from chatd.client import ChatdClient  # noqa: E402
from chatd.cluster.seal import Keyring, Sealer  # noqa: E402
from chatd.cluster.streams import StreamServer  # noqa: E402
from chatd.cluster.wiring import build_cluster  # noqa: E402
from chatd.config import from_dict  # noqa: E402
from tests.cluster.fixed_membership import FixedCluster  # noqa: E402

PASSWORD = "bench password"
CLIENTS: list[ChatdClient] = []
LIFTED = {
    "limits": {
        "messages_per_second": 1_000_000,
        "registrations_per_address_per_hour": 0,
        "login_attempts_per_address_per_minute": 1_000_000,
        "login_attempts_per_username_per_minute": 1_000_000,
        "password_hash_queue": 10_000,
        "groups_created_per_hour": 0,
    },
    "auth": {"argon2_time_cost": 1, "argon2_memory_kib": 256, "argon2_parallelism": 1},
}


async def start(n: int, data: Path) -> tuple[list[str], list[Any]]:
    key = os.urandom(32)
    cluster = FixedCluster()
    urls, keep = [], []
    for i in range(n):
        node_id = f"node-{i}"
        links = StreamServer(Sealer(Keyring((key,))))
        await links.start("127.0.0.1", 0)
        parts = build_cluster(cluster.view(node_id), Sealer(Keyring((key,))), links)
        config = from_dict({**LIFTED, "server": {"data_dir": str(data), "node_id": node_id}})
        server = TestServer(build_app(config, cluster=parts), host="127.0.0.1")
        await server.start_server()
        urls.append(str(server.make_url("")).rstrip("/"))
        cluster.add(node_id, f"127.0.0.1:{links.port}")
        keep += [server, links]
    return urls, keep


async def users(urls: list[str], count: int, tag: str, offset: int = 0) -> list[ChatdClient]:
    made = []
    for i in range(count):
        client = ChatdClient(urls[(i + offset) % len(urls)])
        await client.register(f"{tag}user{i}", PASSWORD)
        await client.login(f"{tag}user{i}", PASSWORD)
        made.append(client)
    CLIENTS.extend(made)
    return made


async def pairs(urls: list[str], count: int, messages: int) -> dict[str, Any]:
    senders = await users(urls, count, "s")
    receivers = await users(urls, count, "r", offset=1)  # the next node
    sent_at: dict[str, float] = {}
    samples: list[float] = []
    done = asyncio.Event()

    def on_frame(frame: dict[str, Any]) -> None:
        if frame["type"] == "new_message":
            samples.append(time.perf_counter() - sent_at[frame["data"]["client_msg_id"]])
            if len(samples) == count * messages:
                done.set()

    sockets = [await r.connect(on_event=on_frame).open() for r in receivers]
    out = [await s.connect().open() for s in senders]
    chats = [
        (await s.open_direct(r.user_id))["chat_id"] for s, r in zip(senders, receivers, strict=True)
    ]

    async def sender(k: int) -> None:
        for m in range(messages):
            cid = f"{k}-{m}"
            sent_at[cid] = time.perf_counter()
            await out[k].send_message(chat_id=chats[k], content="x" * 64, client_msg_id=cid)

    started = time.perf_counter()
    await asyncio.gather(*(sender(k) for k in range(count)))
    await asyncio.wait_for(done.wait(), 60)
    elapsed = time.perf_counter() - started
    for ws in sockets + out:
        await ws.close()
    return {"messages": len(samples), "msgs_per_s": len(samples) / elapsed, **percentiles(samples)}


async def group(urls: list[str], members: int, senders: int, messages: int) -> dict[str, Any]:
    people = await users(urls, members, "g")
    chat_id = (await people[0].create_group("bench", [p.user_id for p in people[1:]]))["group_id"]
    sent_at: dict[str, float] = {}
    samples: list[float] = []
    expected = senders * messages * (members - 1)
    done = asyncio.Event()

    def on_frame(frame: dict[str, Any]) -> None:
        if frame["type"] == "new_message" and frame["data"]["type"] == "text":
            samples.append(time.perf_counter() - sent_at[frame["data"]["client_msg_id"]])
            if len(samples) == expected:
                done.set()

    sockets = [await p.connect(on_event=on_frame).open() for p in people]

    async def sender(k: int) -> None:  # members 0..senders-1 sit on different nodes
        for m in range(messages):
            cid = f"{k}-{m}"
            sent_at[cid] = time.perf_counter()
            await sockets[k].send_message(chat_id=chat_id, content="x" * 64, client_msg_id=cid)

    started = time.perf_counter()
    await asyncio.gather(*(sender(k) for k in range(senders)))
    await asyncio.wait_for(done.wait(), 120)
    elapsed = time.perf_counter() - started
    for ws in sockets:
        await ws.close()
    return {"deliveries": len(samples), "per_s": len(samples) / elapsed, **percentiles(samples)}


class Stamping:
    """A node's sockets that record how long each event took to reach them."""

    def __init__(self, samples: list[float]) -> None:
        self.samples = samples
        self.wanted = 0
        self.arrived = asyncio.Event()

    def deliver(self, user_ids: Any, event: Any, skip_device: Any) -> None:
        self.samples.append(time.perf_counter() - event.data["t"])
        if len(self.samples) >= self.wanted:
            self.arrived.set()


async def route(events: int, batch: int) -> dict[str, Any]:
    """The routing alone, no storage and no clients: events published on node 0 for
    a user homed on node 1 whose device is on node 2 (two link hops), ``batch`` at
    a time, the next batch once the previous one arrived."""
    key = os.urandom(32)
    cluster = FixedCluster()
    samples: list[float] = []
    stamping = Stamping(samples)
    nodes, servers = [], []
    for i in range(3):
        links = StreamServer(Sealer(Keyring((key,))))
        await links.start("127.0.0.1", 0)
        parts = build_cluster(cluster.view(f"node-{i}"), Sealer(Keyring((key,))), links)
        parts.router.attach(f"node-{i}", stamping, lambda _inv: None)
        cluster.add(f"node-{i}", f"127.0.0.1:{links.port}")
        nodes.append(parts)
        servers.append(links)
    ring = nodes[0].node.ring
    user = next(f"u{i}" for i in range(10_000) if ring(f"u{i}") == "node-1")
    nodes[2].presence.connected(user, "device")
    await asyncio.sleep(0.5)  # the registration reaches the home
    assert nodes[0].presence.is_online(user)
    started = time.perf_counter()
    for n in range(0, events, batch):
        stamping.wanted = n + batch
        stamping.arrived.clear()
        for _ in range(batch):
            nodes[0].router.publish([user], Event("typing_indicator", {"t": time.perf_counter()}))
        await stamping.arrived.wait()
    elapsed = time.perf_counter() - started
    for parts, links in zip(nodes, servers, strict=True):
        await parts.close()
        await links.close()
    return {"events": len(samples), "per_s": len(samples) / elapsed, **percentiles(samples)}


async def processes(n: int, scylla: str) -> tuple[list[str], list[Server]]:
    """``n`` real nodes on one fresh keyspace, clustered by gossip when ``n > 1``."""
    key = Path(tempfile.mkdtemp(prefix="chatd-cluster-key-")) / "cluster.key"
    key.write_text(os.urandom(32).hex() + "\n")
    ports = [free_port() for _ in range(n)]
    servers = []
    shared = None
    for i, port in enumerate(ports):
        seeds = f'["127.0.0.1:{ports[0]}"]' if i else "[]"
        extra = (
            f'[cluster]\nenabled = true\nbind = "127.0.0.1:{port}"\nseeds = {seeds}\n'
            f'secret_file = "{key}"\n'
            if n > 1
            else ""
        )
        server = Server("full", scylla=scylla, extra=extra)
        config = server.dir / "chatd.toml"
        shared = shared or server.keyspace
        config.write_text(config.read_text().replace(server.keyspace, shared))
        server.keyspace = shared
        servers.append(server)
    for server in servers:
        await server.__aenter__()
    if n > 1:  # until every node sees the others
        async with ClientSession() as http:
            for _ in range(300):
                alive = []
                for server in servers:
                    async with http.get(server.url + "/api/v1/health") as r:
                        alive.append((await r.json()).get("cluster", {}).get("nodes_alive"))
                if alive == [n] * n:
                    break
                await asyncio.sleep(0.1)
    return [s.url for s in servers], servers


async def main(args: argparse.Namespace) -> None:
    if args.scylla:
        urls, servers = await processes(args.nodes, args.scylla)
        try:
            result = {
                "nodes": args.nodes,
                "storage": f"scylla ({args.scylla}), real processes",
                "pairs": rounded(await pairs(urls, args.pairs, args.messages)),
                "group": rounded(await group(urls, args.members, args.senders, args.messages)),
            }
            print(json.dumps(result, indent=1))
        finally:
            for client in CLIENTS:
                await client.aclose()
            for server in servers[1:]:  # the keyspace is dropped with the first one, last
                server.scylla = None
                await server.__aexit__()
            await servers[0].__aexit__()
        return
    if args.route:
        result = {
            "route_one_at_a_time": rounded(await route(args.messages * 20, 1)),
            "route_batches_of_100": rounded(await route(args.messages * 200, 100)),
        }
        print(json.dumps(result, indent=1))
        return
    with tempfile.TemporaryDirectory() as tmp:
        urls, keep = await start(args.nodes, Path(tmp))
        try:
            result = {
                "nodes": args.nodes,
                "pairs": rounded(await pairs(urls, args.pairs, args.messages)),
                "group": rounded(await group(urls, args.members, args.senders, args.messages)),
            }
            print(json.dumps(result, indent=1))
        finally:
            for client in CLIENTS:
                await client.aclose()
            for item in reversed(keep):
                await item.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=30)
    parser.add_argument("--members", type=int, default=64)
    parser.add_argument("--senders", type=int, default=3)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--route", action="store_true", help="the routing alone (3 nodes)")
    parser.add_argument("--scylla", help="host:port: real processes on a fresh keyspace there")
    uvloop.run(main(parser.parse_args()))
