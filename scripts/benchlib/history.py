"""The ``history`` workload: paging through one chat of M messages over REST.

Filling: one user's single device sends M messages into a direct chat over
several sockets at once, ``--fill-window`` in flight on each. The server skips
the sending device when it fans out and the other member is offline, so the
fill measures storing, not delivery. Reading: pages of 50 through
``GET /chats/{id}/messages``, one request at a time, R times each, at the
start, the middle and the end of the chat, both newest-first with a
``before`` cursor (no cursor at the end: the first page a client loads) and
oldest-first with ``after_seq``. The same page is read R times, so the figures
are for a warm SQLite page cache.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import aiohttp

from benchlib.common import (
    cpu_pct,
    loopback_url,
    make_users,
    own_cpu_seconds,
    percentiles,
    rounded,
    tag,
)
from benchlib.integrity import counted

PAGE = 50


async def history(url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Fill one chat with M messages, then time pages of 50 at its start, middle and end."""
    loopback_url(url)
    m = args.messages
    if m < 2 * PAGE:
        raise SystemExit(f"history needs --messages of at least {2 * PAGE}")
    pad = "x" * max(0, args.size - 8)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        writer, reader = await make_users(url, http, 2, tag() + "h")
        chat_id = (await writer.open_direct(reader.user_id))["chat_id"]
        sockets = [await writer.connect(reconnect=False).open() for _ in range(args.fill_sockets)]
        ids: list[str] = [""] * (m + 1)  # message_id by seq
        left = [m]

        async def lane(ws: Any) -> None:
            while left[0] > 0:
                left[0] -= 1
                ack = await ws.send_message(chat_id=chat_id, content=f"{left[0]}|{pad}")
                if ack["seq"] <= m:
                    ids[ack["seq"]] = ack["message_id"]

        fill_cpu0, fill_server0, t_fill = own_cpu_seconds(), args.server_cpu(), time.perf_counter()
        await asyncio.gather(*(lane(ws) for ws in sockets for _ in range(args.fill_window)))
        fill_s = time.perf_counter() - t_fill
        fill_cpu = own_cpu_seconds() - fill_cpu0
        fill_server_cpu = args.server_cpu() - fill_server0
        for ws in sockets:
            await ws.close()
        if not all(ids[1:]):
            raise RuntimeError("the fill did not produce seqs 1..M without gaps")

        mid = m // 2
        # (name, query, seq of the first message expected on the page)
        probes: list[tuple[str, dict[str, Any], int]] = [
            ("before_start", {"before": ids[PAGE + 1]}, PAGE),
            ("before_middle", {"before": ids[mid + 1]}, mid),
            ("before_end", {}, m),
            ("after_start", {"after_seq": 0}, 1),
            ("after_middle", {"after_seq": mid - PAGE}, mid - PAGE + 1),
            ("after_end", {"after_seq": m - PAGE}, m - PAGE + 1),
        ]
        figures: dict[str, float] = {}
        wrong = 0
        cpu0, server_cpu0, t0 = own_cpu_seconds(), args.server_cpu(), time.perf_counter()
        for name, query, first_seq in probes:
            times: list[float] = []
            for _ in range(args.reps):
                t = time.perf_counter()
                page = await reader.messages(chat_id, limit=PAGE, **query)
                times.append(time.perf_counter() - t)
                seqs = [msg["seq"] for msg in page["messages"]]
                step = -1 if "after_seq" not in query else 1
                if seqs != list(range(first_seq, first_seq + step * PAGE, step)):
                    wrong += 1
            ms = percentiles(times)
            figures[f"{name}_p50_ms"] = ms["p50_ms"]
            figures[f"{name}_p99_ms"] = ms["p99_ms"]
        elapsed = time.perf_counter() - t0
        cpu, server_cpu = own_cpu_seconds() - cpu0, args.server_cpu() - server_cpu0
    data_bytes = args.data_bytes()
    return {
        "workload": "history",
        "messages": m,
        "size": args.size,
        "fill_sockets": args.fill_sockets,
        "fill_window": args.fill_window,
        "fill_s": round(fill_s, 2),
        "fill_per_s": round(m / fill_s),
        "fill_loadgen_cpu_pct": cpu_pct(fill_cpu, fill_s),
        "fill_server_cpu_pct": cpu_pct(fill_server_cpu, fill_s),
        "db_mb": round(data_bytes / 2**20, 1) if data_bytes >= 0 else None,
        "reps": args.reps,
        "pages": len(probes) * args.reps,
        "wrong_pages": wrong,
        **rounded(figures),
        "seconds": round(elapsed, 2),
        "loadgen_cpu_pct": cpu_pct(cpu, elapsed),
        "server_cpu_pct": cpu_pct(server_cpu, elapsed),
        "problems": counted(wrong, f"of {len(probes) * args.reps} pages had the wrong messages"),
    }
