"""Real ``chatd serve`` processes clustered on one ScyllaDB keyspace: their
configs, the wait until they see each other, and an admin token to ask them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from chatd.client import ChatdClient
from tests.conftest import PASSWORD
from tests.subprocess_server import ServerProcess, free_port

CHATD = (sys.executable, "-m", "chatd")


def cluster_key(tmp_path: Path) -> Path:
    """A fresh cluster key file (32 random bytes as hex), as an operator makes one."""
    key = tmp_path / "cluster.key"
    key.write_text(os.urandom(32).hex() + "\n")
    return key


def node_process(
    tmp_path: Path,
    server_overrides: dict[str, Any],
    name: str,
    *,
    bind: int,
    seed: str | None,
    key: Path,
    **cluster: Any,
) -> ServerProcess:
    """Node ``name`` gossiping on ``127.0.0.1:bind``, joining through ``seed`` (none:
    the first); ``cluster`` adds or overrides ``[cluster]`` keys. Its public_url is
    its own HTTP address, where a draining node sends clients."""
    http_port = free_port()
    settings = {
        "enabled": True,
        "bind": f"127.0.0.1:{bind}",
        "seeds": [seed] if seed else [],
        "secret_file": str(key),
        "public_url": f"http://127.0.0.1:{http_port}",
        **cluster,
    }
    overrides = {**server_overrides, "cluster": settings, "server": {"node_id": name}}
    return ServerProcess(tmp_path / name, overrides, http_port)


async def wait_clustered(servers: list[ServerProcess], timeout: float = 30.0) -> None:
    """Until every node counts all of them alive."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        healths = []
        for server in servers:
            async with ChatdClient(server.url) as probe:
                healths.append(await probe.health())
        if all(h.get("cluster", {}).get("nodes_alive") == len(servers) for h in healths):
            return
        assert loop.time() < deadline, healths
        await asyncio.sleep(0.2)


async def admin_token(server: ServerProcess) -> str:
    """An admin made with the CLI on ``server``'s config, signed in."""
    subprocess.run(
        [*CHATD, "user", "add", "root", "--admin", "--password-stdin", "-c", str(server.config)],
        input=PASSWORD.encode() + b"\n",
        check=True,
        capture_output=True,
        timeout=60,
    )
    async with ChatdClient(server.url) as client:
        await client.login("root", PASSWORD)
        return str(client.token)


def statuses(answer: dict[str, Any]) -> dict[str, str]:
    """``GET /cluster`` as node id -> status."""
    return {n["node_id"]: n["status"] for n in answer["nodes"]}
