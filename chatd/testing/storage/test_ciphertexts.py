"""End-to-end encrypted appends: exact device coverage checked inside the append,
per-device ciphertexts kept beside the message until acknowledged or expired."""

from __future__ import annotations

import base64

import pytest
import pytest_asyncio

from chatd.core.e2e import DeviceMismatch
from chatd.core.ids import now_ms
from chatd.core.models import Ciphertext, DeviceKeys, SignedPrekey, WatermarkMove

LIMIT = 1000


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def give_keys(storage, device_id: str, user_id: str) -> None:
    signed = SignedPrekey(1, b64(f"spk-{device_id}"), b64("sig"))
    keys = DeviceKeys(device_id, user_id, b64("ik"), signed, now_ms())
    await storage.keys.put(keys, [], limit=LIMIT)


def sealed(*device_ids: str) -> dict[str, Ciphertext]:
    return {d: Ciphertext("message", b64(f"for {d}")) for d in device_ids}


@pytest_asyncio.fixture
async def pair(storage, make_user, make_device, make_direct):
    """Alice (phone, laptop) and Bob (phone, tablet without keys), their chat."""
    alice, bob = await make_user("alice"), await make_user("bob")
    devices = {
        "a_phone": await make_device(alice, "phone"),
        "a_laptop": await make_device(alice, "laptop"),
        "b_phone": await make_device(bob, "phone"),
        "b_tablet": await make_device(bob, "tablet"),
    }
    for name in ("a_phone", "a_laptop", "b_phone"):
        await give_keys(storage, devices[name].device_id, devices[name].user_id)
    chat = await make_direct(alice, bob)
    return alice, bob, chat, {k: v.device_id for k, v in devices.items()}


def encrypted(draft, chat, alice, ids, *devices: str, **kwargs):
    return draft(
        chat,
        alice,
        device=ids["a_phone"],
        content="",
        encrypted=True,
        ciphertexts=sealed(*devices),
        **kwargs,
    )


async def test_an_exact_map_is_stored_and_each_device_reads_its_own(storage, pair, draft):
    alice, _, chat, ids = pair
    appended = await storage.messages.append(
        encrypted(draft, chat, alice, ids, ids["a_laptop"], ids["b_phone"])
    )
    m = appended.message
    assert appended.created and m.encrypted and m.content == ""
    stored = await storage.messages.at_seq(chat.chat_id, m.seq)
    assert stored is not None and stored.encrypted and stored.content == ""
    for name in ("a_laptop", "b_phone"):
        own = await storage.ciphertexts.between(ids[name], chat.chat_id, 1, m.seq)
        assert own == {m.seq: sealed(ids[name])[ids[name]]}
    for name in ("a_phone", "b_tablet"):
        assert await storage.ciphertexts.between(ids[name], chat.chat_id, 1, m.seq) == {}


@pytest.mark.parametrize(
    ("covered", "missing", "unknown"),
    [
        (["a_laptop"], ["b_phone"], []),  # a recipient device left out
        (["b_phone"], ["a_laptop"], []),  # the sender's other device left out
        (["a_laptop", "b_phone", "b_tablet"], [], ["b_tablet"]),  # no bundle
        (["a_laptop", "b_phone", "a_phone"], [], ["a_phone"]),  # the sending device
        (["a_laptop", "b_phone", "stranger"], [], ["stranger"]),
    ],
)
async def test_a_map_that_is_not_exact_is_refused_and_nothing_is_stored(
    storage, pair, draft, covered, missing, unknown
):
    alice, _, chat, ids = pair
    ids = {**ids, "stranger": "stranger-device"}
    with pytest.raises(DeviceMismatch) as refused:
        await storage.messages.append(
            encrypted(draft, chat, alice, ids, *(ids[n] for n in covered), client_msg_id="x1")
        )
    assert refused.value.code == "bad_request"
    assert refused.value.missing == sorted(ids[n] for n in missing)
    assert refused.value.unknown == sorted(ids[n] for n in unknown)
    assert (await storage.chats.get(chat.chat_id)).last_seq == 0
    for name in ("a_laptop", "b_phone", "b_tablet"):
        assert await storage.ciphertexts.between(ids[name], chat.chat_id, 0, 10) == {}
    # The same client_msg_id may be sent again, right this time.
    retry = await storage.messages.append(
        encrypted(draft, chat, alice, ids, ids["a_laptop"], ids["b_phone"], client_msg_id="x1")
    )
    assert retry.created and retry.message.seq == 1


async def test_a_repeat_answers_the_first_message_whatever_its_map(storage, pair, draft):
    alice, _, chat, ids = pair
    first = await storage.messages.append(
        encrypted(draft, chat, alice, ids, ids["a_laptop"], ids["b_phone"], client_msg_id="r1")
    )
    again = await storage.messages.append(
        encrypted(draft, chat, alice, ids, ids["b_phone"], client_msg_id="r1")
    )
    assert not again.created and again.message == first.message


async def test_a_bundle_uploaded_or_a_device_revoked_counts_for_the_next_append(
    storage, pair, draft
):
    alice, _, chat, ids = pair
    await give_keys(storage, ids["b_tablet"], pair[1].user_id)
    with pytest.raises(DeviceMismatch) as refused:
        await storage.messages.append(
            encrypted(draft, chat, alice, ids, ids["a_laptop"], ids["b_phone"])
        )
    assert refused.value.missing == [ids["b_tablet"]]
    assert await storage.devices.revoke(ids["b_phone"])
    assert await storage.keys.get(ids["b_phone"]) is None  # the bundle went with it
    with pytest.raises(DeviceMismatch) as refused:
        await storage.messages.append(
            encrypted(draft, chat, alice, ids, ids["a_laptop"], ids["b_phone"], ids["b_tablet"])
        )
    assert refused.value.unknown == [ids["b_phone"]]
    ok = await storage.messages.append(
        encrypted(draft, chat, alice, ids, ids["a_laptop"], ids["b_tablet"])
    )
    assert ok.created


async def test_a_revoked_device_cannot_upload_a_bundle_again(storage, pair):
    _, bob, _, ids = pair
    await storage.devices.revoke(ids["b_phone"])
    with pytest.raises(Exception):  # noqa: B017 - unauthorized, whatever the store's wording
        await give_keys(storage, ids["b_phone"], bob.user_id)
    assert await storage.keys.get(ids["b_phone"]) is None


async def test_put_says_whether_the_device_is_new_to_the_set(storage, pair):
    _, bob, _, ids = pair
    signed = SignedPrekey(1, b64("spk"), b64("sig"))
    keys = DeviceKeys(ids["b_tablet"], bob.user_id, b64("ik"), signed, now_ms())
    assert await storage.keys.put(keys, [], limit=LIMIT) is True
    assert await storage.keys.put(keys, [], limit=LIMIT) is False


async def test_a_delivery_receipt_deletes_that_devices_ciphertexts_up_to_it(storage, pair, draft):
    alice, bob, chat, ids = pair
    seqs = []
    for _ in range(3):
        appended = await storage.messages.append(
            encrypted(draft, chat, alice, ids, ids["a_laptop"], ids["b_phone"])
        )
        seqs.append(appended.message.seq)
    move = WatermarkMove(chat.chat_id, bob.user_id, device_id=ids["b_phone"], delivered_seq=seqs[1])
    await storage.receipts.advance([move])
    left = await storage.ciphertexts.between(ids["b_phone"], chat.chat_id, 1, 10)
    assert set(left) == {seqs[2]}
    # Another device's copies are its own to acknowledge.
    laptop = await storage.ciphertexts.between(ids["a_laptop"], chat.chat_id, 1, 10)
    assert set(laptop) == set(seqs)
    # A read receipt names no device: it deletes nothing.
    await storage.receipts.advance([WatermarkMove(chat.chat_id, alice.user_id, read_seq=seqs[2])])
    assert set(await storage.ciphertexts.between(ids["a_laptop"], chat.chat_id, 1, 10)) == set(seqs)


async def test_expire_deletes_only_what_was_stored_before_the_cutoff(storage, pair, draft):
    alice, _, chat, ids = pair
    old = await storage.messages.append(
        encrypted(draft, chat, alice, ids, ids["a_laptop"], ids["b_phone"])
    )
    await storage.ciphertexts.expire(old.message.created_at - 3_600_000)
    assert await storage.ciphertexts.between(ids["b_phone"], chat.chat_id, 1, 10)
    # Anything a store keeps by the hour is gone two hours later.
    await storage.ciphertexts.expire(now_ms() + 2 * 3_600_000)
    for name in ("a_laptop", "b_phone"):
        assert await storage.ciphertexts.between(ids[name], chat.chat_id, 1, 10) == {}
    # The message itself stays.
    assert await storage.messages.at_seq(chat.chat_id, old.message.seq) is not None


async def test_ciphertexts_are_read_by_range(storage, pair, draft):
    alice, _, chat, ids = pair
    for _ in range(4):
        await storage.messages.append(
            encrypted(draft, chat, alice, ids, ids["a_laptop"], ids["b_phone"])
        )
    assert set(await storage.ciphertexts.between(ids["b_phone"], chat.chat_id, 2, 3)) == {2, 3}
