"""A load-generator process of the ``idle`` workload: ``python -m benchlib.idleworker``.

One process cannot open 100,000 sockets quickly next to its own logins, so the
``idle`` workload spreads devices over a few of these. Each reads one JSON
command a line on stdin and answers one JSON line on stdout; every answer
carries the process's own CPU seconds, so the parent can add them up.

Commands: ``login`` (log users in as new devices, keep the tokens), ``connect``
(open one socket per token and keep it alive with pings every ``heartbeat_s``),
``status`` (how many are still open) and ``close``.
"""

from __future__ import annotations

import asyncio
import collections
import json
import sys
import time
from typing import Any

import aiohttp
import uvloop

from benchlib.common import PASSWORD, ChatdClient, own_cpu_seconds
from benchlib.rawws import PING, IdleSocket, open_idle


class Worker:
    def __init__(self) -> None:
        self.tokens: list[str] = []
        self.sockets: list[IdleSocket] = []
        self.heartbeat: asyncio.Task[None] | None = None
        self.heartbeat_s = 30.0

    async def login(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Log each ``[username, count]`` in ``count`` times: one device, one token each."""
        sem = asyncio.Semaphore(cmd["concurrency"])
        failed: collections.Counter[str] = collections.Counter()
        connector = aiohttp.TCPConnector(limit=cmd["concurrency"])
        async with aiohttp.ClientSession(connector=connector) as http:

            async def one(name: str) -> None:
                async with sem:
                    client = ChatdClient(cmd["url"], session=http)
                    try:
                        await client.login(name, PASSWORD)
                    except Exception as exc:
                        failed[type(exc).__name__ + ": " + str(exc)[:80]] += 1
                        return
                    assert client.token is not None
                    self.tokens.append(client.token)

            await asyncio.gather(*(one(n) for n, count in cmd["users"] for _ in range(count)))
        return {"tokens": len(self.tokens), "failed": dict(failed)}

    async def connect(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Open a socket per token, ``concurrency`` handshakes at a time; ping all along.

        The heartbeat starts before the first socket opens: opening 100,000 takes
        longer than the three silent intervals after which the server hangs up.
        """
        host, port, sources = cmd["host"], cmd["port"], cmd["sources"]
        sem = asyncio.Semaphore(cmd["concurrency"])
        failed: collections.Counter[str] = collections.Counter()
        self.heartbeat_s = float(cmd["heartbeat_s"])
        self.heartbeat = asyncio.create_task(self._beat())
        first = cmd["first"]
        times: list[float] = []

        async def one(i: int, token: str) -> None:
            async with sem:
                source = sources[(first + i) % len(sources)]
                t = time.perf_counter()
                try:
                    ws = await open_idle(host, port, token, source, within=cmd["timeout"])
                except Exception as exc:
                    failed[type(exc).__name__ + ": " + str(exc)[:80]] += 1
                    return
                times.append(round(time.perf_counter() - t, 5))
                self.sockets.append(ws)

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i, t) for i, t in enumerate(self.tokens)))
        return {
            "opened": len(self.sockets),
            "failed": dict(failed),
            "seconds": time.perf_counter() - t0,
            "times": times,  # connect to hello, per socket
        }

    async def _beat(self) -> None:
        """Ping every socket once per ``heartbeat_s``, a tenth of them at a time."""
        tick = 0
        while True:
            await asyncio.sleep(self.heartbeat_s / 10)
            for ws in self.sockets[tick % 10 :: 10]:
                ws.send(PING)
            tick += 1

    def status(self, cmd: dict[str, Any]) -> dict[str, Any]:
        codes = collections.Counter(str(ws.close_code) for ws in self.sockets if ws.closed)
        return {
            "open": sum(not ws.closed for ws in self.sockets),
            "closed": sum(codes.values()),
            "close_codes": dict(codes),
            "unexpected_frames": sum(ws.frames for ws in self.sockets),
        }

    async def close(self, cmd: dict[str, Any]) -> dict[str, Any]:
        if self.heartbeat is not None:
            self.heartbeat.cancel()
        for ws in self.sockets:
            ws.close()
        await asyncio.sleep(0.2)  # let the close frames and FINs go out
        return {"closed": len(self.sockets)}


async def main() -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**26)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    worker = Worker()
    while line := await reader.readline():
        cmd = json.loads(line)
        try:
            handler = getattr(worker, cmd["cmd"])
            reply = handler(cmd)
            if asyncio.iscoroutine(reply):
                reply = await reply
        except Exception as exc:  # reported to the parent, which decides
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        reply["cpu"] = own_cpu_seconds()
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()
        if cmd["cmd"] == "close":
            return


if __name__ == "__main__":
    uvloop.run(main())
