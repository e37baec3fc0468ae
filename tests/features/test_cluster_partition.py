"""A partition of three real ``chatd serve`` processes on one ScyllaDB keyspace.

Each node binds its cluster port behind a relay the test controls
(``tests/cluster/relay.py``) and advertises the relay, so all its cluster
traffic, gossip datagrams and streams alike, passes it. The test cuts one node
off (both ways) while clients on both sides keep writing, then heals the cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator

import pytest

from chatd.client import ApiError, ChatdClient
from chatd.cluster.hrw import owner
from tests.cluster.processes import (
    admin_token,
    cluster_key,
    node_process,
    statuses,
    wait_clustered,
)
from tests.cluster.relay import Partition, Relay
from tests.conftest import PASSWORD
from tests.subprocess_server import ServerProcess, free_port

NAMES = ["node-0", "node-1", "node-2"]
CUT = "node-2"


@pytest.fixture
async def partitioned(
    tmp_path, server_overrides, server_storage
) -> AsyncIterator[tuple[list[ServerProcess], Partition]]:
    if server_storage != "scylla":
        pytest.skip("a cluster shares a ScyllaDB keyspace, not an SQLite file")
    key = cluster_key(tmp_path)
    partition = Partition()
    binds = [free_port() for _ in NAMES]
    relays = [
        Relay(name, ("127.0.0.1", port), partition) for name, port in zip(NAMES, binds, strict=True)
    ]
    servers = []
    try:
        for relay in relays:
            await relay.start()
        for i, (name, relay) in enumerate(zip(NAMES, relays, strict=True)):
            servers.append(
                node_process(
                    tmp_path,
                    server_overrides,
                    name,
                    bind=binds[i],
                    seed=relays[0].address if i else None,
                    key=key,
                    advertise=relay.address,
                    # Healing waits for a push-pull with a node held dead (30 s by default).
                    push_pull_interval_s=2.0,
                )
            )
            partition.add_node(name, ("127.0.0.1", binds[i]))
        for name, server in zip(NAMES, servers, strict=True):
            await server.start()
            assert server.proc is not None
            partition.add_node(name, ("127.0.0.1", binds[NAMES.index(name)]), server.proc.pid)
        await wait_clustered(servers)
        yield servers, partition
    finally:
        for server in servers:
            server.stop()
        for relay in relays:
            await relay.close()


async def _signed_in(server: ServerProcess, name: str, clients: list[ChatdClient]) -> ChatdClient:
    client = ChatdClient(server.url)
    clients.append(client)
    await client.register(name, PASSWORD)
    await client.login(name, PASSWORD)
    return client


async def _group_owned(creator: ChatdClient, members: list[str], owners: set[str]) -> str:
    for i in range(60):
        group_id = str((await creator.create_group(f"g{i}", members))["group_id"])
        if owner(group_id, NAMES) in owners:
            return group_id
    raise AssertionError("no group owned there")


async def _views(admins: list[ChatdClient]) -> list[dict[str, str]]:
    return [statuses(await admin.cluster()) for admin in admins]


async def test_a_cut_node_is_seen_dead_both_ways_and_heals_with_every_message_once_in_order(
    partitioned,
):
    servers, partition = partitioned
    token = await admin_token(servers[0])
    clients: list[ChatdClient] = []
    admins = [ChatdClient(s.url, token=token) for s in servers]
    clients += admins
    try:
        alice = await _signed_in(servers[0], "alice", clients)  # writes, majority side
        erin = await _signed_in(servers[1], "erin", clients)  # reads, majority side
        carol = await _signed_in(servers[2], "carol", clients)  # writes, cut side
        dave = await _signed_in(servers[2], "dave", clients)  # reads, cut side
        members = [erin.user_id, carol.user_id, dave.user_id]
        majors = await _group_owned(alice, members, {"node-0", "node-1"})
        cuts = await _group_owned(alice, members, {CUT})
        async with erin.connect() as e_ws, dave.connect() as d_ws:
            await alice.send_message(chat_id=majors, content="before")
            await carol.send_message(chat_id=cuts, content="before")  # forwarded across
            for ws in (e_ws, d_ws):
                seen = set()
                while len(seen) < 4:
                    event = await ws.next_event("new_message", timeout=15)
                    if event["data"]["chat_id"] in (majors, cuts):
                        seen.add((event["data"]["chat_id"], event["data"]["seq"]))

            partition.isolate(CUT)
            loop = asyncio.get_running_loop()
            cut_at = loop.time()

            async def across() -> tuple[str, float]:
                """A write for the chat owned across the cut, from the majority side."""
                try:
                    await alice.send_message(chat_id=cuts, content="x", client_msg_id="cross")
                except ApiError as exc:
                    return exc.code, loop.time() - cut_at
                return "stored", loop.time() - cut_at

            refused = asyncio.ensure_future(across())
            # Chats owned on one's own side of the cut keep taking writes meanwhile.
            acked: dict[str, list[int]] = {majors: [], cuts: []}
            for who, chat_id in ((alice, majors), (carol, cuts)):
                ack = await asyncio.wait_for(
                    who.send_message(chat_id=chat_id, content="own side"), 3.0
                )
                acked[chat_id].append(ack["seq"])
            # Both sides see the other suspect, then dead.
            first: list[dict[str, dict[str, float]]] = [{} for _ in servers]
            while True:
                views = await _views(admins)
                now = loop.time() - cut_at
                for i, view in enumerate(views):
                    for name, status in view.items():
                        first[i].setdefault(name, {}).setdefault(status, now)
                if all(v[CUT] == "dead" for v in views[:2]) and all(
                    views[2][n] == "dead" for n in NAMES[:2]
                ):
                    break
                assert now < 30, (views, first)
                await asyncio.sleep(0.2)
            # The healthy side sees the cut node within the contract's defaults. The cut
            # node is slower by design (Lifeguard): every probe it sends fails, so its
            # local health score stretches its probe interval (1 s, 2 s, 3 s, ...) and
            # with two peers to probe in turn its second suspicion can take up to ~7 s;
            # "dead" follows 4 s later in a cluster of three, inside the 15 s.
            bounds = {0: (5.0, 15.0), 1: (5.0, 15.0), 2: (8.0, 15.0)}
            for i, other in ((0, CUT), (1, CUT), (2, "node-0"), (2, "node-1")):
                seen = first[i][other]
                assert "suspect" in seen and seen["suspect"] < seen["dead"], (i, other, first)
                suspect_by, dead_by = bounds[i]
                assert seen["suspect"] <= suspect_by and seen["dead"] <= dead_by, (i, other, first)
            assert first[0]["node-1"] == {"alive": first[0]["node-1"]["alive"]}  # never doubted
            code, after = await refused
            assert code == "unavailable" and after <= 15.0, (code, after)
            healths = [await admin.health() for admin in admins]
            assert [h["cluster"]["nodes_alive"] for h in healths] == [2, 2, 1]

            # Split brain: each side owns both chats, writes on both sides move.
            for n in range(3):
                for who, chat_id, cmid in (
                    (alice, majors, f"a-major-{n}"),
                    (carol, majors, f"c-major-{n}"),
                    (carol, cuts, f"c-cut-{n}"),
                    (alice, cuts, "cross" if n == 0 else f"a-cut-{n}"),
                ):
                    ack = await who.send_message(chat_id=chat_id, content=cmid, client_msg_id=cmid)
                    acked[chat_id].append(ack["seq"])

            partition.heal()
            healed_at = loop.time()
            everyone = dict.fromkeys(NAMES, "alive")
            while (views := await _views(admins)) != [everyone] * 3:
                assert loop.time() - healed_at < 20, views
                await asyncio.sleep(0.2)
            assert [(await a.health())["cluster"]["nodes_alive"] for a in admins] == [3, 3, 3]
            await asyncio.sleep(0.5)  # registrations reach the homes again

            acked[cuts].append((await alice.send_message(chat_id=cuts, content="after"))["seq"])
            acked[majors].append((await carol.send_message(chat_id=majors, content="after"))["seq"])

            # History: every acknowledged message once, seqs without gaps.
            totals = {}
            for chat_id in (majors, cuts):
                page = await erin.messages(chat_id, after_seq=0, limit=100)
                seqs = [m["seq"] for m in page["messages"]]
                assert seqs == list(range(1, len(seqs) + 1)), seqs
                # created, before, one while detecting, six while split, after
                assert len(seqs) == 2 + 1 + 6 + 1
                assert sorted(acked[chat_id]) == list(range(3, len(seqs) + 1))
                texts = [m["content"] for m in page["messages"] if m["type"] == "text"]
                assert len(texts) == len(set(texts))
                totals[chat_id] = len(seqs)

            # Every device got every message, in seq order (a reset connection
            # replays what it had not acknowledged, so a repeat may come).
            for ws in (e_ws, d_ws):
                got: dict[str, list[int]] = {majors: [1, 2], cuts: [1, 2]}
                while any(totals[c] not in got[c] for c in got):
                    event = await ws.next_event("new_message", timeout=30)
                    if event["data"]["chat_id"] in got:
                        got[event["data"]["chat_id"]].append(event["data"]["seq"])
                for chat_id, seqs in got.items():
                    assert list(dict.fromkeys(seqs)) == list(range(1, totals[chat_id] + 1)), seqs
            # The interleaved seqs were not delivered across: the devices were reset.
            gaps = 0.0
            for admin in admins:
                found = re.search(
                    r"^chatd_cluster_seq_gaps_total (\S+)$", await admin.metrics(), re.MULTILINE
                )
                assert found is not None
                gaps += float(found[1])
            assert gaps > 0
    finally:
        for client in clients:
            with contextlib.suppress(Exception):
                await client.aclose()
