"""The servers a workload runs against: one ``chatd serve``, or N clustered by gossip.

With ``n > 1`` the nodes are real processes on one throw-away ScyllaDB keyspace
(a cluster shares a keyspace, never an SQLite file), each configured as an
operator would (docs/operations.md "Running a cluster"): ``[cluster] enabled``,
its own gossip/links port on 127.0.0.1, a generated secret file, the first node
as every other's seed, its public URL. Entering waits until every node sees all
``n`` alive, so the run starts on a settled membership and stable owners.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import aiohttp

from benchlib.common import Server, drop_keyspace, free_port, process_cpu_seconds, process_rss_kb

#: ``chatd_cluster_peer_sent_frames_total{peer="node-1"} 123.0``
SENT_FRAMES = re.compile(r'^chatd_cluster_peer_sent_frames_total\{peer="[^"]*"\} (\S+)$', re.M)


class Nodes:
    """``n`` servers; ``urls`` in node order, ``cpu()`` and ``rss_kb()`` summed over them."""

    def __init__(
        self,
        n: int,
        synchronous: str,
        heartbeat_s: float | None = None,
        *,
        scylla: str | None = None,
        extra: str = "",
    ) -> None:
        if n > 1 and not scylla:
            raise SystemExit("--nodes above 1 needs --scylla: a cluster shares a ScyllaDB keyspace")
        self.n = n
        self.scylla = scylla
        self._keydir: Path | None = None
        if n == 1:
            self.servers = [Server(synchronous, heartbeat_s, scylla=scylla, extra=extra)]
            return
        self._keydir = Path(tempfile.mkdtemp(prefix="chatd-bench-key-"))
        key = self._keydir / "cluster.key"
        key.write_text(os.urandom(32).hex() + "\n")
        key.chmod(0o600)
        self.keyspace = f"chatd_bench_{uuid.uuid4().hex[:12]}"
        gossip = [free_port() for _ in range(n)]
        http = [free_port() for _ in range(n)]
        self.servers = []
        for i in range(n):
            seeds = f'["127.0.0.1:{gossip[0]}"]' if i else "[]"
            cluster = (
                f'[cluster]\nenabled = true\nbind = "127.0.0.1:{gossip[i]}"\nseeds = {seeds}\n'
                f'secret_file = "{key}"\npublic_url = "http://127.0.0.1:{http[i]}"\n'
            )
            server = Server(
                synchronous,
                heartbeat_s,
                scylla=scylla,
                extra=extra + cluster,
                keyspace=self.keyspace,
                port=http[i],
            )
            config = server.dir / "chatd.toml"
            config.write_text(
                config.read_text().replace("[server]\n", f'[server]\nnode_id = "node-{i}"\n', 1)
            )
            self.servers.append(server)

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    @property
    def pids(self) -> list[int]:
        return [s.proc.pid for s in self.servers if s.proc is not None]

    def cpu(self) -> float:
        """CPU seconds of every node, summed."""
        return sum(process_cpu_seconds(pid) for pid in self.pids)

    def cpus(self) -> list[float]:
        return [process_cpu_seconds(pid) for pid in self.pids]

    def rss_kb(self) -> list[int]:
        return [process_rss_kb(pid) for pid in self.pids]

    @property
    def data_bytes(self) -> int:
        return sum(s.data_bytes for s in self.servers)

    async def link_frames(self, http: aiohttp.ClientSession) -> int:
        """Frames all nodes wrote to their peers so far (0 on one node)."""
        if self.n == 1:
            return 0
        total = 0.0
        for url in self.urls:
            async with http.get(url + "/api/v1/metrics") as r:
                total += sum(float(v) for v in SENT_FRAMES.findall(await r.text()))
        return int(total)

    async def __aenter__(self) -> Nodes:
        try:
            # The first node creates the keyspace's schema; the others find it made.
            await self.servers[0].__aenter__()
            await asyncio.gather(*(s.__aenter__() for s in self.servers[1:]))
            if self.n > 1:
                await self._settled()
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def _settled(self, within: float = 60.0) -> None:
        alive: list[Any] = []
        async with aiohttp.ClientSession() as http:
            for _ in range(int(within / 0.2)):
                alive = []
                for url in self.urls:
                    async with http.get(url + "/api/v1/health") as r:
                        alive.append((await r.json()).get("cluster", {}).get("nodes_alive"))
                if alive == [self.n] * self.n:
                    return
                await asyncio.sleep(0.2)
        raise RuntimeError(f"the nodes did not all see each other within {within} s: {alive}")

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*(s.__aexit__() for s in self.servers))
        if self._keydir is not None:
            shutil.rmtree(self._keydir, ignore_errors=True)
            if self.scylla:
                await asyncio.to_thread(drop_keyspace, self.scylla, self.keyspace)
