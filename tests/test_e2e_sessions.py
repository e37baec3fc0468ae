"""The E2E SDK's session logic between in-process devices, no server: what each
device decrypts, in which order, across restarts, and what it refuses.

A ``Directory`` stands in for the server's key directory (``PUT /keys``, ``GET
/keys``) and ``message`` for a ``new_message``'s data, so the devices exchange
exactly the dicts the real server would carry.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from chatd.client.e2e import (
    E2EDevice,
    E2EStore,
    IdentityChanged,
    StoreMismatch,
    WrongStoreKey,
    key_from_passphrase,
)

_ids = itertools.count(1)


class Directory:
    """The public bundles devices uploaded; each fetch hands out one one-time prekey."""

    def __init__(self) -> None:
        self.bundles: dict[str, dict[str, Any]] = {}
        self.prekeys: dict[str, list[dict[str, Any]]] = {}

    def publish(self, device: E2EDevice) -> None:
        body = device.upload_body()
        if body is None:
            return
        self.bundles[device.device_id] = {
            "device_id": device.device_id,
            "identity_key": body["identity_key"],
            "signed_prekey": body["signed_prekey"],
        }
        self.prekeys.setdefault(device.device_id, []).extend(body["one_time_prekeys"])
        device.uploaded(body)

    def fetch(self, device_id: str) -> dict[str, Any]:
        left = self.prekeys[device_id]
        return {**self.bundles[device_id], "one_time_prekey": left.pop(0) if left else None}


class Party:
    """A device with its store file, able to restart from it."""

    def __init__(self, tmp: Path, directory: Directory, user_id: str, device_id: str) -> None:
        self.path = tmp / f"{device_id}.db"
        self.key = bytes([len(device_id)]) * 32
        self.directory = directory
        self.user_id, self.device_id = user_id, device_id
        self.restart()

    def restart(self) -> None:
        if getattr(self, "device", None) is not None:
            self.device.store.close()
        self.device = E2EDevice(
            E2EStore.open(self.path, key=self.key), self.user_id, self.device_id
        )
        self.directory.publish(self.device)

    @property
    def peer(self) -> tuple[str, str]:
        return (self.user_id, self.device_id)

    async def send(self, chat_id: str, text: str, *to: Party) -> dict[str, dict[str, Any]]:
        """``new_message`` data per recipient device, as the server would fan it out."""
        for other in to:
            if not self.device.has_session(*other.peer):
                await self.device.meet(other.user_id, self.directory.fetch(other.device_id))
        cmid = f"c{next(_ids)}"
        ciphertexts = await self.device.seal(
            [o.peer for o in to], chat_id=chat_id, client_msg_id=cmid, content=text
        )
        mid = f"m{next(_ids):06d}"
        return {
            device: message(chat_id, mid, self.user_id, ciphertext, client_msg_id=cmid)
            for device, ciphertext in ciphertexts.items()
        }

    async def read(self, data: dict[str, Any]) -> str | None:
        received = await self.device.open(data)
        assert not received.duplicate
        assert received.error is None, received
        return received.text


def message(
    chat_id: str, message_id: str, sender_id: str, ciphertext: Any, **extra: Any
) -> dict[str, Any]:
    return {
        "message_id": message_id,
        "chat_id": chat_id,
        "seq": int(message_id[1:]),
        "sender_id": sender_id,
        "type": "text",
        "content": "",
        "encrypted": True,
        "ciphertext": ciphertext,
        **extra,
    }


def files_holding(folder: Path, needle: bytes) -> list[Path]:
    return [p for p in folder.iterdir() if needle in p.read_bytes()]


@pytest.fixture
def directory() -> Directory:
    return Directory()


@pytest.fixture
def party(tmp_path: Path, directory: Directory):
    def make(user_id: str, device_id: str | None = None) -> Party:
        return Party(tmp_path, directory, user_id, device_id or f"{user_id}-1")

    return make


async def test_messages_read_out_of_order_and_replies_flow_both_ways(party):
    alice, bob = party("alice"), party("bob")
    sent = [(await alice.send("chat", f"hello {i}", bob))["bob-1"] for i in range(5)]
    order = [3, 0, 4, 2, 1]
    assert [await bob.read(sent[i]) for i in order] == [f"hello {i}" for i in order]
    reply = await bob.send("chat", "got them all", alice)
    assert await alice.read(reply["alice-1"]) == "got them all"
    later = [(await alice.send("chat", f"more {i}", bob))["bob-1"] for i in range(2)]
    assert [await bob.read(m) for m in reversed(later)] == ["more 1", "more 0"]


async def test_a_duplicate_delivery_returns_the_kept_message_without_decrypting_again(party):
    alice, bob = party("alice"), party("bob")
    first = (await alice.send("chat", "only once", bob))["bob-1"]
    assert await bob.read(first) == "only once"
    again = await bob.device.open(first)
    assert (again.duplicate, again.text, again.error) == (True, "only once", None)
    # The same ciphertext under another message id is refused by the ratchet itself.
    replayed = await bob.device.open({**first, "message_id": "m999999"})
    assert replayed.text is None and replayed.duplicate


async def test_the_x3dh_header_repeats_until_the_first_reply(party):
    alice, bob = party("alice"), party("bob")
    sent = [(await alice.send("chat", f"m{i}", bob))["bob-1"] for i in range(3)]
    assert [m["ciphertext"]["type"] for m in sent] == ["prekey"] * 3
    # Bob reads the second first: the repeated header starts his session once,
    # and the others use it although the one-time prekey is gone by then.
    assert [await bob.read(sent[i]) for i in (1, 2, 0)] == ["m1", "m2", "m0"]
    assert await alice.read((await bob.send("chat", "reply", alice))["alice-1"]) == "reply"
    after = (await alice.send("chat", "after", bob))["bob-1"]
    assert after["ciphertext"]["type"] == "message"
    assert await bob.read(after) == "after"


async def test_group_fan_out_reaches_every_device_with_its_own_ciphertext(party):
    alice, alice_laptop = party("alice"), party("alice", "alice-2")
    bob, bob_phone, carol = party("bob"), party("bob", "bob-2"), party("carol")
    out = await alice.send("group", "hi all", alice_laptop, bob, bob_phone, carol)
    assert set(out) == {"alice-2", "bob-1", "bob-2", "carol-1"}
    assert len({m["ciphertext"]["body"] for m in out.values()}) == 4
    for reader in (alice_laptop, bob, bob_phone, carol):
        assert await reader.read(out[reader.device_id]) == "hi all"
    # A device cannot read another device's entry.
    wrong = await carol.device.open({**out["bob-1"], "message_id": "m900001"})
    assert wrong.text is None and wrong.error == "undecryptable"
    back = await carol.send("group", "hi alice", alice, alice_laptop, bob, bob_phone)
    for reader in (alice, alice_laptop, bob, bob_phone):
        assert await reader.read(back[reader.device_id]) == "hi alice"


async def test_sessions_survive_a_restart_of_both_sides(party):
    alice, bob = party("alice"), party("bob")
    early = [(await alice.send("chat", f"before {i}", bob))["bob-1"] for i in range(3)]
    assert await bob.read(early[2]) == "before 2"
    alice.restart()
    bob.restart()
    # Bob's skipped message keys came back from the store too.
    assert [await bob.read(m) for m in early[:2]] == ["before 0", "before 1"]
    assert await alice.read((await bob.send("chat", "after restart", alice))["alice-1"]) == (
        "after restart"
    )
    assert await bob.read((await alice.send("chat", "still here", bob))["bob-1"]) == "still here"
    kept = [m.text for m in bob.device.history("chat")]
    assert kept == ["before 0", "before 1", "before 2", "still here"]


async def test_the_store_opens_only_with_its_key_and_holds_no_plaintext(party, tmp_path: Path):
    alice, bob = party("alice"), party("bob")
    secret = "the password is swordfish"
    assert await bob.read((await alice.send("chat", secret, bob))["bob-1"]) == secret
    bob.device.store.close()
    with pytest.raises(WrongStoreKey):
        E2EStore.open(bob.path, key=b"\x99" * 32)
    assert files_holding(tmp_path, secret.encode()) == []
    store = E2EStore.open(tmp_path / "phrase.db", passphrase="correct horse")
    assert key_from_passphrase("correct horse", store.salt) != key_from_passphrase(
        "wrong horse", store.salt
    )
    store.close()
    with pytest.raises(WrongStoreKey):
        E2EStore.open(tmp_path / "phrase.db", passphrase="wrong horse")
    assert E2EStore.open(tmp_path / "phrase.db", passphrase="correct horse")


async def test_a_store_belongs_to_one_device(party):
    alice = party("alice")
    with pytest.raises(StoreMismatch):
        E2EDevice(alice.device.store, "alice", "another-device")


async def test_safety_numbers_are_the_same_on_both_sides_and_change_with_a_device(party):
    alice, bob = party("alice"), party("bob")
    await bob.read((await alice.send("chat", "hi", bob))["bob-1"])
    number = alice.device.safety_number("bob")
    assert len(number) == 60 and number.isdigit()
    assert bob.device.safety_number("alice") == number
    bob_phone = party("bob", "bob-2")
    await bob_phone.read((await alice.send("chat", "hi phone", bob_phone))["bob-2"])
    assert alice.device.safety_number("bob") != number


async def test_a_known_device_with_a_new_identity_key_is_flagged_and_not_written_to(
    party, directory
):
    alice, bob = party("alice"), party("bob")
    await bob.read((await alice.send("chat", "hi", bob))["bob-1"])
    before = alice.device.safety_number("bob")
    # Bob's device comes back with a new identity (a wiped store, or a server lying).
    bob.path.unlink()
    bob.restart()
    with pytest.raises(IdentityChanged) as caught:
        await alice.device.meet("bob", directory.fetch("bob-1"))
    assert caught.value.devices == [("bob", "bob-1")]
    with pytest.raises(IdentityChanged):
        await alice.device.seal([bob.peer], chat_id="chat", client_msg_id="x", content="no")
    # A message from the new key is still shown, flagged; the number shown is the old one
    # until the user accepts the new key.
    hello = await bob.send("chat", "it is me, really", alice)
    received = await alice.device.open(hello["alice-1"])
    assert (received.text, received.identity_changed) == ("it is me, really", True)
    assert alice.device.safety_number("bob") == before
    alice.device.accept_identity("bob", "bob-1")
    assert alice.device.safety_number("bob") != before
    assert await bob.read((await alice.send("chat", "welcome back", bob))["bob-1"]) == (
        "welcome back"
    )


async def test_two_devices_starting_sessions_at_once_converge(party):
    alice, bob = party("alice"), party("bob")
    from_alice = (await alice.send("chat", "hi bob", bob))["bob-1"]
    from_bob = (await bob.send("chat", "hi alice", alice))["alice-1"]
    assert await bob.read(from_alice) == "hi bob"
    assert await alice.read(from_bob) == "hi alice"
    for i in range(3):
        assert await bob.read((await alice.send("chat", f"a{i}", bob))["bob-1"]) == f"a{i}"
        assert await alice.read((await bob.send("chat", f"b{i}", alice))["alice-1"]) == f"b{i}"


async def test_a_ciphertext_moved_to_another_chat_or_sender_is_refused(party):
    alice, bob, mallory = party("alice"), party("bob"), party("mallory")
    await bob.read((await alice.send("chat", "warm up", bob))["bob-1"])
    sent = (await alice.send("chat", "for chat only", bob))["bob-1"]
    moved = await bob.device.open({**sent, "chat_id": "other"})
    assert (moved.text, moved.error) == (None, "mismatch")
    relabelled = await bob.device.open({**sent, "message_id": "m900002", "sender_id": "mallory"})
    assert relabelled.text is None and relabelled.error == "undecryptable"
    assert mallory.device.identity_key != alice.device.identity_key


async def test_one_time_prekeys_are_numbered_and_topped_up(party):
    alice = party("alice")
    assert alice.device.upload_body() is None
    alice.device.add_prekeys(3)
    body = alice.device.upload_body()
    ids = [p["key_id"] for p in body["one_time_prekeys"]]
    assert len(ids) == 3 and min(ids) > 100
    alice.device.uploaded(body)
    assert alice.device.upload_body() is None
