"""Three nodes on one store, routed by chat owners and user homes (chatd.cluster).

Each node is an app instance in this process with its own links port; a
``FixedCluster`` stands in for gossip. Clients are bound to one node each.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest

from chatd.client import ApiError, ChatdClient
from chatd.cluster.hrw import owner
from chatd.cluster.links import LinkLimits
from tests.cluster.fixed_membership import FixedCluster
from tests.cluster.nodes import Node, start_nodes, stop_nodes
from tests.conftest import PASSWORD, raw_ws


@pytest.fixture
async def nodes(aiohttp_server, tmp_path, server_overrides) -> AsyncIterator[list[Node]]:
    _, started = await start_nodes(aiohttp_server, tmp_path / "data", server_overrides)
    try:
        yield started
    finally:
        await stop_nodes(started)


@pytest.fixture
async def started(aiohttp_server, tmp_path, server_overrides) -> AsyncIterator[Any]:
    """``await started(**options)``: the cluster and its nodes, built with ``options``."""
    running: list[Node] = []

    async def start(**options: Any) -> tuple[FixedCluster, list[Node]]:
        cluster, nodes = await start_nodes(
            aiohttp_server, tmp_path / "data", server_overrides, **options
        )
        running.extend(nodes)
        return cluster, nodes

    yield start
    await stop_nodes(running)


@pytest.fixture
async def client_on() -> AsyncIterator[Any]:
    """``await client_on(node, name)``: a signed-in client of ``node`` (registered once)."""
    clients: list[ChatdClient] = []

    async def make(node: Node, name: str, *, register: bool = True) -> ChatdClient:
        client = ChatdClient(node.url)
        clients.append(client)
        if register:
            await client.register(name, PASSWORD)
        await client.login(name, PASSWORD)
        client.username = name  # type: ignore[attr-defined]
        return client

    yield make
    for client in clients:
        await client.aclose()


def _owner(nodes: list[Node], chat_id: str) -> str:
    return nodes[0].parts.owners.owner(chat_id)


async def test_direct_chat_across_nodes_both_ways_with_receipts_typing_and_presence(
    nodes, client_on
):
    alice = await client_on(nodes[0], "alice")
    bob = await client_on(nodes[1], "bob")
    chat = await alice.open_direct(bob.user_id)
    chat_id = chat["chat_id"]
    async with alice.connect(auto_delivery_receipts=False) as a_ws:
        # bob comes online on node b: alice (node a) is told, and node c knows.
        async with bob.connect(auto_delivery_receipts=False) as b_ws:
            event = await a_ws.next_event("presence", timeout=10)
            assert event["data"] == {**event["data"], "user_id": bob.user_id, "status": "online"}
            carol = await client_on(nodes[2], "carol")
            assert (await carol.user_status(bob.user_id))["status"] == "online"

            sent = []
            for i in range(5):  # alternate directions; the owner orders them
                ws, text = (a_ws, f"a{i}") if i % 2 == 0 else (b_ws, f"b{i}")
                sent.append(await ws.send_message(chat_id=chat_id, content=text))
            assert [s["seq"] for s in sent] == [1, 2, 3, 4, 5]
            got_b = await b_ws.collect("new_message", 3, timeout=10)
            got_a = await a_ws.collect("new_message", 2, timeout=10)
            assert [e["data"]["seq"] for e in got_b] == [1, 3, 5]
            assert [e["data"]["seq"] for e in got_a] == [2, 4]

            await b_ws.read_receipt(chat_id, sent[4]["message_id"])
            read = await a_ws.next_event("message_read", timeout=10)
            while read["data"]["seq"] < 5:  # bob's own sends read what came before
                read = await a_ws.next_event("message_read", timeout=10)
            assert read["data"]["user_id"] == bob.user_id and read["data"]["seq"] == 5

            await a_ws.typing(chat_id, True)
            typing = await b_ws.next_event("typing_indicator", timeout=10)
            assert typing["data"] == {
                "chat_id": chat_id,
                "user_id": alice.user_id,
                "is_typing": True,
            }
            await a_ws.typing(chat_id, False)
            typing = await b_ws.next_event("typing_indicator", timeout=10)
            assert typing["data"]["is_typing"] is False

        event = await a_ws.next_event("presence", timeout=10)
        assert event["data"]["user_id"] == bob.user_id and event["data"]["status"] == "offline"
        assert (await carol.user_status(bob.user_id))["status"] == "offline"


async def test_a_group_spread_over_three_nodes_gets_every_message_once_in_seq_order(
    nodes, client_on
):
    users = [await client_on(nodes[i % 3], f"member{i}") for i in range(6)]
    group = await users[0].create_group("spread", [u.user_id for u in users[1:]])
    chat_id = group["group_id"]
    per_sender = 15
    async with contextlib.AsyncExitStack() as stack:
        sockets = [await stack.enter_async_context(u.connect()) for u in users]

        async def send_all(i: int) -> list[int]:
            acks = [
                await sockets[i].send_message(chat_id=chat_id, content=f"{i}:{n}")
                for n in range(per_sender)
            ]
            return [ack["seq"] for ack in acks]

        sent = await asyncio.gather(*(send_all(i) for i in range(3)))  # a sender per node
        total = 1 + 3 * per_sender  # with the "created" system message
        for i, ws in enumerate(sockets):
            own = set(sent[i]) if i < 3 else set()
            expected = [s for s in range(1, total + 1) if s not in own]
            got = await ws.collect("new_message", len(expected), timeout=20)
            assert [e["data"]["seq"] for e in got] == expected, i
            extra = await ws.drain(quiet=0.3)
            assert not [e for e in extra if e["type"] == "new_message"], "a message came twice"
    history = await users[5].messages(chat_id, limit=100)
    assert sorted(m["seq"] for m in history["messages"]) == list(range(1, total + 1))


async def test_typing_stops_at_once_when_the_typist_leaves_a_node_that_is_not_its_home(
    nodes, client_on
):
    ring = nodes[0].parts.node.ring
    bob = await client_on(nodes[0], "bob")
    alice = await client_on(nodes[1], "alice")
    away = next(n for n in nodes[1:] if n.node_id != ring(alice.user_id))
    typist = await client_on(away, "alice", register=False)
    chat_id = (await bob.open_direct(alice.user_id))["chat_id"]
    async with bob.connect() as b_ws:
        async with typist.connect(reconnect=False) as a_ws:
            await a_ws.typing(chat_id, True)
            shown = await b_ws.next_event("typing_indicator", timeout=10)
            assert shown["data"]["is_typing"] is True
        loop = asyncio.get_running_loop()
        closed = loop.time()
        cleared = await b_ws.next_event("typing_indicator", timeout=10)
        assert cleared["data"] == {"chat_id": chat_id, "user_id": alice.user_id, "is_typing": False}
        assert loop.time() - closed < 2.0  # not the 6 s expiry


async def test_sends_for_chats_owned_elsewhere_are_forwarded_to_the_owner(nodes, client_on):
    alice = await client_on(nodes[0], "alice")
    bob = await client_on(nodes[1], "bob")
    groups = [await alice.create_group(f"g{i}", [bob.user_id]) for i in range(12)]
    owners = {_owner(nodes, g["group_id"]) for g in groups}
    assert len(owners) > 1  # twelve chats spread over the nodes
    for g in groups:  # REST sends from one node, whichever owns the chat
        ack = await alice.send_message(chat_id=g["group_id"], content="x", client_msg_id="k1")
        again = await alice.send_message(chat_id=g["group_id"], content="x", client_msg_id="k1")
        assert ack["seq"] == again["seq"] == 2


async def test_logout_on_one_node_closes_the_socket_on_another_within_a_second(nodes, client_on):
    alice = await client_on(nodes[0], "alice")
    phone = await client_on(nodes[2], "alice", register=False)
    async with phone.connect(reconnect=False) as ws:
        loop = asyncio.get_running_loop()
        started = loop.time()
        await alice.revoke_device(phone.device_id)
        while not ws.closed and loop.time() - started < 5:
            await asyncio.sleep(0.02)
        assert ws.closed and loop.time() - started < 1.0
        assert ws.close_code == 1008


async def test_a_member_removed_on_one_node_stops_receiving_on_the_others_at_once(nodes, client_on):
    admin = await client_on(nodes[0], "admin")
    bob = await client_on(nodes[1], "bob")
    carol = await client_on(nodes[2], "carol")
    group = await admin.create_group("g", [bob.user_id, carol.user_id])
    chat_id = group["group_id"]
    async with bob.connect() as b_ws, carol.connect() as c_ws:
        await b_ws.send_message(chat_id=chat_id, content="hello")
        await c_ws.next_event("new_message", timeout=10)  # created
        await c_ws.next_event("new_message", timeout=10)  # hello
        await admin.remove_member(chat_id, carol.user_id)
        removal = await c_ws.next_event("new_message", timeout=10)
        assert removal["data"]["type"] == "system"
        await b_ws.send_message(chat_id=chat_id, content="after")  # from another node
        sentinel = await b_ws.send_message(recipient_id=carol.user_id, content="sentinel")
        event = await c_ws.next_event("new_message", timeout=10)
        assert event["data"]["message_id"] == sentinel["message_id"], event


async def test_a_peer_whose_links_are_cut_does_not_delay_the_others(nodes, client_on):
    a, b, c = nodes
    ring = a.parts.node.ring
    # Users homed on a or b, and a chat owned by one of them: nothing needs node c.
    # (Users homed on c wait for c to be declared dead; see docs/architecture.md.)
    people: list[ChatdClient] = []
    for i in range(30):
        client = await client_on(a if not people else b, f"person{i}")
        if ring(client.user_id) != c.node_id:
            people.append(client)
        if len(people) == 2:
            break
    alice, bob = people
    carol = await client_on(c, "carol")
    for i in range(40):
        group = await alice.create_group(f"g{i}", [bob.user_id, carol.user_id])
        if _owner(nodes, group["group_id"]) != c.node_id:
            break
    chat_id = group["group_id"]
    async with alice.connect() as a_ws, bob.connect() as b_ws:
        await asyncio.sleep(0.3)  # registrations reach the homes
        await c.links.close()  # node c stops taking link frames; it stays "alive"
        loop = asyncio.get_running_loop()
        for n in range(20):
            started = loop.time()
            await a_ws.send_message(chat_id=chat_id, content=f"n{n}")
            event = await b_ws.next_event("new_message", timeout=5)
            while event["data"]["type"] == "system":  # the groups' "created"
                event = await b_ws.next_event("new_message", timeout=5)
            assert event["data"]["content"] == f"n{n}"
            # Not held by c's link (its frames wait in a bounded queue); the bound
            # leaves room for a loaded CI machine, far under any link timeout.
            assert loop.time() - started < 2.0


async def _group_owned_by(
    nodes: list[Node], owner: Node, creator: ChatdClient, members: list[str]
) -> str:
    for i in range(60):
        group = await creator.create_group(f"owned{i}", members)
        if _owner(nodes, group["group_id"]) == owner.node_id:
            return str(group["group_id"])
    raise AssertionError("no group owned by that node")


async def test_a_dead_owner_fails_writes_in_flight_and_its_chats_move(started, client_on):
    cluster, nodes = await started(call_timeout_s=30.0)
    a, b, c = nodes
    alice = await client_on(a, "alice")
    bob = await client_on(b, "bob")
    chat_id = await _group_owned_by(nodes, c, alice, [bob.user_id])
    await c.links.close()  # c takes no more frames: a write forwarded to it hangs
    loop = asyncio.get_running_loop()
    send = asyncio.ensure_future(
        alice.send_message(chat_id=chat_id, content="in flight", client_msg_id="k1")
    )
    await asyncio.sleep(0.3)
    assert not send.done()
    started_at = loop.time()
    cluster.set_status(c.node_id, "dead")
    with pytest.raises(ApiError) as refused:
        await send
    # Failed when c is declared dead, not after the 30 s call timeout.
    assert refused.value.code == "unavailable" and loop.time() - started_at < 3.0
    # The client retries: the chat has a new owner, and the retry is stored once.
    assert _owner(nodes, chat_id) != c.node_id
    ack = await alice.send_message(chat_id=chat_id, content="in flight", client_msg_id="k1")
    again = await alice.send_message(chat_id=chat_id, content="in flight", client_msg_id="k1")
    assert ack["seq"] == again["seq"] == 2
    async with bob.connect() as b_ws:
        await alice.send_message(chat_id=chat_id, content="live", client_msg_id="k2")
        seqs: list[int] = []
        while 3 not in seqs:  # the other groups' "created" come too
            event = await b_ws.next_event("new_message", timeout=10)
            if event["data"]["chat_id"] == chat_id:
                seqs.append(event["data"]["seq"])
        assert seqs == [1, 2, 3]


async def test_clients_of_a_dead_node_get_everything_after_reconnecting_elsewhere(
    started, client_on
):
    cluster, nodes = await started()
    a, b, c = nodes
    alice = await client_on(a, "alice")
    bob = await client_on(c, "bob")
    chat_id = (await alice.open_direct(bob.user_id))["chat_id"]
    async with bob.connect() as on_c:
        for n in range(5):
            await alice.send_message(chat_id=chat_id, content=f"m{n}")
        got = await on_c.collect("new_message", 5, timeout=10)
        assert [e["data"]["seq"] for e in got] == [1, 2, 3, 4, 5]
    # bob's device acknowledged 1-5; node c dies; more messages arrive meanwhile.
    await c.links.close()
    cluster.set_status(c.node_id, "dead")
    for n in range(5, 10):
        await alice.send_message(chat_id=chat_id, content=f"m{n}")
    elsewhere = ChatdClient(b.url, token=bob.token)
    try:
        async with elsewhere.connect() as on_b:
            got = await on_b.collect("new_message", 5, timeout=10)
            assert [e["data"]["seq"] for e in got] == [6, 7, 8, 9, 10]
            await alice.send_message(chat_id=chat_id, content="live")
            live = await on_b.next_event("new_message", timeout=10)
            assert live["data"]["seq"] == 11
    finally:
        await elsewhere.aclose()


async def test_events_a_full_link_dropped_reach_the_device_after_its_socket_is_reset(
    started, client_on
):
    _, nodes = await started(limits=LinkLimits(frames=4))
    a, _b, c = nodes
    alice = await client_on(a, "alice")
    bob = await client_on(c, "bob")
    chat_id = await _group_owned_by(nodes, a, alice, [bob.user_id])
    async with bob.connect() as on_c:
        await on_c.next_event("new_message", timeout=10)  # created
        port = c.links.port
        await c.links.close()  # frames for c pile up and overflow
        for n in range(12):
            await alice.send_message(chat_id=chat_id, content=f"m{n}")
        dropped = sum(p["dropped"] for n in nodes for p in n.parts.node.peers())
        assert dropped > 0
        await c.links.start("127.0.0.1", port)  # c listens again: its socket is reset
        seqs: list[int] = []
        while 13 not in seqs:
            event = await on_c.next_event("new_message", timeout=10)
            seqs.append(event["data"]["seq"])
        assert on_c.reconnects >= 1 and on_c.close_code == 1013
        assert set(range(2, 14)) <= set(seqs)


async def test_a_draining_node_sends_its_clients_to_another_node(started, client_on):
    _, nodes = await started()
    a, b, c = nodes
    carol = await client_on(c, "carol")
    async with raw_ws(carol) as ws:
        assert (await ws.receive_json())["type"] == "hello"
        await c.server.close()  # SIGTERM: the app shuts down
        frame = await ws.receive_json(timeout=5)
        assert frame["type"] == "reconnect" and frame["data"]["url"] in (a.url, b.url)


async def test_each_node_reports_its_links_per_peer_in_metrics(started, client_on):
    _, nodes = await started()
    a = nodes[0]
    alice = await client_on(a, "alice")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    while True:  # a ping each second measures the round trip
        text = await alice.metrics()
        if 'chatd_cluster_peer_rtt_seconds{peer="node-c"}' in text or loop.time() > deadline:
            break
        await asyncio.sleep(0.2)
    for peer in ("node-b", "node-c"):
        assert f'chatd_cluster_peer_up{{peer="{peer}"}} 1.0' in text
        assert f'chatd_cluster_peer_rtt_seconds{{peer="{peer}"}}' in text
        assert f'chatd_cluster_peer_queue_frames{{peer="{peer}"}}' in text
        assert f'chatd_cluster_peer_dropped_frames_total{{peer="{peer}"}} 0.0' in text
    assert "chatd_cluster_mirrored_users" in text


async def test_a_node_joining_under_load_takes_chats_over_without_breaking_their_order(
    started, client_on
):
    cluster, nodes = await started()
    a, b, c = nodes
    cluster.set_status(c.node_id, "dead")  # c starts outside the cluster, then joins
    alice = await client_on(a, "alice")
    bob = await client_on(b, "bob")
    # Half the chats are ones c will own once it joins (rendezvous over all three),
    # so the takeover is certain rather than left to how eight random ids hash.
    everyone = [node.node_id for node in nodes]
    taken: list[str] = []
    kept: list[str] = []
    for i in range(200):
        if len(taken) >= 4 and len(kept) >= 4:
            break
        chat_id = str((await alice.create_group(f"g{i}", [bob.user_id]))["group_id"])
        bucket = taken if owner(chat_id, everyone) == c.node_id else kept
        if len(bucket) < 4:
            bucket.append(chat_id)
    chats = taken + kept
    assert len(chats) == 8
    per_sender = 20
    # A device resynced by a reset may get again what it had not acknowledged yet;
    # the client keeps each (chat, seq) once, as a client should.
    async with alice.connect(dedupe=True) as a_ws, bob.connect(dedupe=True) as b_ws:

        async def send(ws: Any, who: str) -> None:
            for n in range(per_sender):
                for chat_id in chats:
                    await ws.send_message(chat_id=chat_id, content=f"{who}{n}")
                if n == per_sender // 2 and who == "a":
                    cluster.set_status(c.node_id, "alive")  # c joins mid-stream

        await asyncio.gather(send(a_ws, "a"), send(b_ws, "b"))
        assert all(_owner(nodes, chat_id) == c.node_id for chat_id in taken)
        # Each sees the other's messages. A user whose home moved to c while events
        # were on their way is resynced (its socket reset, history replayed, its own
        # messages included): what it receives stays in seq order.
        for ws, other in ((a_ws, "b"), (b_ws, "a")):
            got: list[dict[str, Any]] = []
            while len([e for e in got if e["data"]["content"].startswith(other)]) < len(
                chats
            ) * per_sender or not all(
                any(
                    e["data"]["content"] == f"{other}{per_sender - 1}"
                    and e["data"]["chat_id"] == c_id
                    for e in got
                )
                for c_id in chats
            ):
                got.append(await ws.next_event("new_message", timeout=20))
            got += [e for e in await ws.drain(quiet=0.5) if e["type"] == "new_message"]
            for chat_id in chats:
                seqs = [e["data"]["seq"] for e in got if e["data"]["chat_id"] == chat_id]
                assert seqs == sorted(set(seqs)), seqs
                theirs = {
                    e["data"]["content"]
                    for e in got
                    if e["data"]["chat_id"] == chat_id and e["data"]["content"].startswith(other)
                }
                assert theirs == {f"{other}{n}" for n in range(per_sender)}


async def test_an_encrypted_message_crosses_nodes_each_device_getting_its_own_ciphertext(
    nodes, client_on
):
    """Sent through a node that does not own the chat (forwarded to the owner with
    its ciphertexts) to a user whose two devices sit on the other two nodes."""
    from tests.features.test_e2e_relay import publish, sealed

    opener = await client_on(nodes[0], "erin")
    frank_a = await client_on(nodes[1], "frank")
    frank_b = await client_on(nodes[2], "frank", register=False)
    for device in (frank_a, frank_b):
        await publish(device)
    chat_id = (await opener.open_direct(frank_a.user_id))["chat_id"]
    owner = _owner(nodes, chat_id)
    sender_node = next(n for n in nodes if n.node_id != owner)
    erin = await client_on(sender_node, "erin", register=False)
    ciphertexts = sealed(frank_a, frank_b)
    async with frank_a.connect() as ws_a, frank_b.connect() as ws_b:
        sent = await erin.send_message(
            chat_id=chat_id, content="", encrypted=True, ciphertexts=ciphertexts
        )
        for ws, device in ((ws_a, frank_a), (ws_b, frank_b)):
            event = await ws.next_event("new_message", timeout=10)
            assert event["data"]["message_id"] == sent["message_id"]
            assert event["data"]["encrypted"] is True and event["data"]["content"] == ""
            assert event["data"]["ciphertext"] == ciphertexts[device.device_id]


async def test_a_split_brain_never_lets_a_device_acknowledge_past_the_other_sides_messages(
    started, client_on
):
    cluster, nodes = await started()
    a, b, c = nodes
    alice = await client_on(a, "alice")  # writes on a's side
    erin = await client_on(b, "erin")  # reads on a's side
    carol = await client_on(c, "carol")  # writes on c's side
    dave = await client_on(c, "dave")  # reads on c's side
    members = [erin.user_id, carol.user_id, dave.user_id]
    chat_id = (await alice.create_group("split", members))["group_id"]
    async with erin.connect() as e_ws, dave.connect() as d_ws:
        for ws in (e_ws, d_ws):
            assert (await ws.next_event("new_message", timeout=10))["data"]["seq"] == 1
        cluster.split({c.node_id})  # each side owns the chat, both append
        sent = []
        for n in range(4):
            for who in (alice, carol):
                ack = await who.send_message(chat_id=chat_id, content=f"{who.username}{n}")
                sent.append(ack["seq"])
        assert sorted(sent) == list(range(2, 10))
        cluster.heal()
        await asyncio.sleep(0.3)  # links across come back
        await alice.send_message(chat_id=chat_id, content="after")
        for ws in (e_ws, d_ws):
            got = [1]
            while 10 not in got:
                event = await ws.next_event("new_message", timeout=10)
                got.append(event["data"]["seq"])
            firsts = list(dict.fromkeys(got))  # a replay may repeat what was not acknowledged
            assert firsts == list(range(1, 11)), got
    gaps = 0.0  # the holes were seen and counted
    for node in nodes:
        async with ChatdClient(node.url) as probe:
            text = await probe.metrics()
        found = re.search(r"^chatd_cluster_seq_gaps_total (\S+)$", text, re.MULTILINE)
        assert found is not None
        gaps += float(found[1])
    assert gaps > 0
