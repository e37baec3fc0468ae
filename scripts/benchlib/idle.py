"""The ``idle`` workload: what C held, authenticated, idle WebSockets cost the server.

Every connection is its own device (its own login and token), as with real
clients; users hold ``--devices-per-user`` devices each (default 100) so that
creating the users, which hashes a password each, stays quick. Per-user state
on the server (presence counters, the registry's per-user dict) is therefore
amortised over many sockets; per-device and per-socket state is not.

Measured: the server's RSS just before the first socket opens and after the
hold, as KB per connection; the time to open them all; how many the server
dropped while they pinged every ``heartbeat_s``; then one message to each of a
sample of connections, one at a time, for the delivery latency with C
connections open. Sockets are held by ``benchlib.idleworker`` processes with a
minimal protocol (``benchlib.rawws``) from 127.0.0.x source addresses, at most
``--in-flight`` handshakes at a time: chatd listens with aiohttp's backlog of
128, and a burst beyond it costs 1 s SYN retransmits (``listen_drops``).
CPU figures cover the first socket opening to the last sample delivered, the
load generator's figure summed over its processes; the logins are not in them.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import sys
import time
from typing import Any

import aiohttp
import orjson

from benchlib.common import (
    ROOT,
    cpu_pct,
    health,
    listen_drops,
    loopback_url,
    make_users,
    own_cpu_seconds,
    percentiles,
    process_rss_kb,
    rounded,
    tag,
)
from benchlib.integrity import counted
from benchlib.rawws import PING, IdleSocket, open_idle, source_addresses


class WorkerProc:
    """One ``benchlib.idleworker`` (or other worker module) child, one JSON line at a time."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.cpu = 0.0
        self.busy = False  # a command is under way: it cannot take "close" until done

    @classmethod
    async def start(cls, module: str = "benchlib.idleworker") -> WorkerProc:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            cwd=ROOT / "scripts",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=2**24,
        )
        return cls(proc)

    async def ask(self, cmd: dict[str, Any], within: float) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.busy = True
        self.proc.stdin.write(json.dumps(cmd).encode() + b"\n")
        await self.proc.stdin.drain()
        async with asyncio.timeout(within):
            line = await self.proc.stdout.readline()
        self.busy = False
        if not line:
            raise RuntimeError(f"worker {self.proc.pid} exited ({self.proc.returncode})")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"worker {self.proc.pid}: {reply['error']}")
        self.cpu = float(reply["cpu"])
        return reply

    async def stop(self) -> None:
        """Close its sockets and let it exit; kill it if it is stuck in a command."""
        if self.proc.returncode is not None:
            return
        try:
            if self.busy:
                raise RuntimeError("interrupted mid-command")
            await self.ask({"cmd": "close"}, 60)
            await asyncio.wait_for(self.proc.wait(), 10)
        except (TimeoutError, RuntimeError, OSError):
            self.proc.kill()
            await self.proc.wait()


def _merge(counters: list[dict[str, int]]) -> dict[str, int]:
    total: collections.Counter[str] = collections.Counter()
    for c in counters:
        total.update(c)
    return dict(total.most_common(5))


async def idle(url: str, args: argparse.Namespace) -> dict[str, Any]:
    """C idle sockets: RSS per connection, setup rate, drops, then sample delivery latency."""
    host, port = loopback_url(url)
    total = args.connections
    n_sample = min(args.sample, total)
    filler = total - n_sample
    per_user = args.devices_per_user
    n_users = -(-filler // per_user)
    procs = args.procs or max(1, min(os.cpu_count() or 1, -(-filler // 25000)))
    pid = args.server_pid
    rss = (lambda: process_rss_kb(pid)) if pid else (lambda: -1)
    run_tag = tag()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        sender, *samples = await make_users(url, http, 1 + n_sample, run_tag + "s")
        await make_users(url, http, n_users, run_tag + "i", login=False)  # the workers log in
        chats = []
        for start in range(0, n_sample, 50):
            chats += await asyncio.gather(
                *(sender.open_direct(s.user_id) for s in samples[start : start + 50])
            )
        sender_ws = await sender.connect(reconnect=False).open()
        heartbeat_s = float((sender_ws.hello or {}).get("heartbeat_s", 30))
        devices = [
            (f"b{run_tag}i{i}", min(per_user, filler - i * per_user)) for i in range(n_users)
        ]
        shares = [devices[k::procs] for k in range(procs)]
        workers: list[WorkerProc] = []
        sample_ws: list[IdleSocket] = []
        beat: asyncio.Task[None] | None = None
        try:
            workers = list(await asyncio.gather(*(WorkerProc.start() for _ in range(procs))))
            t_login = time.perf_counter()
            logins = await asyncio.gather(
                *(
                    w.ask(
                        {"cmd": "login", "url": url, "users": share, "concurrency": 32},
                        120 + filler / 100,
                    )
                    for w, share in zip(workers, shares, strict=True)
                )
            )
            login_s = time.perf_counter() - t_login
            login_failed = _merge([r["failed"] for r in logins])
            if login_failed:
                print(f"idle: failed logins: {login_failed}", file=sys.stderr)
            await asyncio.sleep(1.0)  # let the login burst's clean-up settle before measuring

            rss_before = rss()
            cpu0 = own_cpu_seconds() + sum(w.cpu for w in workers)
            server_cpu0, t0 = args.server_cpu(), time.perf_counter()
            sources = source_addresses(total)
            latencies: list[float] = []
            waiting: dict[int, asyncio.Future[None]] = {}
            arrivals: collections.Counter[int] = collections.Counter()  # per sample socket

            def on_text(ws: IdleSocket, payload: bytes) -> None:
                frame = orjson.loads(payload)
                if frame.get("type") == "new_message":
                    arrivals[id(ws)] += 1
                    sent_at = float(frame["data"]["content"].split("|", 1)[0])
                    latencies.append(time.perf_counter() - sent_at)
                    fut = waiting.pop(id(ws), None)
                    if fut is not None and not fut.done():
                        fut.set_result(None)

            sem = asyncio.Semaphore(args.in_flight)
            sample_times: list[float] = []
            sample_failed: collections.Counter[str] = collections.Counter()

            async def open_sample(i: int, token: str) -> IdleSocket | None:
                async with sem:
                    t = time.perf_counter()
                    try:
                        ws = await open_idle(host, port, token, sources[i % len(sources)], on_text)
                    except Exception as exc:
                        sample_failed[type(exc).__name__ + ": " + str(exc)[:80]] += 1
                        return None
                    sample_times.append(time.perf_counter() - t)
                    return ws

            first = [n_sample + sum(r["tokens"] for r in logins[:k]) for k in range(procs)]
            connect_within = 120 + total / 100
            drops0 = listen_drops()
            # Samples first, then the rest: ``--in-flight`` handshakes at a time in all.
            opened_samples = await asyncio.gather(
                *(open_sample(i, s.token or "") for i, s in enumerate(samples))
            )
            connects = await asyncio.gather(
                *(
                    w.ask(
                        {
                            "cmd": "connect",
                            "host": host,
                            "port": port,
                            "sources": sources,
                            "first": f,
                            "concurrency": max(1, args.in_flight // procs),
                            "timeout": 60,
                            "heartbeat_s": heartbeat_s,
                        },
                        connect_within,
                    )
                    for w, f in zip(workers, first, strict=True)
                )
            )
            connect_s = time.perf_counter() - t0
            drops = listen_drops() - drops0 if drops0 >= 0 else None
            sample_ws = [ws for ws in opened_samples if ws is not None]
            beat = asyncio.create_task(_heartbeat(sample_ws, heartbeat_s))
            n_open = len(sample_ws) + sum(r["opened"] for r in connects)
            connect_failed = _merge([r["failed"] for r in connects] + [sample_failed])
            connect_times = sample_times + [t for r in connects for t in r["times"]]
            if connect_failed:
                print(f"idle: failed connections: {connect_failed}", file=sys.stderr)

            hold_cpu0, hold_t0 = args.server_cpu(), time.perf_counter()
            await asyncio.sleep(args.hold)
            hold_server_cpu = args.server_cpu() - hold_cpu0
            hold_elapsed = time.perf_counter() - hold_t0
            statuses = await asyncio.gather(*(w.ask({"cmd": "status"}, 60) for w in workers))
            rss_after = rss()
            server_connections = (await health(url, http)).get("connections")
            dropped = sum(r["closed"] for r in statuses) + sum(ws.closed for ws in sample_ws)
            close_codes = _merge([r["close_codes"] for r in statuses])

            delivered = live = 0
            for ws, chat in zip(opened_samples, chats, strict=True):
                if ws is None or ws.closed:
                    continue
                live += 1
                fut = asyncio.get_running_loop().create_future()
                waiting[id(ws)] = fut
                await sender_ws.send_message(
                    chat_id=chat["chat_id"], content=f"{time.perf_counter()}|idle"
                )
                try:
                    await asyncio.wait_for(fut, 5.0)
                    delivered += 1
                except TimeoutError:
                    waiting.pop(id(ws), None)
            await asyncio.gather(*(w.ask({"cmd": "status"}, 60) for w in workers))
            elapsed = time.perf_counter() - t0
            cpu = own_cpu_seconds() + sum(w.cpu for w in workers) - cpu0
            server_cpu = args.server_cpu() - server_cpu0
        finally:
            if beat is not None:
                beat.cancel()
            for ws in sample_ws:
                ws.close()
            await asyncio.gather(*(w.stop() for w in workers))
            await sender_ws.close()
    result: dict[str, Any] = {
        "workload": "idle",
        "connections": total,
        "sample": n_sample,
        "devices_per_user": per_user,
        "procs": procs,
        "in_flight": args.in_flight,
        "hold_s": args.hold,
        "heartbeat_s": heartbeat_s,
        "login_s": round(login_s, 2),
        "connect_s": round(connect_s, 2),
        "connects_per_s": round(n_open / connect_s) if connect_s > 0 else None,
        "opened": n_open,
        "failed": total - n_open,
        **rounded(percentiles(connect_times, "connect_")),
        "listen_drops": drops,
        "dropped": dropped,
        "server_connections": server_connections,
        "rss_before_mb": round(rss_before / 1024, 1) if rss_before >= 0 else None,
        "rss_after_mb": round(rss_after / 1024, 1) if rss_after >= 0 else None,
        "kb_per_connection": (
            round((rss_after - rss_before) / n_open, 2) if rss_before >= 0 and n_open else None
        ),
        "delivered": delivered,
        **rounded(percentiles(latencies)),
        "seconds": round(elapsed, 2),
        "loadgen_cpu_pct": cpu_pct(cpu, elapsed),
        "server_cpu_pct": cpu_pct(server_cpu, elapsed),
        "hold_server_cpu_pct": cpu_pct(hold_server_cpu, hold_elapsed),
    }
    if login_failed or connect_failed or close_codes:
        result["errors"] = {"login": login_failed, "connect": connect_failed, "closed": close_codes}
    result["problems"] = (
        counted(sum(login_failed.values()), "logins failed", login_failed)
        + counted(total - n_open, "connections failed", connect_failed)
        + counted(dropped, "idle connections were closed while held (close codes)", close_codes)
        + counted(live - delivered, f"of {live} sample messages were lost (none within 5 s)")
        + counted(sum(n - 1 for n in arrivals.values() if n > 1), "sample messages were duplicated")
    )
    return result


async def _heartbeat(sockets: list[IdleSocket], interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        for ws in sockets:
            ws.send(PING)
