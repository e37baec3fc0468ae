"""Every backend keeps the watermark rules of ``chatd.core.watermarks``.

A random mix of sends (from several devices, into direct chats and a group) and
receipts (member and device moves, some for chats the user is not in) runs
against the store and, beside it, against the core's pure functions. After each
step the store must report what the rules say: the before/after of every move,
the sender's watermarks before each append, every member's watermarks, and the
chats each device has pending.
"""

from __future__ import annotations

import random

import pytest

from chatd.core.ids import new_id, now_ms
from chatd.core.models import Chat, Member, PendingChat, WatermarkMove
from chatd.core.watermarks import (
    Marks,
    Position,
    acked_cursors,
    apply_move,
    cursor_after_send,
    pending_chats,
    sent,
)


class Oracle:
    """The rules applied to what the test did: marks per member, cursors per device."""

    def __init__(self) -> None:
        self.marks: dict[tuple[str, str], Marks] = {}  # (chat, user)
        self.cursors: dict[tuple[str, str], int] = {}  # (device, chat)
        self.members: dict[str, set[str]] = {}  # chat -> users

    def join(self, chat_id: str, user_ids: list[str]) -> None:
        self.members[chat_id] = set(user_ids)
        for user_id in user_ids:
            self.marks[(chat_id, user_id)] = Marks()

    def sent(self, chat_id: str, user_id: str, device_id: str | None, seq: int) -> Marks:
        before = self.marks[(chat_id, user_id)]
        self.marks[(chat_id, user_id)] = sent(before, seq)
        if device_id is not None:
            key = (device_id, chat_id)
            self.cursors[key] = cursor_after_send(self.cursors.get(key, 0), seq)
        return before

    def advance(self, moves: list[WatermarkMove]) -> list[object]:
        results: list[object] = []
        applied = []
        for move in moves:
            key = (move.chat_id, move.user_id)
            if key not in self.marks:
                results.append(None)
                continue
            self.marks[key], result = apply_move(self.marks[key], move)
            applied.append(move)
            results.append(result)
        for key, seq in acked_cursors(applied).items():
            self.cursors[key] = max(self.cursors.get(key, 0), seq)
        return results


async def expected_pending(storage, oracle: Oracle, user_id: str, device_id: str):
    positions = []
    for chat_id, users in oracle.members.items():
        if user_id not in users:
            continue
        chat = await storage.chats.get(chat_id)
        positions.append(
            Position(
                chat_id,
                joined_seq=0,
                left_seq=None,
                last_seq=chat.last_seq,
                last_activity=chat.last_activity,
                cursor=oracle.cursors.get((device_id, chat_id), 0),
            )
        )
    return pending_chats(positions)


def by_chat(pending: list[PendingChat]) -> list[PendingChat]:
    return sorted(pending, key=lambda p: p.chat_id)


@pytest.mark.parametrize("seed", [1, 2])
async def test_the_store_applies_the_core_watermark_rules(
    storage, make_user, make_direct, make_device, draft, seed
):
    rng = random.Random(seed)
    alice, bob, carol = [await make_user(n) for n in ("alice", "bob", "carol")]
    devices = {
        alice.user_id: [await make_device(alice, "phone"), await make_device(alice, "laptop")],
        bob.user_id: [await make_device(bob)],
        carol.user_id: [await make_device(carol)],
    }
    users = {u.user_id: u for u in (alice, bob, carol)}
    oracle = Oracle()
    chats: list[Chat] = [await make_direct(alice, bob), await make_direct(carol, alice)]
    oracle.join(chats[0].chat_id, [alice.user_id, bob.user_id])
    oracle.join(chats[1].chat_id, [alice.user_id, carol.user_id])
    group = Chat(new_id(), "group", now_ms(), title="g", created_by=alice.user_id)
    first = await storage.chats.create_group(
        group,
        [Member(group.chat_id, u.user_id, "member", now_ms()) for u in (alice, bob, carol)],
        draft(group, alice, type="system"),
    )
    oracle.join(group.chat_id, list(users))
    oracle.sent(group.chat_id, alice.user_id, None, first.seq)  # no device sent it
    chats.append(group)

    for _ in range(40):
        chat = rng.choice(chats)
        members = sorted(oracle.members[chat.chat_id])
        if rng.random() < 0.5:
            sender = users[rng.choice(members)]
            device = rng.choice(devices[sender.user_id])
            appended = await storage.messages.append(draft(chat, sender, device=device))
            seq = appended.message.seq
            before = oracle.sent(chat.chat_id, sender.user_id, device.device_id, seq)
            if appended.previous_read_seq is not None:
                assert (appended.previous_delivered_seq, appended.previous_read_seq) == before
        else:
            last = (await storage.chats.get(chat.chat_id)).last_seq
            moves = []
            for _ in range(rng.randint(1, 4)):
                user_id = rng.choice(list(users))  # sometimes not a member: None
                device = rng.choice([None, *devices[user_id]])
                moves.append(
                    WatermarkMove(
                        chat.chat_id,
                        user_id,
                        None if device is None else device.device_id,
                        rng.randint(0, last),
                        rng.choice([0, rng.randint(0, last)]),
                    )
                )
            assert await storage.receipts.advance(moves) == oracle.advance(moves)

        for (chat_id, user_id), marks in oracle.marks.items():
            member = await storage.chats.member(chat_id, user_id)
            assert (member.delivered_seq, member.read_seq) == marks
        for user_id, own in devices.items():
            for device in own:
                pending = await storage.receipts.pending(user_id, device.device_id)
                want = await expected_pending(storage, oracle, user_id, device.device_id)
                assert by_chat(pending) == by_chat(want)
                activity = [(await storage.chats.get(p.chat_id)).last_activity for p in pending]
                assert activity == sorted(activity)  # least recently active first
