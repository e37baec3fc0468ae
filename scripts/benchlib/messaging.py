"""The message-rate workloads: ``pairs`` (one-to-one) and ``group`` (fan-out).

Both spread their users over the nodes in ``args.urls`` (one URL: one server),
see ``scripts/bench.py`` --nodes.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp

from benchlib.common import (
    PASSWORD,
    ChatdClient,
    loopback_url,
    make_users,
    own_cpu_seconds,
    percentiles,
)
from benchlib.idle import WorkerProc
from benchlib.integrity import Stream, Tally, counted


async def pairs(url: str, args: argparse.Namespace) -> dict[str, Any]:
    """P senders each keep W messages in flight to their own receiver for a fixed time.

    Every message of the run (warm-up included) must reach its receiver once
    and in seq order; the rate and latencies count the messages sent in the
    measured window, by their send time.
    """
    tag = str(int(time.time() * 1000) % 10**8)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        # Receiver i on the node after sender i's: with several nodes, every message
        # crosses nodes (and every chat's owner is wherever its id hashes to).
        senders = await make_users(args.urls, http, args.pairs, tag + "s")
        receivers = await make_users(args.urls, http, args.pairs, tag + "r", offset=1)
        if getattr(args, "push", False):
            # Each receiver's second device: a webhook target, never connected.
            for i in range(args.pairs):
                offline = ChatdClient(receivers[i].base_url, session=http)
                await offline.login(f"b{tag}r{i}", PASSWORD)
                await offline.set_push(offline.device_id, "webhook", token=f"bench-{i}")
        latencies: list[float] = []
        streams = [Stream() for _ in receivers]
        t0 = float("inf")  # start of the measured window (perf_counter)
        received = 0  # messages sent in the window that arrived
        payload_pad = "x" * max(0, args.size - 20)

        def on_event(stream: Stream) -> Callable[[dict[str, Any]], None]:
            def on_frame(frame: dict[str, Any]) -> None:
                nonlocal received
                if frame["type"] != "new_message":
                    return
                stream.add(frame["data"]["seq"])
                sent_at = float(frame["data"]["content"].split("|", 1)[0])
                if sent_at >= t0:
                    received += 1
                    latencies.append(time.perf_counter() - sent_at)

            return on_frame

        sockets = []
        for r, stream in zip(receivers, streams, strict=True):
            sockets.append(await r.connect(on_event=on_event(stream), reconnect=False).open())
        chats = [await s.open_direct(r.user_id) for s, r in zip(senders, receivers, strict=True)]
        send_sockets = [await s.connect(reconnect=False).open() for s in senders]
        top = [0] * len(chats)  # the highest seq acked in each chat
        stop_at = 0.0

        async def worker(ws: Any, k: int) -> int:
            sent = 0
            while (now := time.perf_counter()) < stop_at:
                ack = await ws.send_message(
                    chat_id=chats[k]["chat_id"], content=f"{now}|{payload_pad}"
                )
                top[k] = max(top[k], ack["seq"])
                sent += now >= t0
            return sent

        lanes = [(ws, k) for k, ws in enumerate(send_sockets) for _ in range(args.window)]
        # Warm up, then measure a fixed window.
        stop_at = time.perf_counter() + 1.0
        await asyncio.gather(*(worker(ws, k) for ws, k in lanes))
        await asyncio.sleep(0.5)
        probe = await NodeProbe.start(args, http)
        cpu0, server_cpu0, t0 = own_cpu_seconds(), args.server_cpu(), time.perf_counter()
        stop_at = t0 + args.seconds
        sent = sum(await asyncio.gather(*(worker(ws, k) for ws, k in lanes)))
        for _ in range(200):  # let the last deliveries land (bounded)
            if all(s.count - s.repeated >= n for s, n in zip(streams, top, strict=True)):
                break
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - t0
        cpu, server_cpu = own_cpu_seconds() - cpu0, args.server_cpu() - server_cpu0
        per_node = await probe.figures(elapsed, sent)
        closed = [ws.close_code for ws in sockets + send_sockets if ws.closed]
        for ws in sockets + send_sockets:
            await ws.close()
    tally = Tally()
    for r, stream, n in zip(receivers, streams, top, strict=True):
        tally.add(stream, range(1, n + 1), f"receiver {r.user_id}")
    return {
        "workload": "pairs",
        "nodes": len(args.urls),
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
        **per_node,
        **tally.figures(),
        "problems": tally.problems("messages")
        + counted(len(closed), "sockets were closed mid-run (close codes)", closed[:5]),
    }


async def group(url: str, args: argparse.Namespace) -> dict[str, Any]:
    """One group with every member connected; a few senders keep W messages in flight.

    Senders use the client library. The other members are held by
    ``benchlib.fanworker`` processes (``--receiver-procs``, default 1) on raw
    sockets; with ``--receiver-procs 0`` they use the client library in this
    process too, as the first published figures did. Every member must get
    every message of the chat but its own, once and in seq order.
    """
    tag = str(int(time.time() * 1000) % 10**8)
    procs = args.receiver_procs
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        # Member i on node i mod N: the members, and the first S of them who send,
        # spread over every node.
        members = await make_users(args.urls, http, args.members, tag + "g")
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

        def on_event(stream: Stream) -> Callable[[dict[str, Any]], None]:
            def on_frame(frame: dict[str, Any]) -> None:
                nonlocal received
                if frame["type"] != "new_message":
                    return
                stream.add(frame["data"]["seq"])
                if frame["data"]["type"] != "text":
                    return  # the group's creation notice
                sent_at = float(frame["data"]["content"].split("|", 1)[0])
                if sent_at >= t0:  # sent in the measured window
                    received += 1
                    if received % 16 == 0:  # a sample keeps the load generator light
                        latencies.append(time.perf_counter() - sent_at)

            return on_frame

        in_process = members if procs == 0 else members[: args.senders]
        streams = [Stream() for _ in in_process]
        sockets = []
        for start in range(0, len(in_process), 64):
            sockets += await asyncio.gather(
                *(
                    m.connect(on_event=on_event(stream), reconnect=False).open()
                    for m, stream in zip(
                        in_process[start : start + 64], streams[start : start + 64], strict=True
                    )
                )
            )
        own: list[set[int]] = [set() for _ in range(args.senders)]  # seqs each sender sent
        top = 1  # the highest seq acked (1: the creation notice)
        workers: list[WorkerProc] = []
        try:
            if procs:
                workers = list(
                    await asyncio.gather(
                        *(WorkerProc.start("benchlib.fanworker") for _ in range(procs))
                    )
                )
                # Each receiver on its own node: [host, port, token].
                targets = [[*loopback_url(m.base_url), m.token] for m in members[args.senders :]]
                opened = await asyncio.gather(
                    *(
                        w.ask(
                            {
                                "cmd": "connect",
                                "targets": targets[k::procs],
                                "source": "127.0.0.1",
                                "concurrency": 32,
                            },
                            120,
                        )
                        for k, w in enumerate(workers)
                    )
                )
                failed = sum(len(targets[k::procs]) - r["opened"] for k, r in enumerate(opened))
                if failed:
                    raise RuntimeError(f"group: {failed} receivers could not connect: {opened}")
            senders = sockets[: args.senders]
            stop_at = 0.0

            async def worker(k: int) -> int:
                nonlocal top
                sent, ws = 0, senders[k]
                while (now := time.perf_counter()) < stop_at:
                    ack = await ws.send_message(chat_id=chat_id, content=f"{now}|{pad}")
                    own[k].add(ack["seq"])
                    top = max(top, ack["seq"])
                    sent += now >= t0
                return sent

            async def remote(cmd: dict[str, Any]) -> list[dict[str, Any]]:
                return list(await asyncio.gather(*(w.ask(cmd, 60) for w in workers)))

            def expected(i: int) -> list[int]:
                mine = own[i] if i < len(own) else set()
                return [s for s in range(1, top + 1) if s not in mine]

            lanes = [k for k in range(args.senders) for _ in range(args.window)]
            stop_at = time.perf_counter() + 1.0
            await asyncio.gather(*(worker(k) for k in lanes))
            await asyncio.sleep(1.0)
            probe = await NodeProbe.start(args, http)
            t0 = time.perf_counter()
            await remote({"cmd": "measure", "t0": t0})
            cpu0 = own_cpu_seconds() + sum(w.cpu for w in workers)
            server_cpu0 = args.server_cpu()
            stop_at = t0 + args.seconds
            sent = sum(await asyncio.gather(*(worker(k) for k in lanes)))
            expected_deliveries = sent * (args.members - 1)
            wanted = [len(expected(i)) for i in range(len(streams))]
            for _ in range(200):  # let the last deliveries land (bounded)
                results = await remote({"cmd": "result", "upto": top})
                if sum(r["pending"] for r in results) == 0 and all(
                    s.count - s.repeated >= n for s, n in zip(streams, wanted, strict=True)
                ):
                    break
                await asyncio.sleep(0.05)
            elapsed = time.perf_counter() - t0
            server_cpu = args.server_cpu() - server_cpu0
            per_node = await probe.figures(elapsed, sent)
            results = await remote({"cmd": "result", "upto": top, "final": True})
            cpu = own_cpu_seconds() + sum(w.cpu for w in workers) - cpu0
            closed = [ws.close_code for ws in sockets if ws.closed]
        finally:
            for ws in sockets:
                await ws.close()
            await asyncio.gather(*(w.stop() for w in workers))
    tally = Tally()
    for i, (member, stream) in enumerate(zip(in_process, streams, strict=True)):
        tally.add(stream, expected(i), f"member {member.user_id}")
    for r in results:
        tally.merge(r["tally"])
    received += sum(r["received"] for r in results)
    latencies += [t for r in results for t in r["latencies"]]
    closed += [code for r in results for code, n in r["closed"].items() for _ in range(n)]
    out = {
        "workload": "group",
        "nodes": len(args.urls),
        "members": args.members,
        "senders": args.senders,
        "window": args.window,
        "size": args.size,
        "receiver_procs": procs,
        "seconds": round(elapsed, 2),
        "sent": sent,
        "deliveries": received,
        "expected_deliveries": expected_deliveries,
        "deliveries_per_s": round(received / elapsed),
        **{k: round(v, 2) for k, v in percentiles(latencies).items()},
        "loadgen_cpu_pct": round(100 * cpu / elapsed),
        "server_cpu_pct": round(100 * server_cpu / elapsed) if server_cpu >= 0 else None,
        **per_node,
        **tally.figures(),
    }
    if procs:
        out["receipts_sent"] = sum(r["receipts"] for r in results)
    out["problems"] = tally.problems("deliveries") + counted(
        len(closed), "sockets were closed mid-run (close codes)", closed[:5]
    )
    return out


class NodeProbe:
    """Per-node figures over the measured window, on several started nodes: each
    node's CPU, its memory, and the link frames the nodes sent per message."""

    def __init__(self, args: argparse.Namespace, http: aiohttp.ClientSession) -> None:
        self.args, self.http = args, http
        self.cpus: list[float] = []
        self.frames = 0

    @classmethod
    async def start(cls, args: argparse.Namespace, http: aiohttp.ClientSession) -> NodeProbe:
        probe = cls(args, http)
        if len(args.urls) > 1:
            probe.cpus = args.node_cpus()
            probe.frames = await args.link_frames(http)
        return probe

    async def figures(self, elapsed: float, messages: int) -> dict[str, Any]:
        if not self.cpus:
            return {}
        cpus = [c - c0 for c, c0 in zip(self.args.node_cpus(), self.cpus, strict=True)]
        frames = await self.args.link_frames(self.http) - self.frames
        return {
            "node_cpu_pct": [round(100 * c / elapsed) for c in cpus],
            "node_rss_mb": [round(kb / 1024) for kb in self.args.nodes_rss_kb()],
            "link_frames_per_message": round(frames / max(1, messages), 2),
        }
