"""Three real ``chatd serve`` processes on one ScyllaDB keyspace, clustered by gossip
and routed by chat owners and user homes; one of them killed with -9 under load."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

from chatd.client import ApiError, ChatdClient
from tests.cluster.processes import cluster_key, node_process, wait_clustered
from tests.conftest import PASSWORD
from tests.subprocess_server import ServerProcess, free_port


@pytest.fixture
async def nodes(tmp_path, server_overrides, server_storage) -> AsyncIterator[list[ServerProcess]]:
    if server_storage != "scylla":
        pytest.skip("a cluster shares a ScyllaDB keyspace, not an SQLite file")
    key = cluster_key(tmp_path)
    ports = [free_port() for _ in range(3)]
    seed = f"127.0.0.1:{ports[0]}"
    servers = [
        node_process(
            tmp_path, server_overrides, f"node-{i}", bind=port, seed=seed if i else None, key=key
        )
        for i, port in enumerate(ports)
    ]
    try:
        for server in servers:
            await server.start()
        await wait_clustered(servers)
        yield servers
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
async def client_on() -> AsyncIterator[Any]:
    clients: list[ChatdClient] = []

    async def make(server: ServerProcess, name: str) -> ChatdClient:
        client = ChatdClient(server.url)
        clients.append(client)
        await client.register(name, PASSWORD)
        await client.login(name, PASSWORD)
        return client

    yield make
    for client in clients:
        await client.aclose()


async def _send_until_stored(client: ChatdClient, **message: Any) -> dict[str, Any]:
    """A client's send, retried with its client_msg_id while a node is lost."""
    for _ in range(60):
        try:
            return await client.send_message(**message)
        except (TimeoutError, ApiError, OSError) as exc:
            if isinstance(exc, ApiError) and exc.code not in ("unavailable",):
                raise
            await asyncio.sleep(0.5)
    raise AssertionError("never stored")


async def test_three_processes_route_messages_receipts_typing_and_presence(nodes, client_on):
    alice = await client_on(nodes[0], "alice")
    bob = await client_on(nodes[1], "bob")
    carol = await client_on(nodes[2], "carol")
    chat_id = (await alice.open_direct(bob.user_id))["chat_id"]
    group = (await alice.create_group("three", [bob.user_id, carol.user_id]))["group_id"]
    async with alice.connect() as a_ws, bob.connect() as b_ws, carol.connect() as c_ws:
        sent = await b_ws.send_message(chat_id=chat_id, content="hello from node 1")
        got = await a_ws.next_event("new_message", timeout=15)
        while got["data"]["chat_id"] != chat_id:
            got = await a_ws.next_event("new_message", timeout=15)
        assert got["data"]["message_id"] == sent["message_id"]
        await a_ws.read_receipt(chat_id, sent["message_id"])
        read = await b_ws.next_event("message_read", timeout=15)
        assert read["data"]["user_id"] == alice.user_id
        await c_ws.typing(group, True)
        typing = await a_ws.next_event("typing_indicator", timeout=15)
        assert typing["data"]["user_id"] == carol.user_id
        assert (await carol.user_status(bob.user_id))["status"] == "online"

        async def burst(ws: Any, who: str) -> list[int]:
            acks = [await ws.send_message(chat_id=group, content=f"{who}{n}") for n in range(10)]
            return [a["seq"] for a in acks]

        sent_by = await asyncio.gather(burst(a_ws, "a"), burst(b_ws, "b"), burst(c_ws, "c"))
        for ws, own in zip((a_ws, b_ws, c_ws), sent_by, strict=True):
            want = sorted({s for s in range(2, 32)} - set(own))
            seqs: list[int] = []
            while len(seqs) < len(want):
                event = await ws.next_event("new_message", timeout=15)
                if event["data"]["chat_id"] == group and event["data"]["seq"] > 1:
                    seqs.append(event["data"]["seq"])
            assert seqs == want


async def test_a_node_killed_under_load_loses_nothing_acknowledged(nodes, client_on):
    a, b, c = nodes
    senders = [await client_on(a, "sender0"), await client_on(b, "sender1")]
    carol = await client_on(c, "carol")
    groups = [
        (await senders[0].create_group(f"g{i}", [senders[1].user_id, carol.user_id]))["group_id"]
        for i in range(6)  # owned all over the cluster, node-2 included
    ]
    acked: dict[str, list[int]] = {g: [] for g in groups}
    stop = asyncio.Event()

    async def load(k: int) -> None:
        n = 0
        while not stop.is_set():
            group = groups[n % len(groups)]
            ack = await _send_until_stored(
                senders[k], chat_id=group, content=f"{k}:{n}", client_msg_id=f"{k}-{n}"
            )
            acked[group].append(ack["seq"])
            n += 1

    on_c = carol.connect(reconnect=False)
    await on_c.open()
    workers = [asyncio.ensure_future(load(k)) for k in range(2)]
    await asyncio.sleep(3)
    c.kill()  # SIGKILL under load
    await asyncio.sleep(4)
    stop.set()
    await asyncio.gather(*workers)
    before = [e for e in await on_c.drain(quiet=0.2) if e["type"] == "new_message"]
    with contextlib.suppress(Exception):
        await on_c.close()
    # Every acknowledged message is in history exactly once, seqs without gaps.
    totals = {}
    for group in groups:
        page = await senders[0].messages(group, after_seq=0, limit=100)
        seqs = [m["seq"] for m in page["messages"]]
        assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) < 100
        assert sorted(acked[group]) == sorted(set(acked[group]))
        assert set(acked[group]) <= set(seqs)
        contents = [m["content"] for m in page["messages"] if m["type"] == "text"]
        assert len(contents) == len(set(contents))
        totals[group] = len(seqs)
    # carol reconnects elsewhere and gets everything she had not acknowledged, in order.
    elsewhere = ChatdClient(a.url, token=carol.token)
    try:
        async with elsewhere.connect() as again:
            await asyncio.sleep(0.5)
            after = [e for e in await again.drain(quiet=2.0) if e["type"] == "new_message"]
    finally:
        await elsewhere.aclose()
    for group in groups:
        first = {e["data"]["seq"] for e in before if e["data"]["chat_id"] == group}
        then = [e["data"]["seq"] for e in after if e["data"]["chat_id"] == group]
        assert then == sorted(set(then)), then  # in order, once
        assert first | set(then) == set(range(1, totals[group] + 1))
