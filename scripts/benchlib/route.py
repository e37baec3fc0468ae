"""The ``route`` workload: the cluster's routing alone, no storage, no clients.

Three cluster nodes in this process, each with its own sealed links port on
loopback, on the tests' fixed membership (``tests/cluster/fixed_membership.py``
stands in for gossip). Events are published on the first node for a user homed
on the second whose device is connected on the third: two link hops (owner ->
home -> node), each frame sealed, written, read, opened and decoded. First one
event at a time (the next once the previous arrived: the latency of the hops),
then ``--route-batch`` at a time (the throughput: about the CPU a frame costs,
all three nodes sharing this one process). Every event must arrive once and in
publish order.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from typing import Any

from benchlib.common import ROOT, own_cpu_seconds, percentiles
from benchlib.integrity import Stream, Tally


class Stamping:
    """The third node's sockets: record when each event arrived, and its number."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self.stream = Stream()
        self.wanted = 0
        self.arrived = asyncio.Event()

    def deliver(self, user_ids: Any, event: Any, skip_device: Any) -> None:
        self.samples.append(time.perf_counter() - event.data["t"])
        self.stream.add(event.data["n"])
        if len(self.samples) >= self.wanted:
            self.arrived.set()


async def _run(events: int, batch: int) -> dict[str, Any]:
    # The cluster code and the test membership load only for this workload.
    import sys

    sys.path.insert(0, str(ROOT))
    from chatd.cluster.seal import Keyring, Sealer
    from chatd.cluster.streams import StreamServer
    from chatd.cluster.wiring import build_cluster
    from chatd.core.events import Event
    from tests.cluster.fixed_membership import FixedCluster

    key = os.urandom(32)
    cluster = FixedCluster()
    stamping = Stamping()
    nodes, servers = [], []
    try:
        for i in range(3):
            links = StreamServer(Sealer(Keyring((key,))))
            await links.start("127.0.0.1", 0)
            servers.append(links)
            parts = build_cluster(cluster.view(f"node-{i}"), Sealer(Keyring((key,))), links)
            parts.router.attach(f"node-{i}", stamping, lambda _inv: None)
            cluster.add(f"node-{i}", f"127.0.0.1:{links.port}")
            nodes.append(parts)
        ring = nodes[0].node.ring
        user = next(f"u{i}" for i in range(10_000) if ring(f"u{i}") == "node-1")
        nodes[2].presence.connected(user, "device")
        for _ in range(100):  # the registration reaches the home
            if nodes[0].presence.is_online(user):
                break
            await asyncio.sleep(0.05)
        cpu0, started, n = own_cpu_seconds(), time.perf_counter(), 0
        while n < events:
            stamping.wanted = n + batch
            stamping.arrived.clear()
            for _ in range(batch):
                n += 1
                event = Event("typing_indicator", {"t": time.perf_counter(), "n": n})
                nodes[0].router.publish([user], event)
            await asyncio.wait_for(stamping.arrived.wait(), 30)
        elapsed = time.perf_counter() - started
        cpu = own_cpu_seconds() - cpu0
    finally:
        for parts in nodes:
            await parts.close()
        for links in servers:
            await links.close()
    tally = Tally()
    tally.add(stamping.stream, range(1, events + 1), "the routed device")
    return {
        "events": len(stamping.samples),
        "events_per_s": round(len(stamping.samples) / elapsed),
        "cpu_us_per_event": round(1e6 * cpu / max(1, len(stamping.samples)), 1),
        **{k: round(v, 2) for k, v in percentiles(stamping.samples).items()},
        "problems": tally.problems("events"),
    }


async def route(url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Runs without a server (``url`` is unused): see the module's docstring."""
    one = await _run(args.route_events // 10, 1)
    batched = await _run(args.route_events, args.route_batch)
    return {
        "workload": "route",
        "hops": 2,
        "one_at_a_time": {k: v for k, v in one.items() if k != "problems"},
        "batch": args.route_batch,
        "batched": {k: v for k, v in batched.items() if k != "problems"},
        "problems": one["problems"] + batched["problems"],
    }
