"""End-to-end encrypted messages through the wire: the server relays one opaque
ciphertext per device, checks that a send covers exactly the devices it must,
and keeps each ciphertext only until its device acknowledges it or it expires.

The bodies are random bytes: the server cannot read them anyway.
"""

from __future__ import annotations

import asyncio
import base64
import os
import uuid

import pytest

from chatd.client import ApiError
from chatd.core.ids import now_ms

DAY_MS = 86_400_000


@pytest.fixture
def config_overrides():
    return {
        "limits": {"key_fetches_per_minute": 6000, "messages_per_second": 1000},
        "e2e": {
            "prekey_low_watermark": 20,
            "max_devices_per_message": 8,
            "max_ciphertext_bytes": 256,
        },
    }


def b64(size: int = 33) -> str:
    return base64.b64encode(os.urandom(size)).decode()


async def publish(client, prekeys: int = 5, first: int = 1) -> None:
    """Upload a bundle for ``client``'s device."""
    await client.upload_keys(
        identity_key=b64(),
        signed_prekey={"key_id": 1, "public_key": b64(), "signature": b64(64)},
        one_time_prekeys=[
            {"key_id": i, "public_key": b64()} for i in range(first, first + prekeys)
        ],
    )


def sealed(*clients_or_ids) -> dict[str, dict[str, str]]:
    """A ciphertexts map: random bytes for each device."""
    ids = [c if isinstance(c, str) else c.device_id for c in clients_or_ids]
    return {d: {"type": "message", "body": b64(48)} for d in ids}


async def history(client, chat_id: str) -> list[dict]:
    """The chat's history as ``client``'s device sees it, oldest first."""
    return (await client.messages(chat_id, after_seq=0))["messages"]


async def refused(send) -> ApiError:
    with pytest.raises(ApiError) as caught:
        await send
    assert caught.value.code == "bad_request", caught.value
    return caught.value


@pytest.fixture
async def people(user, device):
    """Alice (phone, laptop) and Bob (phone; a tablet without keys), their chat."""
    alice, bob = await user(), await user()
    alice_laptop, bob_tablet = await device(alice), await device(bob)
    for client in (alice, alice_laptop, bob):
        await publish(client)
    chat = await alice.open_direct(bob.user_id)
    return alice, alice_laptop, bob, bob_tablet, chat["chat_id"]


# -- coverage ------------------------------------------------------------------


async def test_a_send_must_cover_exactly_the_devices_with_keys_and_nothing_is_stored_otherwise(
    people, user, device, services
):
    alice, alice_laptop, bob, bob_tablet, chat_id = people
    stranger = await user()
    await publish(stranger)
    bob_old = await device(bob)
    await publish(bob_old)
    revoked = bob_old.device_id
    await bob_old.logout()  # revoked: no longer a device anyone must (or may) cover

    cases = [
        ((alice_laptop,), {"missing_devices": [bob.device_id], "unknown_devices": []}),
        ((bob,), {"missing_devices": [alice_laptop.device_id], "unknown_devices": []}),
        ((alice_laptop, bob, stranger), {"unknown_devices": [stranger.device_id]}),
        ((alice_laptop, bob, bob_tablet), {"unknown_devices": [bob_tablet.device_id]}),
        ((alice_laptop, bob, revoked), {"unknown_devices": [revoked]}),
        ((alice_laptop, bob, alice), {"unknown_devices": [alice.device_id]}),
    ]
    client_msg_id = str(uuid.uuid4())
    for covered, expected in cases:
        error = await refused(
            alice.send_message(
                chat_id=chat_id,
                encrypted=True,
                ciphertexts=sealed(*covered),
                client_msg_id=client_msg_id,
            )
        )
        for field, ids in expected.items():
            assert error.details[field] == ids, (covered, error.details)
            for device_id in ids:
                assert device_id in error.message
    # Nothing was stored: no message, no ciphertext.
    assert await history(bob, chat_id) == []
    store = services.storage.ciphertexts
    for device_id in (alice_laptop.device_id, bob.device_id, stranger.device_id, revoked):
        assert await store.between(device_id, chat_id, 0, 100) == {}

    # The same client_msg_id, with the right devices, is a new message.
    sent = await alice.send_message(
        chat_id=chat_id,
        encrypted=True,
        ciphertexts=sealed(alice_laptop, bob),
        client_msg_id=client_msg_id,
    )
    assert sent["seq"] == 1
    again = await alice.send_message(
        chat_id=chat_id,
        encrypted=True,
        ciphertexts=sealed(alice_laptop, bob),
        client_msg_id=client_msg_id,
    )
    assert again["message_id"] == sent["message_id"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"content": "plain text leaks", "ciphertexts": {}}, "bad_request"),
        ({"content": ""}, "bad_request"),  # no ciphertexts
        ({"content": "", "ciphertexts": {"d": {"type": "other", "body": "AA=="}}}, "bad_request"),
        ({"content": "", "ciphertexts": {"d": {"type": "message", "body": "%%"}}}, "bad_request"),
        (
            {"content": "", "ciphertexts": {"d": {"type": "message", "body": "A" * 400}}},
            "payload_too_large",
        ),
        (
            {
                "content": "",
                "ciphertexts": {f"d{i}": {"type": "message", "body": "AA=="} for i in range(9)},
            },
            "payload_too_large",
        ),
    ],
)
async def test_malformed_encrypted_sends_are_refused(user, body, code, config_overrides):
    alice, bob = await user(), await user()
    with pytest.raises(ApiError) as caught:
        await alice.request(
            "POST",
            "/messages",
            json={
                "recipient_id": bob.user_id,
                "type": "text",
                "client_msg_id": "m1",
                "encrypted": True,
                **body,
            },
        )
    assert caught.value.code == code


# -- who gets what -------------------------------------------------------------


async def test_each_device_gets_only_its_own_ciphertext_live_on_replay_and_in_history(
    people, device
):
    alice, alice_laptop, bob, bob_tablet, chat_id = people
    bob_offline = await device(bob)
    await publish(bob_offline)
    # The offline device is left to the replay; the others listen live.
    async with (
        alice_laptop.connect(auto_delivery_receipts=False) as laptop_ws,
        bob.connect(auto_delivery_receipts=False) as bob_ws,
        bob_tablet.connect() as tablet_ws,
        alice.connect() as alice_ws,
    ):
        ciphertexts = sealed(alice_laptop, bob, bob_offline)
        sent = await alice_ws.send_message(chat_id=chat_id, encrypted=True, ciphertexts=ciphertexts)
        for client, ws in ((alice_laptop, laptop_ws), (bob, bob_ws)):
            data = (await ws.next_event("new_message"))["data"]
            assert data["message_id"] == sent["message_id"]
            assert data["encrypted"] is True and data["content"] == ""
            assert data["ciphertext"] == ciphertexts[client.device_id]
        # A device without keys sees that a message came, but nothing to read.
        data = (await tablet_ws.next_event("new_message"))["data"]
        assert data["encrypted"] is True and data["ciphertext"] is None

    async with bob_offline.connect(auto_delivery_receipts=False) as ws:
        data = (await ws.next_event("new_message"))["data"]
        assert data["message_id"] == sent["message_id"]
        assert data["ciphertext"] == ciphertexts[bob_offline.device_id]

    for client in (alice_laptop, bob, bob_offline):
        [message] = await history(client, chat_id)
        assert message["content"] == "" and message["encrypted"] is True
        assert message["ciphertext"] == ciphertexts[client.device_id]
    for client in (alice, bob_tablet):  # the sender's own device, a device without keys
        [message] = await history(client, chat_id)
        assert message["ciphertext"] is None


async def test_plain_messages_say_they_are_not_encrypted(people):
    alice, _, bob, _, chat_id = people
    await alice.send_message(chat_id=chat_id, content="hello")
    [message] = await history(bob, chat_id)
    assert message["encrypted"] is False and "ciphertext" not in message


async def test_a_ciphertext_is_gone_once_its_device_acknowledges_it(people):
    alice, alice_laptop, bob, _, chat_id = people
    first = await alice.send_message(
        chat_id=chat_id, encrypted=True, ciphertexts=sealed(alice_laptop, bob)
    )
    second = await alice.send_message(
        chat_id=chat_id, encrypted=True, ciphertexts=sealed(alice_laptop, bob)
    )
    async with bob.connect(auto_delivery_receipts=False) as ws:
        await ws.collect("new_message", 2)
        await ws.delivery_receipt(chat_id, first["message_id"])
    seen = {m["seq"]: m["ciphertext"] for m in await history(bob, chat_id)}
    assert seen[first["seq"]] is None and seen[second["seq"]] is not None
    # Another device's copy is untouched by Bob's receipt.
    laptop = {m["seq"]: m["ciphertext"] for m in await history(alice_laptop, chat_id)}
    assert laptop[first["seq"]] is not None
    # Acknowledged, it is not replayed either; the other one is.
    async with bob.connect() as ws:
        data = (await ws.next_event("new_message"))["data"]
        assert data["seq"] == second["seq"] and data["ciphertext"] is not None


async def test_the_retention_sweep_deletes_ciphertexts_past_retention(people, services):
    alice, alice_laptop, bob, _, chat_id = people
    await alice.send_message(chat_id=chat_id, encrypted=True, ciphertexts=sealed(alice_laptop, bob))
    await services.sealed.sweep(now=now_ms() + 29 * DAY_MS)
    assert (await history(bob, chat_id))[0]["ciphertext"] is not None
    await services.sealed.sweep(now=now_ms() + 31 * DAY_MS)
    for client in (bob, alice_laptop):
        [message] = await history(client, chat_id)
        assert message["ciphertext"] is None and message["content"] == ""


async def test_a_device_added_later_gets_nothing_sent_before_it(people, device):
    alice, alice_laptop, bob, _, chat_id = people
    await alice.send_message(chat_id=chat_id, encrypted=True, ciphertexts=sealed(alice_laptop, bob))
    bob_new = await device(bob)
    await publish(bob_new)
    # The next send must cover it.
    error = await refused(
        alice.send_message(chat_id=chat_id, encrypted=True, ciphertexts=sealed(alice_laptop, bob))
    )
    assert error.details["missing_devices"] == [bob_new.device_id]
    after = await alice.send_message(
        chat_id=chat_id, encrypted=True, ciphertexts=sealed(alice_laptop, bob, bob_new)
    )
    async with bob_new.connect() as ws:
        seen = [e["data"] for e in await ws.collect("new_message", 2)]
    assert [m["ciphertext"] is not None for m in seen] == [False, True]
    assert seen[1]["message_id"] == after["message_id"]


# -- events --------------------------------------------------------------------


async def nothing_more(ws, type_: str) -> None:
    """No ``type_`` event waits on ``ws``: a ping round trip orders it after any
    event published before the call."""
    await ws.ping()
    with pytest.raises(TimeoutError):
        await ws.next_event(type_, timeout=0.05)


async def test_keys_low_goes_to_the_device_whose_prekeys_ran_low_and_to_no_one_else(user, device):
    alice, bob = await user(), await user()
    bob_laptop = await device(bob)
    await publish(bob, prekeys=21)
    await publish(bob_laptop, prekeys=50)
    async with (
        bob.connect() as bob_ws,
        bob_laptop.connect() as laptop_ws,
        alice.connect() as alice_ws,
    ):
        await alice.get_keys(bob.user_id)  # 20 left: not under the watermark
        await nothing_more(bob_ws, "keys_low")
        await alice.get_keys(bob.user_id)  # 19 left
        event = await bob_ws.next_event("keys_low")
        assert event["data"] == {"one_time_prekeys": 19}
        await nothing_more(laptop_ws, "keys_low")
        await nothing_more(alice_ws, "keys_low")


async def test_devices_changed_reaches_chat_peers_contacts_and_own_devices_only(user, device):
    alice, bob, carol, dave = await user(), await user(), await user(), await user()
    await publish(bob)
    await alice.open_direct(bob.user_id)
    await carol.add_contact(bob.user_id)
    bob_new = await device(bob)
    async with (
        alice.connect() as alice_ws,
        carol.connect() as carol_ws,
        dave.connect() as dave_ws,
        bob.connect() as bob_ws,
    ):
        await publish(bob_new)
        for ws in (alice_ws, carol_ws, bob_ws):
            event = await ws.next_event("devices_changed")
            assert event["data"]["user_id"] == bob.user_id
            assert sorted(event["data"]["device_ids"]) == sorted([bob.device_id, bob_new.device_id])
        await nothing_more(dave_ws, "devices_changed")
        # More prekeys for a device that has a bundle change nothing.
        await publish(bob_new, first=100)
        await nothing_more(alice_ws, "devices_changed")
        # A device logged out: its bundle is gone at once, and the peers are told.
        await bob_new.logout()
        for ws in (alice_ws, carol_ws, bob_ws):
            event = await ws.next_event("devices_changed")
            assert event["data"]["device_ids"] == [bob.device_id]
        await nothing_more(dave_ws, "devices_changed")
    assert [d["device_id"] for d in await alice.get_keys(bob.user_id)] == [bob.device_id]


# -- races ---------------------------------------------------------------------


async def keep_sending(ws, sends, chat_id, *recipients, count: int = 60) -> None:
    """Pipeline ``count`` encrypted sends on ``ws``, one a millisecond, into ``sends``."""
    for _ in range(count):
        send = ws.send_message(chat_id=chat_id, encrypted=True, ciphertexts=sealed(*recipients))
        sends.append(asyncio.ensure_future(send))
        await asyncio.sleep(0.001)


async def test_a_bundle_uploaded_during_sends_is_never_skipped_after_it_counts(people, device):
    """Sends pipelined on one socket, none covering a device whose bundle is being
    uploaded meanwhile: in send order, some are stored, then every later one is
    refused naming that device. Once the upload has answered, no send without it
    is stored, and no stored message lacks it after one was refused for it."""
    alice, alice_laptop, bob, _, chat_id = people
    bob_new = await device(bob)
    for _ in range(3):
        async with alice.connect() as ws:
            sends: list[asyncio.Future] = []
            sending = asyncio.ensure_future(keep_sending(ws, sends, chat_id, alice_laptop, bob))
            await asyncio.sleep(0.01)
            await publish(bob_new)
            await sending
            outcomes = await asyncio.gather(*sends, return_exceptions=True)
        stored = [not isinstance(o, BaseException) for o in outcomes]
        for o in outcomes:
            if isinstance(o, BaseException):
                assert isinstance(o, ApiError) and o.details["missing_devices"] == [
                    bob_new.device_id
                ]
        # Accepted first, refused after: never a stored one after a refused one.
        assert stored == sorted(stored, reverse=True), stored
        error = await refused(
            alice.send_message(
                chat_id=chat_id, encrypted=True, ciphertexts=sealed(alice_laptop, bob)
            )
        )
        assert error.details["missing_devices"] == [bob_new.device_id]
        await bob_new.logout()
        bob_new = await device(bob)
