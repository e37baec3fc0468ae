"""A receiving process of the ``group`` workload: ``python -m benchlib.fanworker``.

At 100,000+ deliveries a second, aiohttp's client (a parser, a message object and
a JSON parse per frame, one process for every socket) costs the load generator
more CPU than the server spends sending, and the figure measures the generator.
These processes hold the receiving members' sockets with ``benchlib.rawws``:
a new_message frame is recognised by its first bytes and its send time read from
its content without a JSON parse; like the client library, each socket answers
every burst it reads (one ``data_received``) with one ``delivery_receipt`` (no
id, so no ack) for the newest message in it.

Commands, one JSON line each on stdin, answered by one JSON line on stdout with
the process's CPU seconds: ``connect`` (a socket per target, hello awaited),
``measure`` (count messages sent at or after ``t0``, perf_counter time, which
is CLOCK_MONOTONIC and so shared by processes on Linux), ``result`` (counts,
with ``final`` latency samples and, given ``upto``, the highest seq sent, what is still
missing, repeated or out of order: see ``benchlib.integrity``), ``close``.
"""

from __future__ import annotations

import asyncio
import collections
import json
import sys
import time
from typing import Any

import orjson
import uvloop

from benchlib.common import own_cpu_seconds
from benchlib.integrity import Stream, Tally
from benchlib.rawws import IdleSocket, masked_frame, open_idle

NEW_MESSAGE = b'{"type":"new_message"'
SEQ = b'"seq":'
CONTENT = b'"content":"'


class Receiver(IdleSocket):
    """A raw socket that counts new_message frames and acknowledges each burst."""

    __slots__ = ("newest", "stats", "stream")

    def __init__(self, request: bytes, stats: Stats) -> None:
        super().__init__(request, None)
        self.stats = stats
        self.newest: bytes | None = None
        self.stream = Stream()

    def _text(self, payload: bytes) -> None:
        if not self.hello.done():
            super()._text(payload)
            return
        if not payload.startswith(NEW_MESSAGE):
            return
        self.newest = payload
        at = payload.find(SEQ) + len(SEQ)  # "seq" comes before "content"
        self.stream.add(int(payload[at : payload.find(b",", at)]))
        stats = self.stats
        start = payload.find(CONTENT)
        end = payload.find(b"|", start)
        if start < 0 or end < 0:
            return  # a system message (the group's creation)
        try:
            sent_at = float(payload[start + len(CONTENT) : end])
        except ValueError:
            return
        if sent_at >= stats.t0:
            stats.received += 1
            if stats.received % 16 == 0:  # a sample keeps the generator light
                stats.latencies.append(time.perf_counter() - sent_at)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        newest, self.newest = self.newest, None
        if newest is not None and self.upgraded:
            data = orjson.loads(newest)["data"]
            receipt = {"chat_id": data["chat_id"], "message_id": data["message_id"]}
            self.send(masked_frame(orjson.dumps({"type": "delivery_receipt", "data": receipt})))
            self.stats.receipts += 1


class Stats:
    def __init__(self) -> None:
        self.t0 = float("inf")
        self.received = 0
        self.receipts = 0
        self.latencies: list[float] = []


class Worker:
    def __init__(self) -> None:
        self.stats = Stats()
        self.sockets: list[Receiver] = []

    async def connect(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """A socket per ``[host, port, token]`` of ``targets`` (each to its user's node)."""
        source = cmd["source"]
        sem = asyncio.Semaphore(cmd["concurrency"])
        failed: collections.Counter[str] = collections.Counter()

        async def one(host: str, port: int, token: str) -> None:
            async with sem:
                try:
                    ws = await open_idle(
                        host, port, token, source, within=60, protocol=self._receiver
                    )
                except Exception as exc:
                    failed[type(exc).__name__ + ": " + str(exc)[:80]] += 1
                    return
                assert isinstance(ws, Receiver)
                self.sockets.append(ws)

        await asyncio.gather(*(one(*target) for target in cmd["targets"]))
        return {"opened": len(self.sockets), "failed": dict(failed)}

    def _receiver(self, request: bytes) -> Receiver:
        return Receiver(request, self.stats)

    def measure(self, cmd: dict[str, Any]) -> dict[str, Any]:
        self.stats.t0 = float(cmd["t0"])
        self.stats.received = 0
        self.stats.latencies = []
        return {}

    def result(self, cmd: dict[str, Any]) -> dict[str, Any]:
        closed = collections.Counter(str(ws.close_code) for ws in self.sockets if ws.closed)
        upto = int(cmd.get("upto", 0))
        tally = Tally()
        if cmd.get("final"):  # the full account, once at the end
            for i, ws in enumerate(self.sockets):
                tally.add(ws.stream, range(1, upto + 1), f"receiver socket {i}")
        return {
            "pending": sum(
                max(0, upto - ws.stream.count + ws.stream.repeated) for ws in self.sockets
            ),
            "tally": tally.as_dict(),
            "received": self.stats.received,
            "receipts": self.stats.receipts,
            "latencies": self.stats.latencies if cmd.get("final") else [],
            "closed": dict(closed),
        }

    async def close(self, cmd: dict[str, Any]) -> dict[str, Any]:
        for ws in self.sockets:
            ws.close()
        await asyncio.sleep(0.2)
        return {"closed": len(self.sockets)}


async def main() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    worker = Worker()
    while line := await reader.readline():
        cmd = json.loads(line)
        try:
            reply = getattr(worker, cmd["cmd"])(cmd)
            if asyncio.iscoroutine(reply):
                reply = await reply
        except Exception as exc:
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        reply["cpu"] = own_cpu_seconds()
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
        if cmd["cmd"] == "close":
            return


if __name__ == "__main__":
    uvloop.run(main())
