"""``GET /metrics``: each counter moves by exactly what the users did.

The exposition is parsed as Prometheus parses it and every check is a delta
between two scrapes, so a metric that stopped counting (or counts twice) fails.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from chatd.client import ApiError, ChatdClient
from tests.prometheus import scrape


async def test_messages_in_counts_each_transport_and_not_repeats(user):
    alice, bob = await user(), await user()
    before = await scrape(alice)
    first = await alice.send_message(recipient_id=bob.user_id, content="rest", client_msg_id="r1")
    again = await alice.send_message(recipient_id=bob.user_id, content="rest", client_msg_id="r1")
    assert again["message_id"] == first["message_id"]
    async with alice.connect() as ws:
        await ws.send_message(chat_id=first["chat_id"], content="ws", client_msg_id="w1")
        await ws.send_message(chat_id=first["chat_id"], content="ws", client_msg_id="w1")
        await ws.send_message(chat_id=first["chat_id"], content="rest again", client_msg_id="r1")
    after = await scrape(alice)
    assert after.since(before, "chatd_messages_in_total", transport="rest") == 1
    assert after.since(before, "chatd_messages_in_total", transport="ws") == 1
    assert [m["seq"] for m in (await bob.messages(first["chat_id"]))["messages"]] == [2, 1]


async def test_messages_out_counts_live_frames_only(user, device):
    alice, bob = await user(), await user()
    bob_phone, alice_phone = await device(bob), await device(alice)
    chat = await alice.open_direct(bob.user_id)
    async with (
        alice.connect() as a_ws,
        alice_phone.connect() as a_phone,
        bob.connect() as b_ws,
        bob_phone.connect() as b_phone,
    ):
        before = await scrape(alice)
        await a_ws.send_message(chat_id=chat["chat_id"], content="to three sockets")
        for ws in (a_phone, b_ws, b_phone):
            await ws.next_event("new_message")
        await b_ws.typing(chat["chat_id"], True)  # other frames are not messages
        await a_ws.next_event("typing_indicator")
        live = await scrape(alice)
        assert live.since(before, "chatd_messages_out_total") == 3
        assert live.since(before, "chatd_delivery_latency_seconds_count") == 3
        laptop = await device(bob)  # a new device: the message comes as history replay
        async with laptop.connect() as replayed:
            await replayed.next_event("new_message")
        after = await scrape(alice)
    assert after.since(live, "chatd_messages_out_total") == 0
    assert after.since(live, "chatd_delivery_latency_seconds_count") == 0


async def test_errors_are_counted_by_code_over_rest_and_websocket(base_url, user):
    alice = await user()
    before = await scrape(alice)
    with pytest.raises(ApiError) as err:
        await alice.get_user("no-such-user")
    assert err.value.code == "not_found"
    async with ChatdClient(base_url, token="forged") as forged:
        with pytest.raises(ApiError) as err:
            await forged.me()
        assert err.value.code == "unauthorized"
    async with alice.connect() as ws:
        for _ in range(2):
            with pytest.raises(ApiError) as err:
                await ws.request("teleport", {})
            assert err.value.code == "bad_request"
    after = await scrape(alice)
    assert after.since(before, "chatd_errors_total", code="not_found") == 1
    assert after.since(before, "chatd_errors_total", code="unauthorized") == 1
    assert after.since(before, "chatd_errors_total", code="bad_request") == 2
    assert after.since(before, "chatd_errors_total", code="internal") == 0


async def test_connections_gauge_follows_open_sockets(user):
    alice = await user()
    before = await scrape(alice)
    async with alice.connect():
        assert (await scrape(alice)).since(before, "chatd_connections") == 1
    async with asyncio.timeout(10):  # the server's clean-up of the closed socket
        while (await scrape(alice)).since(before, "chatd_connections") != 0:
            await asyncio.sleep(0.02)
    assert (await alice.health())["connections"] == before.get("chatd_connections")


async def test_storage_latency_is_observed_for_reads_and_commits(user):
    alice, bob = await user(), await user()
    before = await scrape(alice)
    ack = await alice.send_message(recipient_id=bob.user_id, content="stored")
    await bob.messages(ack["chat_id"])
    after = await scrape(alice)
    # SQLite reports its group commits as "commit", ScyllaDB its writes as "write"/"lwt".
    writes = sum(
        after.since(before, "chatd_storage_latency_seconds_count", op=op)
        for op in ("commit", "write", "lwt")
    )
    assert writes >= 1
    assert after.since(before, "chatd_storage_latency_seconds_count", op="read") >= 1


async def test_every_documented_metric_is_exported(base_url):
    table = (Path(__file__).parents[2] / "docs" / "operations.md").read_text()
    documented = {
        name.removesuffix("_total") for name in re.findall(r"^\| `(chatd_[a-z_]+)", table, re.M)
    }
    assert len(documented) >= 10
    async with ChatdClient(base_url) as anonymous:
        exported = (await scrape(anonymous)).families
    assert documented == exported
