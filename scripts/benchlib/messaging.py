"""The message-rate workloads: ``pairs`` (one-to-one) and ``group`` (fan-out)."""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import aiohttp

from benchlib.common import loopback_url, make_users, own_cpu_seconds, percentiles
from benchlib.idle import WorkerProc


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
    """One group with every member connected; a few senders keep W messages in flight.

    Senders use the client library. The other members are held by
    ``benchlib.fanworker`` processes (``--receiver-procs``, default 1) on raw
    sockets; with ``--receiver-procs 0`` they use the client library in this
    process too, as the first published figures did.
    """
    tag = str(int(time.time() * 1000) % 10**8)
    procs = args.receiver_procs
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

        in_process = members if procs == 0 else members[: args.senders]
        sockets = []
        for start in range(0, len(in_process), 64):
            sockets += await asyncio.gather(
                *(
                    m.connect(on_event=on_event, reconnect=False).open()
                    for m in in_process[start : start + 64]
                )
            )
        workers: list[WorkerProc] = []
        try:
            if procs:
                host, port = loopback_url(url)
                workers = list(
                    await asyncio.gather(
                        *(WorkerProc.start("benchlib.fanworker") for _ in range(procs))
                    )
                )
                tokens = [m.token for m in members[args.senders :]]
                opened = await asyncio.gather(
                    *(
                        w.ask(
                            {
                                "cmd": "connect",
                                "host": host,
                                "port": port,
                                "source": "127.0.0.1",
                                "tokens": tokens[k::procs],
                                "concurrency": 32,
                            },
                            120,
                        )
                        for k, w in enumerate(workers)
                    )
                )
                failed = sum(len(tokens[k::procs]) - r["opened"] for k, r in enumerate(opened))
                if failed:
                    raise RuntimeError(f"group: {failed} receivers could not connect: {opened}")
            senders = sockets[: args.senders]
            stop_at = 0.0

            async def worker(ws: Any) -> int:
                sent = 0
                while time.perf_counter() < stop_at:
                    await ws.send_message(chat_id=chat_id, content=f"{time.perf_counter()}|{pad}")
                    sent += 1
                return sent

            async def remote(cmd: dict[str, Any]) -> list[dict[str, Any]]:
                return list(await asyncio.gather(*(w.ask(cmd, 60) for w in workers)))

            stop_at = time.perf_counter() + 1.0
            await asyncio.gather(*(worker(ws) for ws in senders for _ in range(args.window)))
            await asyncio.sleep(1.0)
            t0 = time.perf_counter()
            await remote({"cmd": "measure", "t0": t0})
            cpu0 = own_cpu_seconds() + sum(w.cpu for w in workers)
            server_cpu0 = args.server_cpu()
            stop_at = t0 + args.seconds
            sent = sum(
                await asyncio.gather(*(worker(ws) for ws in senders for _ in range(args.window)))
            )
            expected = sent * (args.members - 1)
            results: list[dict[str, Any]] = []
            for _ in range(200):  # let the last deliveries land (bounded)
                results = await remote({"cmd": "result"})
                if received + sum(r["received"] for r in results) >= expected:
                    break
                await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - t0
            server_cpu = args.server_cpu() - server_cpu0
            results = await remote({"cmd": "result", "latencies": True})
            cpu = own_cpu_seconds() + sum(w.cpu for w in workers) - cpu0
        finally:
            for ws in sockets:
                await ws.close()
            await asyncio.gather(*(w.stop() for w in workers))
    received += sum(r["received"] for r in results)
    latencies += [t for r in results for t in r["latencies"]]
    closed = {k: v for r in results for k, v in r["closed"].items()}
    out = {
        "workload": "group",
        "members": args.members,
        "senders": args.senders,
        "window": args.window,
        "size": args.size,
        "receiver_procs": procs,
        "seconds": round(elapsed, 2),
        "sent": sent,
        "deliveries": received,
        "expected_deliveries": expected,
        "deliveries_per_s": round(received / elapsed),
        **{k: round(v, 2) for k, v in percentiles(latencies).items()},
        "loadgen_cpu_pct": round(100 * cpu / elapsed),
        "server_cpu_pct": round(100 * server_cpu / elapsed) if server_cpu >= 0 else None,
    }
    if procs:
        out["receipts_sent"] = sum(r["receipts"] for r in results)
    if closed:
        out["receivers_closed"] = closed
    return out
