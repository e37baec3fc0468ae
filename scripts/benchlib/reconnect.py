"""The ``reconnect`` workload: N devices come back at once to K messages each.

Each of N receivers (one user, one device) has a direct chat with one of a few
senders. Receivers connect once and acknowledge a first message, so each device
has a delivery watermark as a real client that was online before would; then
they all disconnect, the senders send K messages to each over WebSockets, and
all N reconnect at the same moment through the client library (which sends its
delivery receipts as it goes). Measured from the moment the reconnects start:
the time to each hello, the time until each device holds its whole backlog
(K ``new_message`` frames), and the time until every device does.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

import aiohttp

from benchlib.common import (
    cpu_pct,
    health,
    listen_drops,
    loopback_url,
    make_users,
    own_cpu_seconds,
    percentiles,
    rounded,
    tag,
)
from benchlib.integrity import Stream, Tally, counted


class Catchup:
    """One device's backlog: the seqs that arrive, and when the last one did.

    The device already holds seq 1 (acknowledged before it went away), so a
    replay of it counts as a repeat; the backlog is seqs 2..K+1.
    """

    def __init__(self, want: int, all_done: asyncio.Event, tally: list[int]) -> None:
        self.want = want
        self.stream = Stream()
        self.stream.add(1)
        self.done_at = 0.0
        self._all_done = all_done
        self._tally = tally  # [devices still catching up]

    @property
    def got(self) -> int:
        """Backlog messages received, each counted once."""
        return self.stream.count - self.stream.repeated - 1

    def __call__(self, frame: dict[str, Any]) -> None:
        if frame["type"] != "new_message":
            return
        self.stream.add(frame["data"]["seq"])
        if self.got == self.want and not self.done_at:
            self.done_at = time.perf_counter()
            self._tally[0] -= 1
            if self._tally[0] == 0:
                self._all_done.set()


async def reconnect(url: str, args: argparse.Namespace) -> dict[str, Any]:
    """N devices with K messages waiting each reconnect at once; time to full catch-up."""
    loopback_url(url)
    n, k = args.clients, args.pending
    n_senders = max(1, min(n, args.reconnect_senders))
    run_tag = tag()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        senders = await make_users(url, http, n_senders, run_tag + "s")
        receivers = await make_users(url, http, n, run_tag + "r")
        chats: list[str] = []
        for start in range(0, n, 50):
            chats += [
                c["chat_id"]
                for c in await asyncio.gather(
                    *(
                        senders[i % n_senders].open_direct(receivers[i].user_id)
                        for i in range(start, min(n, start + 50))
                    )
                )
            ]

        # Online once: receive a first message and acknowledge it (a durable watermark).
        first: list[asyncio.Future[dict[str, Any]]] = []
        online = []
        for start in range(0, n, 64):
            batch = receivers[start : start + 64]
            futs = [asyncio.get_running_loop().create_future() for _ in batch]
            first += futs
            online += await asyncio.gather(
                *(
                    r.connect(reconnect=False, on_event=_first_message(f)).open()
                    for r, f in zip(batch, futs, strict=True)
                )
            )
        send_ws = [await s.connect(reconnect=False).open() for s in senders]
        await _send_all(send_ws, n_senders, chats, 1, "w", args.fill_window)
        done, _ = await asyncio.wait(first, timeout=60)
        if len(done) < n:
            raise RuntimeError(f"lost: {n - len(done)} of {n} devices never got the first message")
        messages = [f.result() for f in first]
        for start in range(0, n, 64):
            await asyncio.gather(
                *(
                    ws.delivery_receipt(m["chat_id"], m["message_id"])
                    for ws, m in zip(
                        online[start : start + 64], messages[start : start + 64], strict=True
                    )
                )
            )
        for ws in online:
            await ws.close()
        async with asyncio.timeout(30):  # the server has let go of every receiver
            while (await health(url, http)).get("connections", 0) > n_senders:  # noqa: ASYNC110
                await asyncio.sleep(0.05)

        t_fill = time.perf_counter()
        await _send_all(send_ws, n_senders, chats, k, "k", args.fill_window)
        fill_s = time.perf_counter() - t_fill
        for ws in send_ws:
            await ws.close()

        all_done = asyncio.Event()
        tally = [n]
        counters = [Catchup(k, all_done, tally) for _ in range(n)]
        hello_at = [0.0] * n
        failures: list[str] = []
        sessions = [
            r.connect(reconnect=False, on_event=c) for r, c in zip(receivers, counters, strict=True)
        ]

        async def back(i: int) -> None:
            try:
                await sessions[i].open()
                hello_at[i] = time.perf_counter()
            except Exception as exc:
                failures.append(f"{type(exc).__name__}: {exc}"[:100])
                tally[0] -= 1
                if tally[0] == 0:
                    all_done.set()

        drops0 = listen_drops()
        cpu0, server_cpu0, t0 = own_cpu_seconds(), args.server_cpu(), time.perf_counter()
        await asyncio.gather(*(back(i) for i in range(n)))
        drops = listen_drops() - drops0 if drops0 >= 0 else None
        try:
            await asyncio.wait_for(all_done.wait(), 60 + n * k / 500)
        except TimeoutError:
            print(
                f"reconnect: {tally[0]} devices still catching up at the deadline", file=sys.stderr
            )
        elapsed = time.perf_counter() - t0
        cpu, server_cpu = own_cpu_seconds() - cpu0, args.server_cpu() - server_cpu0
        await asyncio.sleep(0.2)  # extra (duplicate) frames would arrive now
        for ws in sessions:
            await ws.close()
    tally = Tally()
    for r, c in zip(receivers, counters, strict=True):
        tally.add(c.stream, range(2, k + 2), f"device of {r.user_id}")
    done = [c.done_at - t0 for c in counters if c.done_at]
    hellos = [h - t0 for h in hello_at if h]
    total_s = max(done) if done else elapsed
    return {
        "workload": "reconnect",
        "clients": n,
        "pending": k,
        "senders": n_senders,
        "fill_s": round(fill_s, 2),
        "seconds": round(total_s, 3),
        "caught_up": len(done),
        "failed": len(failures),
        "backlog_frames": sum(c.got for c in counters),
        **tally.figures(),
        "listen_drops": drops,
        "messages_per_s": round(sum(c.got for c in counters) / max(total_s, 1e-6)),
        **rounded(percentiles(hellos, "hello_")),
        **rounded(percentiles(done)),
        "loadgen_cpu_pct": cpu_pct(cpu, elapsed),
        "server_cpu_pct": cpu_pct(server_cpu, elapsed),
        "problems": counted(len(failures), "reconnects failed", failures[0] if failures else None)
        + tally.problems("backlog messages"),
    }


def _first_message(fut: asyncio.Future[dict[str, Any]]) -> Any:
    def on_event(frame: dict[str, Any]) -> None:
        if frame["type"] == "new_message" and not fut.done():
            fut.set_result(frame["data"])

    return on_event


async def _send_all(
    sockets: list[Any], n_senders: int, chats: list[str], k: int, mark: str, window: int
) -> None:
    """Send ``k`` messages into every chat, each sender socket ``window`` in flight.

    Chat ``i`` belongs to sender ``i % n_senders``; messages go round-robin over
    its chats so every backlog grows evenly.
    """

    async def sender(j: int) -> None:
        todo = [(c, r) for r in range(k) for c in chats[j::n_senders]]
        ws = sockets[j]

        async def lane(start: int) -> None:
            for chat_id, r in todo[start::window]:
                await ws.send_message(chat_id=chat_id, content=f"{mark}|{r}")

        await asyncio.gather(*(lane(s) for s in range(window)))

    await asyncio.gather(*(sender(j) for j in range(n_senders)))
