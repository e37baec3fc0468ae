"""Accounts under attack: password guessing that must not lock the owner out,
login floods that must not starve the hashing, registration floods.

Clients stand at different addresses through X-Forwarded-For, which chatd takes
from its trusted proxies (loopback by default), as behind nginx.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import aiohttp
import pytest

from tests.abuse_checks import assert_still_healthy
from tests.conftest import PASSWORD


@pytest.fixture
def config_overrides():
    return {
        "limits": {
            "login_attempts_per_minute": 3,
            "login_attempts_per_address_per_minute": 20,
            "login_attempts_per_username_per_minute": 8,
            "registrations_per_address_per_hour": 3,
            "password_hashes_at_once": 1,
            "password_hash_queue": 4,
        },
        # Each hash takes a few tens of milliseconds, so a flood really queues.
        "auth": {"argon2_time_cost": 2, "argon2_memory_kib": 8192},
    }


async def login(
    http: aiohttp.ClientSession,
    base_url: str,
    username: str,
    password: str,
    *,
    address: str,
    token: str | None = None,
) -> tuple[int, dict[str, Any], float | None]:
    """POST /auth/login as a client at ``address``: (status, body, Retry-After)."""
    headers = {"X-Forwarded-For": address}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    body = {"username": username, "password": password}
    async with http.post(f"{base_url}/api/v1/auth/login", json=body, headers=headers) as resp:
        retry = resp.headers.get("Retry-After")
        return resp.status, await resp.json(), float(retry) if retry else None


@pytest.fixture
async def http():
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def bystanders(user):
    """Two users who chat while the attack runs; the receiver's socket is open."""
    bob, carol = await user(), await user()
    async with carol.connect() as carol_ws:
        yield bob, carol, carol_ws


async def test_a_slow_guesser_elsewhere_never_locks_the_owner_out(base_url, http, user, bystanders):
    alice = await user()
    bob, carol, carol_ws = bystanders
    stop = asyncio.Event()
    refused = []

    async def guesser() -> None:  # one wrong password every 50 ms from one address
        while not stop.is_set():
            status, _, _ = await login(http, base_url, alice.username, "guess", address="10.6.6.6")
            refused.append(status)
            await asyncio.sleep(0.05)

    attack = asyncio.create_task(guesser())
    try:
        await asyncio.sleep(0.5)
        for _ in range(4):  # the owner, from home, keeps getting in
            status, body, _ = await login(
                http, base_url, alice.username, PASSWORD, address="192.0.2.10"
            )
            assert status == 200 and body["user_id"] == alice.user_id
            await assert_still_healthy(base_url, bob, carol, carol_ws)
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await attack
    assert set(refused) == {401, 429} and refused[:3] == [401, 401, 401]
    assert 429 in refused[3:4]  # the guesser's own address was held back


async def test_many_addresses_lock_the_username_but_not_a_device_of_the_owner(
    base_url, http, user, bystanders
):
    alice = await user()
    bob, carol, carol_ws = bystanders
    for i in range(8):  # a botnet: one guess each, the per-username budget spent
        status, _, _ = await login(http, base_url, alice.username, "guess", address=f"10.7.0.{i}")
        assert status == 401
    status, _, retry = await login(http, base_url, alice.username, PASSWORD, address="192.0.2.20")
    assert status == 429 and retry is not None and retry >= 1  # a new device must wait
    # A phone the owner already has logs in again: its token vouches for it.
    status, body, _ = await login(
        http, base_url, alice.username, PASSWORD, address="192.0.2.20", token=alice.token
    )
    assert status == 200 and body["user_id"] == alice.user_id
    # The chatd client sends the token it holds by itself.
    assert (await alice.login(alice.username, PASSWORD))["user_id"] == alice.user_id
    # Someone else's token vouches for nothing.
    status, _, _ = await login(
        http, base_url, alice.username, PASSWORD, address="192.0.2.20", token=bob.token
    )
    assert status == 429
    await assert_still_healthy(base_url, bob, carol, carol_ws)


async def test_one_address_spraying_many_usernames_is_held_back(base_url, http, user):
    statuses = []
    for i in range(24):
        status, _, _ = await login(http, base_url, f"victim{i}", "guess", address="10.8.8.8")
        statuses.append(status)
    assert statuses[:20] == [401] * 20 and set(statuses[20:]) == {429}
    alice = await user()
    status, _, _ = await login(http, base_url, alice.username, PASSWORD, address="10.9.9.9")
    assert status == 200  # other addresses are not affected


async def test_a_login_flood_is_refused_early_instead_of_queued(base_url, http, bystanders, user):
    alice = await user()
    bob, carol, carol_ws = bystanders

    async def stranger(i: int) -> tuple[int, float | None, float]:
        started = time.perf_counter()
        status, _, retry = await login(
            http, base_url, f"nobody-{uuid.uuid4().hex[:8]}", "guess", address=f"10.10.{i}.1"
        )
        return status, retry, time.perf_counter() - started

    flood = [asyncio.create_task(stranger(i)) for i in range(60)]
    await asyncio.sleep(0.05)
    await assert_still_healthy(base_url, bob, carol, carol_ws)
    results = await asyncio.gather(*flood)
    statuses = [s for s, _, _ in results]
    assert set(statuses) == {401, 429}
    # At most one hashing plus four waiting at any time: most were turned away,
    # each at once and with a Retry-After, none kept waiting behind the others.
    assert statuses.count(429) >= 30
    assert all(r is not None and r >= 1 for s, r, _ in results if s == 429)
    # Once the flood is over the owner logs in as fast as ever.
    started = time.perf_counter()
    status, _, _ = await login(http, base_url, alice.username, PASSWORD, address="192.0.2.30")
    assert status == 200 and time.perf_counter() - started < 1.0
    await assert_still_healthy(base_url, bob, carol, carol_ws)


async def test_registrations_are_limited_per_address_and_hour(base_url):
    async def register(address: str) -> tuple[int, str | None]:
        async with aiohttp.ClientSession() as http:
            body = {"username": f"u{uuid.uuid4().hex[:12]}", "password": PASSWORD}
            headers = {"X-Forwarded-For": address}
            async with http.post(
                f"{base_url}/api/v1/auth/register", json=body, headers=headers
            ) as resp:
                return resp.status, resp.headers.get("Retry-After")

    assert [(await register("10.11.0.1"))[0] for _ in range(3)] == [201, 201, 201]
    status, retry = await register("10.11.0.1")
    assert status == 429 and retry is not None and int(retry) > 60  # an hour's budget
    assert (await register("10.11.0.2"))[0] == 201
