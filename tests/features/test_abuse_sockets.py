"""What one account can take through WebSockets: memory per socket, descriptors.

Each test attacks a real ``chatd serve`` child (process limits are what is
measured) in a bounded way, and checks that the server goes on serving others.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import socket
from pathlib import Path

import pytest

from chatd.client import ApiError
from tests.abuse_checks import still_serving
from tests.subprocess_server import ServerProcess


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def never_reading_socket(port: int, token: str) -> socket.socket:
    """A WebSocket that upgrades and then reads nothing, with a small receive buffer."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    )
    await loop.sock_sendall(sock, request.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = await loop.sock_recv(sock, 1)  # byte by byte: take nothing past the head
        assert chunk, "closed during the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head[:80]
    return sock


def fresh_users(process_user):
    names = (f"bystander{n}" for n in itertools.count())
    return lambda: process_user(next(names))


@pytest.fixture
def config_overrides():
    return {
        "limits": {
            "max_socket_buffer_bytes": 1 << 20,
            "socket_stall_s": 3.0,
            "max_sockets_per_user": 12,
        }
    }


@pytest.mark.sqlite_only  # the server process's memory is measured, not the store's
async def test_sockets_that_never_read_hold_bounded_memory_and_are_cut_off(
    chatd_process, process_user
):
    owner, victim = await process_user("owner"), await process_user("victim")
    group = await owner.create_group("backlog", [victim.user_id])
    body = "x" * 60_000
    for _ in range(10):  # 200 x 60 kB = 12 MB of history to replay to every socket
        await asyncio.gather(
            *(owner.send_message(chat_id=group["group_id"], content=body) for _ in range(20))
        )
    pid = chatd_process.proc.pid
    before = rss_mb(pid)
    held = [await never_reading_socket(chatd_process.port, victim.token) for _ in range(12)]
    try:
        peak = before
        for _ in range(15):  # while the replays push against the full sockets
            peak = max(peak, rss_mb(pid))
            await asyncio.sleep(0.1)
        await still_serving(fresh_users(process_user), chatd_process.url)
        # Unbounded, each socket would buffer the whole 12 MB backlog (twice over).
        assert peak - before < 80, f"RSS grew {peak - before:.0f} MB for 12 stuck sockets"
        # A replay that cannot go on for socket_stall_s is cut off (1013).
        async with asyncio.timeout(30):
            while (await owner.health())["connections"] > 0:
                await asyncio.sleep(0.2)
        assert rss_mb(pid) - before < 80
    finally:
        for sock in held:
            sock.close()


@pytest.mark.sqlite_only
async def test_near_the_descriptor_limit_websockets_are_refused_and_the_rest_answers(tmp_path):
    # 400 descriptors, 300 kept in reserve: about 100 WebSockets may open.
    server = ServerProcess(
        tmp_path / "data", {"limits": {"descriptor_reserve": 300}}, descriptors=400
    )
    await server.start()
    from chatd.client import ChatdClient
    from tests.conftest import PASSWORD

    clients: list[ChatdClient] = []
    sockets = []
    try:
        for n in range(10):
            client = ChatdClient(server.url)
            await client.register(f"flood{n}", PASSWORD)
            await client.login(f"flood{n}", PASSWORD)
            clients.append(client)
        refused = []
        for client in clients:  # 10 users x 12 sockets, under the per-user cap of 16
            for _ in range(12):
                try:
                    sockets.append(await client.connect(reconnect=False).open())
                except ApiError as exc:
                    refused.append((exc.status, exc.code))
        assert refused and set(refused) == {(503, "unavailable")}, refused[:3]
        assert 60 <= len(sockets) <= 100, len(sockets)
        # Health, login and REST still answer; so do the sockets already open.
        newcomer = ChatdClient(server.url)
        clients.append(newcomer)
        await newcomer.register("newcomer", PASSWORD)
        await newcomer.login("newcomer", PASSWORD)
        assert (await newcomer.health())["status"] == "ok"
        sent = await newcomer.send_message(recipient_id=clients[0].user_id, content="hi")
        got = await sockets[0].next_event("new_message", timeout=5)
        assert got["data"]["message_id"] == sent["message_id"]
    finally:
        for ws in sockets:
            await ws.close()
        for client in clients:
            await client.aclose()
        server.stop()
