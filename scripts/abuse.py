#!/usr/bin/env python3
"""Soak chatd with the attacks one hostile account can make, and watch it stay healthy.

    .venv/bin/python scripts/abuse.py              # every attack, ~10 s each
    .venv/bin/python scripts/abuse.py --seconds 5 slow-readers socket-flood

Starts its own ``chatd serve`` on loopback (a throw-away data directory), then
runs each attack for a bounded time while a canary pair of users exchanges a
message every 250 ms and the health endpoint is polled every 100 ms. Prints,
per attack, the server's RSS and open descriptors (before, peak, after),
health latency and canary delivery latency, and what the server refused.
Exits non-zero if the health check ever failed or took over a second, or a
canary message was lost or took over a second.

Attacks (all from 127.0.0.1, bounded in count and time):
  slow-readers  a group backlog of 60 kB messages replayed to sockets that
                never read (one token, as many sockets as the server allows)
  socket-flood  one token opening WebSockets as fast as it can
  typing-flood  20,000 typing frames into a 200-member group
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib.common import Server, make_users, percentiles, process_rss_kb, tag
from benchlib.rawws import IdleSocket, upgrade_request

from chatd.client import ApiError, ChatdClient

LIMITS = {
    # The caps the attacks meet: the defaults (the load generator's own limits are
    # lifted only for creating the attackers and the canary), but for a smaller
    # socket buffer so the slow-reader attack shows its bound within seconds.
    "max_sockets_per_user": 16,
    "max_sockets_per_address": 512,
    "max_socket_buffer_bytes": 2 << 20,
    "socket_stall_s": 5.0,
}


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


class Watch:
    """Health latency, canary delivery and the server's RSS and descriptors, sampled."""

    def __init__(self, server: Server, http: aiohttp.ClientSession) -> None:
        self.server = server
        self.http = http
        self.health: list[float] = []
        self.health_failures = 0
        self.canary: list[float] = []
        self.canary_lost = 0
        self.rss_kb: list[int] = []
        self.fds: list[int] = []

    @property
    def pid(self) -> int:
        assert self.server.proc is not None
        return self.server.proc.pid

    async def sample(self, until: float) -> None:
        while time.monotonic() < until:
            started = time.monotonic()
            try:
                async with self.http.get(self.server.url + "/api/v1/health") as r:
                    await r.read()
                    if r.status != 200:
                        self.health_failures += 1
            except aiohttp.ClientError:
                self.health_failures += 1
            self.health.append(time.monotonic() - started)
            self.rss_kb.append(process_rss_kb(self.pid))
            self.fds.append(open_fds(self.pid))
            await asyncio.sleep(0.1)

    async def canary_pair(self, alice: ChatdClient, bob: ChatdClient, until: float) -> None:
        async with bob.connect() as b_ws:
            n = 0
            while time.monotonic() < until:
                n += 1
                started = time.monotonic()
                try:
                    sent = await alice.send_message(recipient_id=bob.user_id, content=f"c{n}")
                    while True:
                        event = await b_ws.next_event("new_message", timeout=2.0)
                        if event["data"]["message_id"] == sent["message_id"]:
                            break
                    self.canary.append(time.monotonic() - started)
                except (TimeoutError, ApiError, ConnectionError):
                    self.canary_lost += 1
                await asyncio.sleep(0.25)


# -- attacks -----------------------------------------------------------------


async def slow_readers(server: Server, http: aiohttp.ClientSession, until: float) -> str:
    """A group backlog replayed to sockets of one token that never read."""
    owner, victim = await make_users(server.url, http, 2, tag())
    group = await owner.create_group("backlog", [victim.user_id])
    body = "x" * 60_000
    for i in range(0, 300, 20):
        await asyncio.gather(
            *(owner.send_message(chat_id=group["group_id"], content=body) for _ in range(i, i + 20))
        )
    host, port = "127.0.0.1", server.port
    loop = asyncio.get_running_loop()
    held: list[IdleSocket] = []
    refused = 0
    for _ in range(40):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
        sock.setblocking(False)
        await loop.sock_connect(sock, (host, port))
        _, proto = await loop.create_connection(
            lambda: IdleSocket(upgrade_request(host, port, victim.token or "")), sock=sock
        )
        try:
            await asyncio.wait_for(proto.hello, 5)
        except (ConnectionError, TimeoutError):
            refused += 1
            continue
        assert proto.transport is not None
        proto.transport.pause_reading()  # and never read again
        held.append(proto)
    opened_at = time.monotonic()
    await asyncio.sleep(max(0.0, until - time.monotonic(), LIMITS["socket_stall_s"] + 2))
    left = (await victim.health())["connections"] - 1  # less the canary's socket
    for p in held:
        p.close()
    return (
        f"{len(held)} sockets held a 300 x 60 kB backlog without reading; "
        f"{refused} refused at the cap; {len(held) - left} cut off by the server as stalled "
        f"within {time.monotonic() - opened_at:.0f} s"
    )


async def socket_flood(server: Server, http: aiohttp.ClientSession, until: float) -> str:
    """One token opening WebSockets as fast as it can, never closing them."""
    (mallory,) = await make_users(server.url, http, 1, tag())
    host, port = "127.0.0.1", server.port
    loop = asyncio.get_running_loop()
    opened, refused, attempts = [], 0, 0
    while time.monotonic() < until and attempts < 5000:
        batch = []
        for _ in range(50):
            attempts += 1
            batch.append(
                loop.create_connection(
                    lambda: IdleSocket(upgrade_request(host, port, mallory.token or "")),
                    host,
                    port,
                )
            )
        for _, proto in await asyncio.gather(*batch):
            try:
                await asyncio.wait_for(proto.hello, 5)
                opened.append(proto)
            except (ConnectionError, TimeoutError):
                refused += 1
    for p in opened:
        p.close()
    return f"{attempts} handshakes from one token: {len(opened)} upgraded, {refused} refused"


async def typing_flood(server: Server, http: aiohttp.ClientSession, until: float) -> str:
    """20,000 typing frames into a 200-member group with a member watching."""
    users = await make_users(server.url, http, 200, tag())
    sender, watcher = users[0], users[1]
    group = await sender.create_group("typing", [u.user_id for u in users[1:]])
    chat_id = group["group_id"]
    seen = 0
    async with sender.connect() as s_ws, watcher.connect() as w_ws:
        sent = 0
        while sent < 20_000 and time.monotonic() < until:
            await asyncio.gather(*(s_ws.typing(chat_id, True) for _ in range(500)))
            sent += 500
        for event in await w_ws.drain(quiet=0.5):
            seen += event["type"] == "typing_indicator"
    return f"{sent} typing frames sent; the watching member got {seen} typing events"


ATTACKS: dict[str, Callable[[Server, aiohttp.ClientSession, float], Awaitable[str]]] = {
    "slow-readers": slow_readers,
    "socket-flood": socket_flood,
    "typing-flood": typing_flood,
}


async def run(names: list[str], seconds: float) -> int:
    bad = 0
    for name in names:
        async with Server("FULL", limits=LIMITS) as server, aiohttp.ClientSession() as http:
            alice, bob = await make_users(server.url, http, 2, tag())
            watch = Watch(server, http)
            assert server.proc is not None
            before = (process_rss_kb(server.proc.pid), open_fds(server.proc.pid))
            until = time.monotonic() + seconds
            _, _, outcome = await asyncio.gather(
                watch.sample(until + 1),
                watch.canary_pair(alice, bob, until + 1),
                ATTACKS[name](server, http, until),
            )
            await asyncio.sleep(1)
            after = (process_rss_kb(server.proc.pid), open_fds(server.proc.pid))
            health = percentiles(list(watch.health))
            canary = percentiles(list(watch.canary))
            mb = [before[0] / 1024, max(watch.rss_kb) / 1024, after[0] / 1024]
            print(f"\n{name}: {outcome}")
            print("  RSS MB   before {:8.1f}  peak {:8.1f}  after {:8.1f}".format(*mb))
            print(
                f"  fds      before {before[1]:8d}  peak {max(watch.fds):8d}  after {after[1]:8d}"
            )
            print(
                "  health   p50 {:7.1f} ms  p99 {:7.1f} ms  max {:7.1f} ms  failures {}".format(
                    health.get("p50_ms", 0),
                    health.get("p99_ms", 0),
                    health.get("max_ms", 0),
                    watch.health_failures,
                )
            )
            print(
                "  canary   p50 {:7.1f} ms  max {:7.1f} ms  delivered {}  lost {}".format(
                    canary.get("p50_ms", 0),
                    canary.get("max_ms", 0),
                    len(watch.canary),
                    watch.canary_lost,
                )
            )
            if (
                watch.health_failures
                or watch.canary_lost
                or health.get("max_ms", 0) > 1000
                or canary.get("max_ms", 0) > 1000
            ):
                print(f"  FAILED: {name} hurt other users (see above)")
                bad += 1
    return bad


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("attacks", nargs="*", metavar="ATTACK", help=", ".join(ATTACKS))
    parser.add_argument("--seconds", type=float, default=10.0, help="per attack (default 10)")
    args = parser.parse_args()
    names = args.attacks or list(ATTACKS)
    unknown = [n for n in names if n not in ATTACKS]
    if unknown:
        parser.error(f"unknown attack {unknown[0]!r}; choose from {', '.join(ATTACKS)}")
    uvloop.install()
    sys.exit(1 if asyncio.run(run(names, min(args.seconds, 120.0))) else 0)


if __name__ == "__main__":
    main()
