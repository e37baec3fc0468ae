"""The watermark rules of ``chatd.core.watermarks``, without a store.

The storage contract suite checks that every backend applies these same rules
(tests/contract/test_watermark_rules.py).
"""

from __future__ import annotations

import itertools
import random

from chatd.core.models import PendingChat, WatermarkMove, WatermarkResult
from chatd.core.watermarks import (
    Marks,
    Position,
    acked_cursors,
    advance,
    apply_move,
    cursor_after_send,
    pending_chat,
    pending_chats,
    sent,
)


def test_a_receipt_raises_marks_and_never_lowers_them():
    assert advance(Marks(3, 1), delivered=5, read=0) == Marks(5, 1)
    assert advance(Marks(5, 4), delivered=2, read=1) == Marks(5, 4)
    assert advance(Marks(5, 4), delivered=0, read=0) == Marks(5, 4)


def test_reading_implies_delivery():
    assert advance(Marks(2, 0), delivered=0, read=4) == Marks(4, 4)
    assert advance(Marks(6, 4), delivered=0, read=5) == Marks(6, 5)  # delivered stays above


def test_any_order_of_receipts_ends_at_the_highest_with_each_rise_reported_once():
    rng = random.Random(11)
    for _ in range(200):
        receipts = [(rng.randint(0, 50), rng.randint(0, 50)) for _ in range(rng.randint(1, 20))]
        marks, rises = Marks(), []
        for delivered, read in receipts:
            marks, result = apply_move(marks, WatermarkMove("c", "u", None, delivered, read))
            assert result.delivered_before <= result.delivered_after
            assert result.read_before <= result.read_after <= result.delivered_after
            if result.delivered_after > result.delivered_before:
                rises.append((result.delivered_before, result.delivered_after))
        top_read = max(r for _, r in receipts)
        assert marks == Marks(max(top_read, *(d for d, _ in receipts)), top_read)
        assert all(a[1] == b[0] for a, b in itertools.pairwise(rises))


def test_a_move_reports_the_marks_before_and_after_it():
    after, result = apply_move(Marks(2, 1), WatermarkMove("c", "u", "d", 0, 3))
    assert after == Marks(3, 3)
    assert result == WatermarkResult(2, 3, 1, 3)


def test_the_sender_has_read_what_it_wrote():
    assert sent(Marks(0, 0), 1) == Marks(1, 1)
    assert sent(Marks(7, 3), 8) == Marks(8, 8)
    assert sent(Marks(9, 9), 4) == Marks(9, 9)  # an old seq lowers nothing


def test_a_sending_devices_cursor_moves_only_without_a_gap():
    assert cursor_after_send(0, 1) == 1
    assert cursor_after_send(4, 5) == 5
    assert cursor_after_send(2, 4) == 2  # seq 3 not received: a replay must still send it
    assert cursor_after_send(6, 5) == 6  # never down


def test_a_run_of_own_messages_moves_the_cursor_to_its_end_and_stops_at_a_gap():
    cursor = 0
    for seq in (1, 2, 3, 5, 6):  # seq 4 is someone else's
        cursor = cursor_after_send(cursor, seq)
    assert cursor == 3


def test_acks_raise_each_devices_cursor_to_its_highest():
    moves = [
        WatermarkMove("c1", "u", "phone", 4, 0),
        WatermarkMove("c1", "u", "phone", 2, 0),
        WatermarkMove("c2", "u", "phone", 1, 1),
        WatermarkMove("c1", "u", "laptop", 3, 0),
        WatermarkMove("c1", "u", None, 9, 9),  # a member move: no device cursor
        WatermarkMove("c2", "u", "laptop", 0, 5),  # read only: the cursor is about delivery
    ]
    assert acked_cursors(moves) == {("phone", "c1"): 4, ("phone", "c2"): 1, ("laptop", "c1"): 3}


def position(**fields: object) -> Position:
    values: dict[str, object] = {
        "chat_id": "c",
        "joined_seq": 0,
        "left_seq": None,
        "last_seq": 0,
        "last_activity": 0,
        "cursor": 0,
    }
    values.update(fields)
    return Position(**values)  # type: ignore[arg-type]


def test_a_chat_is_pending_above_the_devices_cursor():
    assert pending_chat(position(last_seq=5)) == PendingChat("c", 0, 5)
    assert pending_chat(position(last_seq=5, cursor=3)) == PendingChat("c", 3, 5)
    assert pending_chat(position(last_seq=5, cursor=5)) is None
    assert pending_chat(position(last_seq=0)) is None  # nothing written yet


def test_pending_starts_at_the_join_and_stops_at_the_leaving():
    assert pending_chat(position(last_seq=9, joined_seq=4)) == PendingChat("c", 4, 9)
    assert pending_chat(position(last_seq=9, joined_seq=4, cursor=6)) == PendingChat("c", 6, 9)
    assert pending_chat(position(last_seq=9, left_seq=5)) == PendingChat("c", 0, 5)
    assert pending_chat(position(last_seq=9, left_seq=5, cursor=5)) is None


def test_pending_chats_come_least_recently_active_first():
    positions = [
        position(chat_id="late", last_seq=3, last_activity=300),
        position(chat_id="done", last_seq=3, last_activity=100, cursor=3),
        position(chat_id="early", last_seq=2, last_activity=100),
        position(chat_id="middle", last_seq=7, last_activity=200, joined_seq=1),
    ]
    assert pending_chats(positions) == [
        PendingChat("early", 0, 2),
        PendingChat("middle", 1, 7),
        PendingChat("late", 0, 3),
    ]
