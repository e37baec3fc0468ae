"""Many accounts together cannot drain one device's one-time prekeys."""

from __future__ import annotations

import asyncio

import pytest

from tests.abuse_checks import assert_still_healthy
from tests.features.test_keys import publish


@pytest.fixture
def config_overrides():
    return {"limits": {"key_fetches_per_minute": 600, "key_claims_per_device_per_hour": 10}}


async def test_many_fetchers_get_at_most_the_hourly_claims_of_a_device(base_url, user, device):
    bob = await user()
    bob_phone = await device(bob)
    await publish(bob, 50)
    await publish(bob_phone, 50)
    sybils = [await user() for _ in range(6)]
    carol, dave = await user(), await user()
    async with dave.connect() as dave_ws:
        # Each account stays within its own fetch limit; together they ask 30 times.
        rounds = await asyncio.gather(*(s.get_keys(bob.user_id) for s in sybils for _ in range(5)))
        await assert_still_healthy(base_url, carol, dave, dave_ws)
    per_device: dict[str, list] = {}
    for bundles in rounds:
        assert len(bundles) == 2  # every fetch answered, for both devices
        for b in bundles:
            assert b["signed_prekey"]["signature"]  # a session can still start
            per_device.setdefault(b["device_id"], []).append(b["one_time_prekey"])
    for handed in per_device.values():
        keys = [k["key_id"] for k in handed if k is not None]
        assert len(keys) == 10 and len(set(keys)) == 10  # the hour's claims, each once
    assert await bob.key_count() == 40 and await bob_phone.key_count() == 40
