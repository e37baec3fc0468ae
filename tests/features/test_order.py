"""Every device receives one chat's messages in seq order, gap-free (contract: Conventions).

Whatever path each append takes (text, media, a cold member cache, either
backend) and however many senders write at once, a receiving device sees
strictly increasing seqs without gaps, live.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from chatd.cluster.local import LocalRouter
from chatd.core.models import Message
from chatd.core.services.chats import ChatService
from chatd.core.services.fanout import FanOut, Ticket
from chatd.gateway.context import SERVICES
from tests.media_files import jpeg
from tests.ports.conftest import RecordingSockets

PIPELINED = 50


async def _pipeline(ws: Any, chat_id: str, media: dict[str, str], count: int, tag: str) -> None:
    """Send ``count`` messages without waiting between them: text, image, file in turn."""
    sends = []
    for i in range(count):
        kind = ("text", "image", "file")[i % 3]
        sends.append(
            ws.send_message(
                chat_id=chat_id,
                type=kind,
                content=f"{tag}{i}",
                media_id=None if kind == "text" else media[kind],
            )
        )
    await asyncio.gather(*sends)


def _assert_in_order(events: list[dict[str, Any]], first: int) -> None:
    seqs = [e["data"]["seq"] for e in events]
    assert seqs == list(range(first, first + len(seqs))), seqs


async def _media(client: Any) -> dict[str, str]:
    image = await client.upload_media(jpeg(64, 48), "image/jpeg")
    doc = await client.upload_media(b"%PDF-1.4\n" + b"x" * 2000, "application/pdf")
    return {"image": image["media_id"], "file": doc["media_id"]}


async def test_pipelined_text_and_media_arrive_in_seq_order(user):
    alice, bob = await user(), await user()
    chat_id = (await alice.open_direct(bob.user_id))["chat_id"]
    media = await _media(alice)
    async with alice.connect() as a_ws, bob.connect() as b_ws:
        await _pipeline(a_ws, chat_id, media, PIPELINED, "a")
        got = await b_ws.collect("new_message", PIPELINED, timeout=30)
        _assert_in_order(got, 1)
        assert [e["data"]["content"] for e in got] == [f"a{i}" for i in range(PIPELINED)]


async def test_several_senders_into_one_group_arrive_in_seq_order(user, server):
    senders = [await user() for _ in range(3)]
    reader = await user()
    owner = senders[0]
    group = await owner.request(
        "POST",
        "/groups",
        json={"name": "g", "member_ids": [c.user_id for c in [*senders[1:], reader]]},
    )
    chat_id = group["group_id"]
    media = [await _media(s) for s in senders]
    per_sender = 18
    async with reader.connect() as r_ws, reader.connect() as r_ws2:
        sockets = [await s.connect().open() for s in senders]
        try:
            # A cold member cache: the first appends must load the members.
            server.app[SERVICES].chats.forget(chat_id)
            await asyncio.gather(
                *(
                    _pipeline(ws, chat_id, m, per_sender, f"s{i}-")
                    for i, (ws, m) in enumerate(zip(sockets, media, strict=True))
                )
            )
            total = 3 * per_sender
            for ws in (r_ws, r_ws2):
                got = await ws.collect("new_message", total + 1, timeout=30)  # + the creation
                _assert_in_order(got, 1)
        finally:
            for ws in sockets:
                await ws.close()


# -- the fan-out step alone, with random completion orders -------------------


def _stored(chat_id: str, seq: int) -> Message:
    return Message(
        message_id=f"{chat_id}-{seq:04}",
        chat_id=chat_id,
        seq=seq,
        sender_id="alice",
        sender_device_id="phone",
        client_msg_id=f"{chat_id}-{seq}",
        type="text",
        content=str(seq),
        created_at=1,
    )


@pytest.mark.parametrize("seed", range(40))
def test_fanout_releases_each_chat_in_seq_order_whatever_the_completion_order(seed):
    """Tickets are issued, numbered by the store in any order, and settle in any order.

    Some appends are refused or are repeats (abandoned). Every stored message is
    delivered once, each chat's in strictly increasing seq, never before a lower
    seq that was still in flight.
    """
    rng = random.Random(seed)
    router, node = LocalRouter(), RecordingSockets()
    router.attach("n", node, node.apply)
    fanout = FanOut(router, ChatService(None))  # type: ignore[arg-type]  # recipients given
    chats = ["c1", "c2", "c3"]
    next_seq = dict.fromkeys(chats, 1)
    issued: list[tuple[str, Ticket]] = []  # not yet numbered
    numbered: list[tuple[str, Ticket, int]] = []  # numbered, not yet settled
    stored: dict[str, list[int]] = {c: [] for c in chats}
    for _ in range(400):
        step = rng.random()
        if step < 0.4 or not (issued or numbered):
            chat = rng.choice(chats)
            issued.append((chat, fanout.begin(chat)))
        elif step < 0.7 and issued:
            chat, ticket = issued.pop(rng.randrange(len(issued)))
            if rng.random() < 0.15:
                fanout.abandon(ticket)  # refused before it got a seq
            else:
                numbered.append((chat, ticket, next_seq[chat]))
                next_seq[chat] += 1
        elif numbered:
            chat, ticket, seq = numbered.pop(rng.randrange(len(numbered)))
            stored[chat].append(seq)
            fanout.message(ticket, _stored(chat, seq), recipients=["bob"])
    for chat, ticket in issued:  # the rest: numbered, then settled in random order
        numbered.append((chat, ticket, next_seq[chat]))
        next_seq[chat] += 1
    rng.shuffle(numbered)
    for chat, ticket, seq in numbered:
        stored[chat].append(seq)
        fanout.message(ticket, _stored(chat, seq), recipients=["bob"])
    assert fanout.waiting() == 0
    for chat in chats:
        got = [e.seq for _, e, _ in node.delivered if e.chat_id == chat]
        assert got == sorted(stored[chat]) == list(range(1, next_seq[chat])), chat
