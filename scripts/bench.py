#!/usr/bin/env python3
"""Load generator for chatd: real WebSockets against a real ``chatd serve``.

    .venv/bin/python scripts/bench.py pairs --pairs 10 --window 8 --seconds 10
    .venv/bin/python scripts/bench.py idle --connections 10000
    .venv/bin/python scripts/bench.py all          # every workload, default sizes
    .venv/bin/python scripts/bench.py --quick      # every workload, small sizes (< 1 min)
    .venv/bin/python scripts/bench.py pairs --nodes 3 --scylla 127.0.0.1:9042
    .venv/bin/python scripts/bench.py group --nodes 3 --senders 3 --scylla 127.0.0.1:9042

Starts its own server on loopback with a fresh data directory for each workload
(or uses --url), creates the users it needs, runs the workload for a bounded
time, then prints a table and appends one JSON line to bench-results.jsonl.

A run is only a result if the server did its job: a message lost, duplicated
or delivered out of order, a failed connection or reconnect, a wrong history
page fails the workload with a line ``<workload>: FAILED: <what>`` on stderr,
and the exit status is 1 when any workload failed.

With --nodes N (pairs and group; needs --scylla) it starts N real nodes
clustered by gossip on one fresh keyspace (scripts/benchlib/nodes.py) and
spreads the users over them: each pair's receiver on the node after its
sender's, so every message crosses nodes; group member i, senders included, on
node i mod N.

Workloads (code in scripts/benchlib/):
  pairs      P sender/receiver pairs, W messages in flight per sender
  group      one group of M members, all connected; S senders, W in flight each
  idle       C authenticated idle WebSockets held with pings: server KB per
             connection, setup rate, then delivery latency to a sample of them
  reconnect  N devices with K messages waiting reconnect at once: time until
             each, and every one, has its whole backlog
  history    one chat of M messages: ms per page of 50 at its start, middle and
             end, with before cursors and with after_seq
  route      the cluster routing alone, no server: three nodes in this process,
             events over two sealed link hops, one at a time then in batches
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib.common import (
    ROOT,
    cpu_model,
    raise_fd_limit,
)
from benchlib.history import history
from benchlib.idle import idle
from benchlib.messaging import group, pairs
from benchlib.nodes import Nodes
from benchlib.reconnect import reconnect
from benchlib.route import route

#: The workloads that spread their users over several nodes (--nodes).
MULTI_NODE = {"pairs", "group"}

WORKLOADS = {
    "pairs": pairs,
    "group": group,
    "idle": idle,
    "reconnect": reconnect,
    "history": history,
    "route": route,
}

#: The workloads that start no server.
SERVERLESS = {"route"}

#: option -> (default size, --quick size); an option given on the command line wins.
SIZES: dict[str, tuple[Any, Any]] = {
    "pairs": (10, 10),
    "members": (256, 32),
    "senders": (1, 1),
    "receiver_procs": (1, 1),
    "window": (8, 8),
    "size": (100, 100),
    "seconds": (10.0, 3.0),
    "connections": (1000, 200),
    "sample": (100, 50),
    "devices_per_user": (100, 100),
    "hold": (10.0, 2.0),
    "procs": (0, 0),
    "in_flight": (64, 64),
    "clients": (1000, 50),
    "pending": (10, 5),
    "reconnect_senders": (10, 5),
    "messages": (100_000, 2000),
    "reps": (100, 20),
    "fill_sockets": (4, 4),
    "fill_window": (32, 32),
    "route_events": (20_000, 2000),
    "route_batch": (100, 100),
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("workload", nargs="?", choices=[*WORKLOADS, "all"])
    p.add_argument("--quick", action="store_true", help="small sizes; no workload means all")
    p.add_argument("--url", help="use a running chatd instead of starting one")
    add = p.add_argument
    add("--pairs", type=int, help="pairs: sender/receiver pairs (10)")
    add("--members", type=int, help="group: members (256)")
    add("--senders", type=int, help="group: members sending (1)")
    add(
        "--receiver-procs",
        type=int,
        help="group: processes holding the receivers on raw sockets (1; 0: client library)",
    )
    add("--window", type=int, help="pairs, group: messages in flight per sender (8)")
    add("--size", type=int, help="message size in bytes (100)")
    add("--seconds", type=float, help="pairs, group: measured duration (10)")
    add("--connections", type=int, help="idle: connections C (1000)")
    add("--sample", type=int, help="idle: connections that get a message (100)")
    add("--devices-per-user", type=int, help="idle: logins (devices) per user (100)")
    add("--hold", type=float, help="idle: seconds to hold every connection open (10)")
    add("--procs", type=int, help="idle: load-generator processes (0: one per 25k, <= cores)")
    add("--in-flight", type=int, help="idle: connection handshakes in flight, in all (64)")
    add("--heartbeat-s", type=float, help="the started server's [server] heartbeat_s (30)")
    add("--clients", type=int, help="reconnect: devices N (1000)")
    add("--pending", type=int, help="reconnect: messages K waiting for each (10)")
    add("--reconnect-senders", type=int, help="reconnect: users sending the backlog (10)")
    add("--messages", type=int, help="history: messages M in the chat (100000)")
    add("--reps", type=int, help="history: requests R per page position (100)")
    add("--fill-sockets", type=int, help="history: sockets filling the chat (4)")
    add("--fill-window", type=int, help="history, reconnect: in flight per filling socket (32)")
    add("--route-events", type=int, help="route: events routed in batches (20000; a tenth singly)")
    add("--route-batch", type=int, help="route: events published at a time (100)")
    add(
        "--push",
        action="store_true",
        help="pairs: each receiver also has an offline device with a webhook target "
        "(the server posts to a sink in this process)",
    )
    add("--synchronous", default="FULL", help="SQLite synchronous of the server")
    add(
        "--nodes",
        type=int,
        default=1,
        help="pairs, group: N chatd nodes clustered by gossip, users spread over them "
        "(1; above 1 needs --scylla)",
    )
    add(
        "--scylla",
        metavar="HOST:PORT",
        help="run the started server on ScyllaDB/Cassandra there (a throw-away keyspace)",
    )
    add("--out", default=str(ROOT / "bench-results.jsonl"))
    return p


def sized(args: argparse.Namespace) -> argparse.Namespace:
    """A copy of ``args`` with every size not given filled in (quick or default)."""
    out = argparse.Namespace(**vars(args))
    for key, (default, quick) in SIZES.items():
        if getattr(out, key) is None:
            setattr(out, key, quick if args.quick else default)
    return out


def fds_needed(name: str, args: argparse.Namespace) -> int:
    """File descriptors the busiest process needs (the server holds every socket)."""
    return 256 + {"idle": args.connections, "reconnect": 2 * args.clients}.get(name, 0)


async def run(name: str, args: argparse.Namespace) -> dict[str, Any]:
    workload = WORKLOADS[name]
    if name in SERVERLESS:
        return await workload("", args)
    if args.url:
        args.server_pid = None
        args.server_cpu = lambda: float("nan")  # unknown: reported as null
        args.data_bytes = lambda: -1
        args.urls = [args.url]
        return await workload(args.url, args)
    sink = PushSink() if args.push else None
    extra = await sink.start() if sink else ""
    try:
        return await _run_on_server(workload, args, extra, sink)
    finally:
        if sink:
            await sink.stop()


class PushSink:
    """Where the benchmarked server's webhook posts go: counted, answered 200."""

    def __init__(self) -> None:
        self.posts = 0
        self._runner: Any = None

    async def start(self) -> str:
        from aiohttp import web

        async def take(request: web.Request) -> web.Response:
            await request.read()
            self.posts += 1
            return web.Response(status=204)

        app = web.Application()
        app.router.add_post("/hook", take)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        secret = "bench-secret-0123456789"
        return f'[push.webhook]\nurl = "http://127.0.0.1:{port}/hook"\nsecret = "{secret}"\n'

    async def stop(self) -> None:
        await self._runner.cleanup()


async def _run_on_server(
    workload: Any, args: argparse.Namespace, extra: str, sink: PushSink | None
) -> dict[str, Any]:
    async with Nodes(
        args.nodes, args.synchronous, args.heartbeat_s, scylla=args.scylla, extra=extra
    ) as nodes:
        args.server_pid = nodes.pids[0]
        args.server_cpu = nodes.cpu
        args.node_cpus = nodes.cpus
        args.nodes_rss_kb = nodes.rss_kb
        args.link_frames = nodes.link_frames
        args.data_bytes = lambda: nodes.data_bytes
        args.urls = nodes.urls
        result = await workload(nodes.urls[0], args)
        if args.scylla:
            result["storage"] = f"scylla ({args.scylla})"
        else:
            result["storage"] = "sqlite"
            result["synchronous"] = args.synchronous
        if sink is not None:
            await asyncio.sleep(2.0)  # let the outbox drain
            result["push_webhook_posts"] = sink.posts
        return result


def record(result: dict[str, Any], args: argparse.Namespace) -> None:
    """Print the table and append the JSON line, with where and what it ran on."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    result.update(
        commit=commit,
        python=platform.python_version(),
        cpu=cpu_model(),
        cores=os.cpu_count(),
        at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    )
    if args.quick:
        result["quick"] = True
    width = max(len(k) for k in result)
    for key, value in result.items():
        value = json.dumps(value) if isinstance(value, dict | list) else value
        print(f"{key:<{width}}  {value}")
    with open(args.out, "a") as f:
        f.write(json.dumps(result) + "\n")


def main() -> None:
    p = parser()
    args = p.parse_args()
    if args.workload is None and not args.quick:
        p.error("name a workload, or all, or give --quick")
    names = list(WORKLOADS) if args.workload in (None, "all") else [args.workload]
    if args.nodes > 1 and (set(names) - MULTI_NODE or args.url):
        p.error(f"--nodes runs {' and '.join(sorted(MULTI_NODE))} on started servers only")
    if args.nodes > 1 and not args.scylla:
        p.error("--nodes above 1 needs --scylla: a cluster shares a ScyllaDB keyspace")
    failed: list[str] = []
    started = time.perf_counter()
    for name in names:
        wargs = sized(args)
        if len(names) > 1:
            print(f"\n== {name} ==", flush=True)
        needed = fds_needed(name, wargs)
        limit = raise_fd_limit(needed)
        if limit < needed and not args.url:  # the server would run out half-way
            print(f"{name}: FAILED: not run, the file-descriptor limit is too low", file=sys.stderr)
            failed.append(name)
            continue
        t = time.perf_counter()
        try:
            result = uvloop.run(run(name, wargs))
        except Exception as exc:
            traceback.print_exc()
            took = time.perf_counter() - t
            print(
                f"{name}: FAILED after {took:.1f} s: {type(exc).__name__}: {exc}", file=sys.stderr
            )
            failed.append(name)
            continue
        record(result, args)
        for problem in result["problems"]:
            print(f"{name}: FAILED: {problem}", file=sys.stderr, flush=True)
        if result["problems"]:
            failed.append(name)
    if len(names) > 1:
        print(f"\n{len(names)} workloads in {time.perf_counter() - started:.1f} s", end="")
        print(f"; failed: {', '.join(failed)}" if failed else "")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
