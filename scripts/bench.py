#!/usr/bin/env python3
"""Load generator for chatd: real WebSockets against a real ``chatd serve``.

    .venv/bin/python scripts/bench.py pairs --pairs 10 --window 8 --seconds 10

Starts its own server on loopback with a fresh data directory (or uses --url),
creates the users it needs, runs the workload for a bounded time, then prints a
table and appends one JSON line to bench-results.jsonl. Workloads: ``pairs``
(P sender/receiver pairs, W messages in flight per sender) and ``group`` (one
group of M members, all connected; S senders with W messages in flight each).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from chatd.client import ChatdClient

PASSWORD = "bench password"
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def process_cpu_seconds(pid: int) -> float:
    """user+system CPU of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Server:
    """A ``chatd serve`` child on loopback with a throw-away data directory."""

    def __init__(self, synchronous: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="chatd-bench-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (self.dir / "chatd.toml").write_text(
            f'[server]\ndata_dir = "{self.dir / "data"}"\n'
            f'[storage.sqlite]\nsynchronous = "{synchronous}"\n'
            # Cheap password hashing only speeds up creating the bench users.
            "[auth]\nargon2_time_cost = 1\nargon2_memory_kib = 1024\nargon2_parallelism = 1\n"
            "[limits]\nmessages_per_second = 0\nlogin_attempts_per_minute = 100000\n"
            '[log]\nlevel = "warning"\n'
        )
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Server:
        config = str(self.dir / "chatd.toml")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "chatd",
            "serve",
            "--config",
            config,
            "--port",
            str(self.port),
            cwd=ROOT,
        )
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                try:
                    async with http.get(self.url + "/api/v1/health") as r:
                        if r.status == 200:
                            return self
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
        raise RuntimeError("chatd did not start")

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.proc.wait(), 30)
        shutil.rmtree(self.dir, ignore_errors=True)


async def make_users(url: str, http: aiohttp.ClientSession, n: int, tag: str) -> list[ChatdClient]:
    async def one(i: int) -> ChatdClient:
        client = ChatdClient(url, session=http)
        name = f"b{tag}{i}"
        await client.register(name, PASSWORD)
        await client.login(name, PASSWORD)
        return client

    out: list[ChatdClient] = []
    for start in range(0, n, 50):
        out += await asyncio.gather(*(one(i) for i in range(start, min(n, start + 50))))
    return out


def percentiles(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {}
    samples.sort()
    pick = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))]  # noqa: E731
    return {
        "p50_ms": pick(0.50) * 1e3,
        "p95_ms": pick(0.95) * 1e3,
        "p99_ms": pick(0.99) * 1e3,
        "max_ms": samples[-1] * 1e3,
        "mean_ms": statistics.fmean(samples) * 1e3,
    }


async def pairs(url: str, args: argparse.Namespace) -> dict[str, Any]:
    """P senders each keep W messages in flight to their own receiver for a fixed time."""
    tag = str(int(time.time() * 1000) % 10**8)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        senders = await make_users(url, http, args.pairs, tag + "s")
        receivers = await make_users(url, http, args.pairs, tag + "r")
        latencies: list[float] = []
        received = 0
        measuring = False
        payload_pad = "x" * max(0, args.size - 20)

        def on_event(frame: dict[str, Any]) -> None:
            nonlocal received
            if frame["type"] == "new_message" and measuring:
                received += 1
                sent_at = float(frame["data"]["content"].split("|", 1)[0])
                latencies.append(time.perf_counter() - sent_at)

        sockets = []
        for r in receivers:
            sockets.append(await r.connect(on_event=on_event, reconnect=False).open())
        chats = [await s.open_direct(r.user_id) for s, r in zip(senders, receivers, strict=True)]
        send_sockets = [await s.connect(reconnect=False).open() for s in senders]
        stop_at = 0.0

        async def worker(ws: Any, chat_id: str) -> int:
            sent = 0
            while time.perf_counter() < stop_at:
                await ws.send_message(
                    chat_id=chat_id, content=f"{time.perf_counter()}|{payload_pad}"
                )
                sent += 1
            return sent

        # Warm up, then measure a fixed window.
        stop_at = time.perf_counter() + 1.0
        await asyncio.gather(
            *(
                worker(ws, c["chat_id"])
                for ws, c in zip(send_sockets, chats, strict=True)
                for _ in range(args.window)
            )
        )
        await asyncio.sleep(0.5)
        measuring = True
        cpu0, server_cpu0, t0 = own_cpu_seconds(), args.server_cpu(), time.perf_counter()
        stop_at = t0 + args.seconds
        sent = sum(
            await asyncio.gather(
                *(
                    worker(ws, c["chat_id"])
                    for ws, c in zip(send_sockets, chats, strict=True)
                    for _ in range(args.window)
                )
            )
        )
        for _ in range(100):  # let the last deliveries land (bounded)
            if received >= sent:
                break
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - t0
        cpu, server_cpu = own_cpu_seconds() - cpu0, args.server_cpu() - server_cpu0
        for ws in sockets + send_sockets:
            await ws.close()
    return {
        "workload": "pairs",
        "pairs": args.pairs,
        "window": args.window,
        "size": args.size,
        "seconds": round(elapsed, 2),
        "sent": sent,
        "delivered": received,
        "delivered_per_s": round(received / elapsed),
        **{k: round(v, 2) for k, v in percentiles(latencies).items()},
        "loadgen_cpu_pct": round(100 * cpu / elapsed),
        "server_cpu_pct": round(100 * server_cpu / elapsed) if server_cpu >= 0 else None,
    }


async def group(url: str, args: argparse.Namespace) -> dict[str, Any]:
    """One group with every member connected; a few senders keep W messages in flight."""
    tag = str(int(time.time() * 1000) % 10**8)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        members = await make_users(url, http, args.members, tag + "g")
        admin = members[0]
        created = await admin.request(
            "POST",
            "/groups",
            json={"name": "bench", "member_ids": [m.user_id for m in members[1:]]},
        )
        chat_id = created["group_id"]
        latencies: list[float] = []
        received = 0
        pad = "x" * max(0, args.size - 20)

        t0 = float("inf")

        def on_event(frame: dict[str, Any]) -> None:
            nonlocal received
            if frame["type"] != "new_message" or frame["data"]["type"] != "text":
                return
            sent_at = float(frame["data"]["content"].split("|", 1)[0])
            if sent_at >= t0:  # sent in the measured window
                received += 1
                if received % 16 == 0:  # a sample keeps the load generator light
                    latencies.append(time.perf_counter() - sent_at)

        sockets = []
        for start in range(0, len(members), 64):
            sockets += await asyncio.gather(
                *(
                    m.connect(on_event=on_event, reconnect=False).open()
                    for m in members[start : start + 64]
                )
            )
        senders = sockets[: args.senders]
        stop_at = 0.0

        async def worker(ws: Any) -> int:
            sent = 0
            while time.perf_counter() < stop_at:
                await ws.send_message(chat_id=chat_id, content=f"{time.perf_counter()}|{pad}")
                sent += 1
            return sent

        stop_at = time.perf_counter() + 1.0
        await asyncio.gather(*(worker(ws) for ws in senders for _ in range(args.window)))
        await asyncio.sleep(1.0)
        cpu0, server_cpu0, t0 = own_cpu_seconds(), args.server_cpu(), time.perf_counter()
        stop_at = t0 + args.seconds
        sent = sum(
            await asyncio.gather(*(worker(ws) for ws in senders for _ in range(args.window)))
        )
        expected = sent * (args.members - 1)
        for _ in range(200):  # let the last deliveries land (bounded)
            if received >= expected:
                break
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - t0
        cpu, server_cpu = own_cpu_seconds() - cpu0, args.server_cpu() - server_cpu0
        for ws in sockets:
            await ws.close()
    return {
        "workload": "group",
        "members": args.members,
        "senders": args.senders,
        "window": args.window,
        "size": args.size,
        "seconds": round(elapsed, 2),
        "sent": sent,
        "deliveries": received,
        "expected_deliveries": expected,
        "deliveries_per_s": round(received / elapsed),
        **{k: round(v, 2) for k, v in percentiles(latencies).items()},
        "loadgen_cpu_pct": round(100 * cpu / elapsed),
        "server_cpu_pct": round(100 * server_cpu / elapsed) if server_cpu >= 0 else None,
    }


WORKLOADS = {"pairs": pairs, "group": group}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("workload", choices=sorted(WORKLOADS))
    parser.add_argument("--url", help="use a running chatd instead of starting one")
    parser.add_argument("--pairs", type=int, default=10, help="pairs: sender/receiver pairs")
    parser.add_argument("--members", type=int, default=256, help="group: members")
    parser.add_argument("--senders", type=int, default=1, help="group: members sending")
    parser.add_argument("--window", type=int, default=8, help="messages in flight per sender")
    parser.add_argument("--size", type=int, default=100, help="message size in bytes")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured duration")
    parser.add_argument("--synchronous", default="FULL", help="SQLite synchronous of the server")
    parser.add_argument("--out", default=str(ROOT / "bench-results.jsonl"))
    args = parser.parse_args()
    result = uvloop.run(run(args))
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
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    with open(args.out, "a") as f:
        f.write(json.dumps(result) + "\n")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    if args.url:
        args.server_cpu = lambda: -1.0
        return await WORKLOADS[args.workload](args.url, args)
    async with Server(args.synchronous) as server:
        assert server.proc is not None
        pid = server.proc.pid
        args.server_cpu = lambda: process_cpu_seconds(pid)
        result = await WORKLOADS[args.workload](server.url, args)
        result["synchronous"] = args.synchronous
        return result


if __name__ == "__main__":
    main()
