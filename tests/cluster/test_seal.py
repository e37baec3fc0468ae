"""Cluster packets open only with the cluster key, once, and only while fresh."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chatd.cluster.seal import BadKey, Dropped, Keyring, Sealer, read_key_file

KEY_A = os.urandom(32)
KEY_B = os.urandom(32)


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def pair(sender_keys: tuple[bytes, ...], receiver_keys: tuple[bytes, ...], clock: Clock):
    return Sealer(Keyring(sender_keys), clock=clock), Sealer(Keyring(receiver_keys), clock=clock)


def test_a_sealed_packet_opens_with_the_same_key_and_hides_its_payload() -> None:
    sender, receiver = pair((KEY_A,), (KEY_A,), Clock())
    packet = sender.seal(b"member n2 is alive")
    assert b"member n2" not in packet
    assert receiver.open(packet) == b"member n2 is alive"


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda p: p[:-1] + bytes([p[-1] ^ 1]), "auth"),
        (lambda p: p[:30] + bytes([p[30] ^ 1]) + p[31:], "auth"),  # the timestamp or counter
        (lambda p: p[:10], "malformed"),
        (lambda p: b"\x07" + p[1:], "version"),
    ],
)
def test_forged_or_damaged_packets_are_dropped_and_counted(mutate, reason) -> None:
    sender, receiver = pair((KEY_A,), (KEY_A,), Clock())
    with pytest.raises(Dropped) as caught:
        receiver.open(mutate(sender.seal(b"suspect n3")))
    assert caught.value.reason == reason
    assert receiver.dropped[reason] == 1


def test_a_node_with_another_key_is_not_heard() -> None:
    sender, receiver = pair((KEY_B,), (KEY_A,), Clock())
    with pytest.raises(Dropped, match="unknown_key"):
        receiver.open(sender.seal(b"join"))


def test_a_replayed_packet_is_dropped_even_out_of_order() -> None:
    sender, receiver = pair((KEY_A,), (KEY_A,), Clock())
    packets = [sender.seal(b"%d" % i) for i in range(10)]
    for packet in reversed(packets):  # reordering is fine
        receiver.open(packet)
    for packet in packets:
        with pytest.raises(Dropped, match="replay"):
            receiver.open(packet)
    assert receiver.dropped["replay"] == 10


def test_a_packet_older_than_the_window_is_stale() -> None:
    clock = Clock()
    sender, receiver = pair((KEY_A,), (KEY_A,), clock)
    packet = sender.seal(b"dead n4")
    receiver.open(packet)
    clock.now += 120
    receiver.open(sender.seal(b"prune trigger"))
    with pytest.raises(Dropped, match="stale"):
        receiver.open(packet)


def test_rotation_old_and_new_key_both_open_while_the_new_one_seals() -> None:
    clock = Clock()
    old_node = Sealer(Keyring((KEY_A,)), clock=clock)
    rotating = Sealer(Keyring((KEY_B, KEY_A)), clock=clock)
    new_node = Sealer(Keyring((KEY_B,)), clock=clock)
    assert rotating.open(old_node.seal(b"x")) == b"x"
    assert rotating.open(new_node.seal(b"y")) == b"y"
    assert new_node.open(rotating.seal(b"z")) == b"z"
    with pytest.raises(Dropped):
        old_node.open(rotating.seal(b"w"))


def test_key_files_hold_64_hex_characters(tmp_path: Path) -> None:
    good = tmp_path / "key"
    good.write_text(" " + KEY_A.hex() + "\n")
    assert read_key_file(good) == KEY_A
    bad = tmp_path / "bad"
    bad.write_text("not a key")
    with pytest.raises(BadKey, match="64 hex"):
        read_key_file(bad)
    with pytest.raises(BadKey, match="cannot read"):
        read_key_file(tmp_path / "missing")
