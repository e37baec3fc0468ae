"""The message-rate workloads: ``pairs`` (one-to-one) and ``group`` (fan-out)."""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import aiohttp

from benchlib.common import make_users, own_cpu_seconds, percentiles


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
