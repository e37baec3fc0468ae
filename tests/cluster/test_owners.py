"""Chat owners: writes run on the owner, and a new owner first fences the previous one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from chatd.cluster.hrw import owner
from chatd.core.errors import ChatdError
from tests.cluster.bare import BareNode, bare_cluster, join_bare, stop_bare
from tests.cluster.fixed_membership import FixedCluster


@pytest.fixture
async def two_then_c() -> AsyncIterator[tuple[FixedCluster, list[BareNode], str]]:
    """Nodes a and b, and a chat that a owns now and node-c will own once it joins."""
    cluster, nodes = await bare_cluster(2)
    chat = next(
        f"chat-{i}"
        for i in range(10_000)
        if owner(f"chat-{i}", ["node-a", "node-b"]) == "node-a"
        and owner(f"chat-{i}", ["node-a", "node-b", "node-c"]) == "node-c"
    )
    try:
        yield cluster, nodes, chat
    finally:
        await stop_bare(nodes)


@pytest.fixture
async def three() -> AsyncIterator[tuple[FixedCluster, list[BareNode]]]:
    cluster, nodes = await bare_cluster(3)
    try:
        yield cluster, nodes
    finally:
        await stop_bare(nodes)


def _serve_all(nodes: list[BareNode], ran: list[tuple[str, Any]]) -> None:
    for node in nodes:

        async def send(payload: dict[str, Any], at: str = node.node_id) -> dict[str, Any]:
            if payload.get("refuse"):
                raise ChatdError("forbidden", "not a member")
            ran.append((at, payload["n"]))
            return {"ran_on": at}

        node.parts.owners.serve("send", send)


async def test_a_write_runs_on_the_owner_and_its_refusal_comes_back(three) -> None:
    _, nodes = three
    ran: list[tuple[str, Any]] = []
    _serve_all(nodes, ran)
    chat = "chat-1"
    home = nodes[0].parts.owners.owner(chat)
    for node in nodes:
        assert node.parts.owners.elsewhere(chat) is (node.node_id != home)
    for n, node in enumerate(nodes):
        answer = await node.parts.owners.forward(chat, "send", {"n": n})
        assert answer == {"ran_on": home}
    assert ran == [(home, 0), (home, 1), (home, 2)]
    with pytest.raises(ChatdError) as refused:
        await nodes[0].parts.owners.forward(chat, "send", {"n": 9, "refuse": True})
    assert refused.value.code == "forbidden"


async def test_a_new_owner_waits_until_the_previous_one_settled_the_chat(two_then_c) -> None:
    cluster, nodes, chat = two_then_c
    a, b = nodes
    settled = asyncio.Event()
    asked: list[str] = []

    async def settle(payload: dict[str, Any]) -> bool:  # a's line for the chat is busy
        asked.append(payload["chat_id"])
        await settled.wait()
        return True

    a.parts.owners.serve("settle", settle)
    c = await join_bare(cluster, "node-c")
    nodes.append(c)
    ran: list[tuple[str, Any]] = []
    _serve_all(nodes, ran)
    assert c.parts.owners.elsewhere(chat)  # not until fenced
    on_c = asyncio.ensure_future(c.parts.owners.forward(chat, "send", {"n": 1}))
    from_b = asyncio.ensure_future(b.parts.owners.forward(chat, "send", {"n": 2}))
    await asyncio.sleep(0.3)
    assert asked == [chat] and not on_c.done() and not from_b.done() and ran == []
    settled.set()
    assert await on_c == await from_b == {"ran_on": c.node_id}
    assert sorted(ran) == [(c.node_id, 1), (c.node_id, 2)]
    assert not c.parts.owners.elsewhere(chat)  # fenced: later writes run at once


async def test_a_previous_owner_that_dies_needs_no_fence(two_then_c) -> None:
    cluster, nodes, chat = two_then_c
    a = nodes[0]
    never = asyncio.Event()

    async def settle(payload: dict[str, Any]) -> bool:
        await never.wait()
        return True

    a.parts.owners.serve("settle", settle)
    c = await join_bare(cluster, "node-c")
    nodes.append(c)
    ran: list[tuple[str, Any]] = []
    _serve_all(nodes, ran)
    write = asyncio.ensure_future(c.parts.owners.forward(chat, "send", {"n": 1}))
    await asyncio.sleep(0.2)
    assert not write.done()
    cluster.set_status(a.node_id, "dead")  # the fence's call fails: a is gone
    assert await write == {"ran_on": c.node_id}
    never.set()
