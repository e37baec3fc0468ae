"""What every workload shares: the throw-away server, users, CPU/RSS probes, percentiles."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import platform
import resource
import shutil
import signal
import socket
import statistics
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))
from chatd.client import ChatdClient  # noqa: E402

PASSWORD = "bench password"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def process_cpu_seconds(pid: int) -> float:
    """user+system CPU of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_rss_kb(pid: int) -> int:
    """Resident set size of a process in KiB (VmRSS in /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def listen_drops() -> int:
    """The kernel's count of connections dropped at a full listen queue (all processes).

    A drop costs the client a SYN retransmit (1 s, then 3 s...), which shows up
    as a step in connect times; -1 when /proc/net/netstat is not readable.
    """
    try:
        head, values = (
            line.split() for line in Path("/proc/net/netstat").read_text().splitlines()[:2]
        )
        return int(dict(zip(head, values, strict=True))["ListenDrops"])
    except (OSError, ValueError, KeyError):
        return -1


def raise_fd_limit(needed: int) -> int:
    """Raise RLIMIT_NOFILE (soft, and hard when privileged) towards ``needed``; say if short.

    Done before the server starts, so the server child inherits the limit too.
    Raising the hard limit needs CAP_SYS_RESOURCE. Returns the soft limit in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return soft
    if hard < needed:
        try:
            nr_open = int(Path("/proc/sys/fs/nr_open").read_text())
        except (OSError, ValueError):
            nr_open = needed
        want = min(needed, nr_open)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return want
        except (ValueError, OSError):
            pass  # not privileged: the soft limit can still go up to the hard one
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    except (ValueError, OSError):
        pass
    if soft < needed:
        print(
            f"the file-descriptor limit is {soft} (hard {hard}) but this run needs about "
            f"{needed}: raise the hard limit (ulimit -Hn as root, limits.conf, LimitNOFILE=) "
            "or lower the size",
            file=sys.stderr,
        )
    return soft


def loopback_url(url: str) -> tuple[str, int]:
    """Host and port of ``url``, refusing anything outside 127.0.0.0/8."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if host == "localhost":
        host = "127.0.0.1"
    try:
        loopback = ipaddress.ip_address(host) in ipaddress.ip_network("127.0.0.0/8")
    except ValueError:
        loopback = False
    if not loopback:
        raise SystemExit(f"{url}: this workload runs against 127.0.0.0/8 only")
    return host, parts.port or (443 if parts.scheme == "https" else 80)


#: The load comes from one address and few users, as fast as it can: lift the
#: limits that protect a server from one hostile client (0: no limit).
LOADGEN_LIMITS: dict[str, Any] = {
    "messages_per_second": 0,
    "login_attempts_per_minute": 100_000,
    "login_attempts_per_address_per_minute": 1_000_000,
    "login_attempts_per_username_per_minute": 1_000_000,
    "registrations_per_address_per_hour": 0,
    "password_hash_queue": 1_000_000,
    "groups_created_per_hour": 0,
    "group_changes_per_minute": 0,
    "max_sockets_per_user": 1_000_000,
    "max_sockets_per_address": 1_000_000,
}


class Server:
    """A ``chatd serve`` child on loopback with a throw-away data directory."""

    def __init__(
        self,
        synchronous: str,
        heartbeat_s: float | None = None,
        *,
        scylla: str | None = None,
        limits: dict[str, Any] | None = None,
        extra: str = "",
        keyspace: str | None = None,
        port: int | None = None,
    ) -> None:
        """``limits``: ``[limits]`` keys that override the load generator's own;
        ``extra``: more TOML tables for the server (``[push.webhook]``...);
        ``keyspace``: a keyspace shared with other nodes, which its caller drops
        (by default the server's own, dropped when it stops)."""
        self.dir = Path(tempfile.mkdtemp(prefix="chatd-bench-"))
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.scylla = scylla
        self.keyspace = keyspace or f"chatd_bench_{uuid.uuid4().hex[:12]}"
        self._own_keyspace = keyspace is None
        beat = f"heartbeat_s = {heartbeat_s}\n" if heartbeat_s else ""
        storage = f'[storage.sqlite]\nsynchronous = "{synchronous}"\n'
        if scylla:
            host, _, port = scylla.rpartition(":")
            storage = (
                '[storage]\nbackend = "scylla"\n'
                f'[storage.scylla]\ncontact_points = ["{host}"]\nport = {int(port)}\n'
                f'keyspace = "{self.keyspace}"\n'
            )
        # Cheap password hashing only speeds up creating the bench users.
        table = {**LOADGEN_LIMITS, **(limits or {})}
        rest = (
            "[auth]\nargon2_time_cost = 1\nargon2_memory_kib = 1024\nargon2_parallelism = 1\n"
            "[limits]\n"
            + "".join(f"{key} = {value}\n" for key, value in table.items())
            + '[log]\nlevel = "warning"\n'
        )
        (self.dir / "chatd.toml").write_text(
            f'[server]\ndata_dir = "{self.dir / "data"}"\n{beat}{storage}{rest}{extra}'
        )
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def data_bytes(self) -> int:
        """Bytes in the data directory (the SQLite database and its WAL)."""
        return sum(p.stat().st_size for p in (self.dir / "data").rglob("*") if p.is_file())

    async def __aenter__(self) -> Server:
        config = str(self.dir / "chatd.toml")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "chatd",
            "serve",
            "--config",
            config,
            "--port",
            str(self.port),
            cwd=ROOT,
        )
        # A fresh keyspace's schema takes a while on a busy Cassandra.
        deadline = asyncio.get_running_loop().time() + (120 if self.scylla else 15)
        async with aiohttp.ClientSession() as http:
            while self.proc.returncode is None and asyncio.get_running_loop().time() < deadline:
                try:
                    async with http.get(self.url + "/api/v1/health") as r:
                        if r.status == 200:
                            return self
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
        await self.__aexit__()
        raise RuntimeError("chatd did not start")

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                print("warning: chatd did not stop within 30 s of SIGTERM; killed", file=sys.stderr)
                self.proc.kill()
                await self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
        if self.scylla and self._own_keyspace:
            await asyncio.to_thread(drop_keyspace, self.scylla, self.keyspace)


def drop_keyspace(scylla: str, keyspace: str) -> None:
    """Drop a throw-away keyspace on the ScyllaDB/Cassandra at ``host:port``."""
    from cassandra.cluster import Cluster

    host, _, port = scylla.rpartition(":")
    cluster = Cluster([host], port=int(port))
    try:
        cluster.connect().execute(f"DROP KEYSPACE IF EXISTS {keyspace}", timeout=120)
    finally:
        cluster.shutdown()


async def make_users(
    url: str | list[str],
    http: aiohttp.ClientSession,
    n: int,
    tag: str,
    *,
    login: bool = True,
    offset: int = 0,
) -> list[ChatdClient]:
    """Register ``n`` users (50 at a time) and, unless told not to, log each in once.

    Given several node URLs, user ``i`` is a client of node ``(i + offset) % len(url)``
    (where it registers, logs in and connects): users spread over a cluster."""
    urls = [url] if isinstance(url, str) else url

    async def one(i: int) -> ChatdClient:
        client = ChatdClient(urls[(i + offset) % len(urls)], session=http)
        name = f"b{tag}{i}"
        await client.register(name, PASSWORD)
        if login:
            await client.login(name, PASSWORD)
        return client

    out: list[ChatdClient] = []
    for start in range(0, n, 50):
        out += await asyncio.gather(*(one(i) for i in range(start, min(n, start + 50))))
    return out


def percentiles(samples: list[float], prefix: str = "") -> dict[str, float]:
    if not samples:
        return {}
    samples.sort()
    pick = lambda q: samples[min(len(samples) - 1, int(q * len(samples)))]  # noqa: E731
    return {
        f"{prefix}p50_ms": pick(0.50) * 1e3,
        f"{prefix}p95_ms": pick(0.95) * 1e3,
        f"{prefix}p99_ms": pick(0.99) * 1e3,
        f"{prefix}max_ms": samples[-1] * 1e3,
        f"{prefix}mean_ms": statistics.fmean(samples) * 1e3,
    }


def rounded(figures: dict[str, float], digits: int = 2) -> dict[str, float]:
    return {k: round(v, digits) for k, v in figures.items()}


def cpu_pct(seconds: float, elapsed: float) -> int | None:
    """CPU seconds as % of one core over ``elapsed``; None when it could not be read."""
    return round(100 * seconds / elapsed) if seconds >= 0 and elapsed > 0 else None


def tag() -> str:
    """A short per-run suffix, so runs against one --url server never collide on names."""
    return os.urandom(4).hex()


async def health(url: str, http: aiohttp.ClientSession) -> dict[str, Any]:
    async with http.get(url.rstrip("/") + "/api/v1/health") as r:
        return await r.json()
