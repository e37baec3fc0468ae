"""End-to-end encryption key bundles: upload, fetch (each one-time prekey once), count."""

from __future__ import annotations

import asyncio
import base64
import os

import pytest

from chatd.client import ApiError


@pytest.fixture
def config_overrides():
    return {"limits": {"key_fetches_per_minute": 600}}


def key(size: int = 33) -> str:
    return base64.b64encode(os.urandom(size)).decode()


def one_time(first: int, count: int) -> list[dict]:
    return [{"key_id": i, "public_key": key()} for i in range(first, first + count)]


async def publish(client, count: int = 5, *, identity: str | None = None) -> dict:
    """Upload a fresh bundle; returns it as sent."""
    body = {
        "identity_key": identity or key(),
        "signed_prekey": {"key_id": 1, "public_key": key(), "signature": key(64)},
        "one_time_prekeys": one_time(1, count),
    }
    result = await client.upload_keys(**body)
    assert result == {"one_time_prekeys": count}
    return body


async def test_a_fetched_bundle_is_what_the_device_uploaded(user):
    alice, bob = await user(), await user()
    sent = await publish(bob, 3)
    [device] = await alice.get_keys(bob.user_id)
    assert device["device_id"] == bob.device_id
    assert device["identity_key"] == sent["identity_key"]
    assert device["signed_prekey"] == sent["signed_prekey"]
    assert device["one_time_prekey"] in sent["one_time_prekeys"]
    assert await bob.key_count() == 2


async def test_one_time_prekeys_run_out_then_come_back_as_null(user):
    alice, bob = await user(), await user()
    sent = await publish(bob, 2)
    handed = [(await alice.get_keys(bob.user_id))[0]["one_time_prekey"] for _ in range(3)]
    assert handed[2] is None
    assert sorted(handed[:2], key=lambda k: k["key_id"]) == sent["one_time_prekeys"]
    assert await bob.key_count() == 0
    # Topping up needs only the new prekeys.
    await bob.request("PUT", "/keys", json={"one_time_prekeys": one_time(10, 2)})
    assert await bob.key_count() == 2


async def test_twenty_concurrent_fetches_get_twenty_distinct_prekeys(user):
    bob = await user()
    await publish(bob, 25)
    fetchers = await asyncio.gather(*(user() for _ in range(20)))
    results = await asyncio.gather(*(f.get_keys(bob.user_id) for f in fetchers))
    ids = [r[0]["one_time_prekey"]["key_id"] for r in results]
    assert len(set(ids)) == 20
    assert await bob.key_count() == 5


async def test_every_live_device_gets_a_bundle_but_not_the_callers_own(user, device):
    alice, bob = await user(), await user()
    bob_phone = await device(bob)
    alice_laptop = await device(alice)
    for client in (bob, bob_phone, alice, alice_laptop):
        await publish(client, 2)
    bundles = await alice.get_keys(bob.user_id)
    assert {b["device_id"] for b in bundles} == {bob.device_id, bob_phone.device_id}
    # Her own other devices, for sending to herself, without the calling one.
    own = await alice.get_keys(alice.user_id)
    assert [b["device_id"] for b in own] == [alice_laptop.device_id]
    # A revoked device's keys are no longer handed out.
    await bob.revoke_device(bob_phone.device_id)
    assert [b["device_id"] for b in await alice.get_keys(bob.user_id)] == [bob.device_id]


async def test_user_without_keys_has_no_devices_and_unknown_user_is_404(user):
    alice, bob = await user(), await user()
    assert await alice.get_keys(bob.user_id) == []
    with pytest.raises(ApiError) as err:
        await alice.get_keys("no-such-user")
    assert err.value.status == 404 and err.value.code == "not_found"


async def test_a_reinstalled_device_replaces_its_identity_and_prekeys(user):
    alice, bob = await user(), await user()
    await publish(bob, 5)
    fresh = await publish(bob, 2)  # new identity key: the 5 earlier prekeys are void
    assert await bob.key_count() == 2
    [device] = await alice.get_keys(bob.user_id)
    assert device["identity_key"] == fresh["identity_key"]
    assert device["one_time_prekey"] in fresh["one_time_prekeys"]


@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        ({"one_time_prekeys": []}, "identity_key and signed_prekey"),
        (
            {
                "identity_key": "not base64!",
                "signed_prekey": {"key_id": 1, "public_key": key(), "signature": key()},
            },
            "identity_key",
        ),
        (
            {"identity_key": key(), "signed_prekey": {"key_id": -1, "public_key": key()}},
            "signed_prekey.key_id",
        ),
        (
            {
                "identity_key": key(),
                "signed_prekey": {"key_id": 1, "public_key": key(), "signature": key()},
                "one_time_prekeys": [{"key_id": 1, "public_key": key()}] * 2,
            },
            "repeats key_id 1",
        ),
        (
            {
                "identity_key": key(),
                "signed_prekey": {"key_id": 1, "public_key": key(), "signature": key()},
                "one_time_prekeys": one_time(0, 1001),
            },
            "at most 1000",
        ),
        ({"identity_key": key(), "signed_prekey": "nope"}, "signed_prekey must be an object"),
    ],
)
async def test_bad_uploads_are_refused_and_store_nothing(user, body, mentions):
    bob = await user()
    with pytest.raises(ApiError) as err:
        await bob.request("PUT", "/keys", json=body)
    assert err.value.status == 400 and err.value.code == "bad_request"
    assert mentions in str(err.value)
    assert await bob.key_count() == 0
    alice = await user()
    assert await alice.get_keys(bob.user_id) == []


async def test_a_device_cannot_hold_more_than_1000_prekeys(user):
    bob = await user()
    sent = await publish(bob, 900)
    with pytest.raises(ApiError) as err:
        await bob.request("PUT", "/keys", json={"one_time_prekeys": one_time(1000, 101)})
    assert err.value.code == "bad_request"
    assert await bob.key_count() == 900
    # A retried upload re-sends prekeys the device holds: they do not count twice.
    retried = sent["one_time_prekeys"] + one_time(1000, 100)
    await bob.request("PUT", "/keys", json={"one_time_prekeys": retried})
    assert await bob.key_count() == 1000


async def test_a_new_identity_key_needs_a_new_signed_prekey(user):
    alice, bob = await user(), await user()
    sent = await publish(bob, 3)
    for body in (
        {"identity_key": key(), "one_time_prekeys": one_time(10, 2)},
        {"identity_key": key(), "signed_prekey": sent["signed_prekey"]},  # the old one again
    ):
        with pytest.raises(ApiError) as err:
            await bob.request("PUT", "/keys", json=body)
        assert err.value.status == 400 and err.value.code == "bad_request"
        assert "new signed_prekey" in str(err.value)
    # Nothing changed: the old bundle and its prekeys are still handed out.
    assert await bob.key_count() == 3
    [device] = await alice.get_keys(bob.user_id)
    assert device["identity_key"] == sent["identity_key"]
    assert device["signed_prekey"] == sent["signed_prekey"]
    # The identity key it already has, sent again without a signed prekey: a top-up.
    body = {"identity_key": sent["identity_key"], "one_time_prekeys": one_time(10, 2)}
    assert await bob.request("PUT", "/keys", json=body) == {"one_time_prekeys": 4}


async def test_keys_need_a_token(base_url):
    from chatd.client import ChatdClient

    async with ChatdClient(base_url) as anonymous:
        for method, path in (("GET", "/keys/count"), ("PUT", "/keys"), ("GET", "/keys/x")):
            with pytest.raises(ApiError) as err:
                await anonymous.request(method, path, json={} if method == "PUT" else None)
            assert (err.value.status, err.value.code) == (401, "unauthorized")


@pytest.mark.parametrize("config_overrides", [{"limits": {"key_fetches_per_minute": 12}}])
async def test_fetching_bundles_is_rate_limited_per_caller(user):
    mallory, bob, carol = await user(), await user(), await user()
    await publish(bob, 50)
    for _ in range(2):  # a burst of a tenth of the minute's allowance
        await mallory.get_keys(bob.user_id)
    with pytest.raises(ApiError) as err:
        await mallory.get_keys(bob.user_id)
    assert err.value.status == 429 and err.value.code == "rate_limited"
    assert await bob.key_count() == 48  # the refused fetch used up nothing
    await carol.get_keys(bob.user_id)  # others are not affected
