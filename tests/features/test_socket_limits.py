"""Sockets one account or one address may hold (contract: ``max_sockets_per_user``).

A handshake past a cap is answered ``429 rate_limited`` and never upgrades;
everyone else, and the health check, carry on.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from chatd.client import ApiError


@pytest.fixture
def config_overrides():
    return {"limits": {"max_sockets_per_user": 3, "max_sockets_per_address": 6}}


async def _refused(client) -> ApiError:
    with pytest.raises(ApiError) as caught:
        async with client.connect(reconnect=False):
            pass
    return caught.value


async def test_a_user_holds_at_most_max_sockets_across_devices(user, device, base_url):
    alice = await user()
    phone = await device(alice)
    held = [await alice.connect(reconnect=False).open() for _ in range(2)]
    held.append(await phone.connect(reconnect=False).open())  # 3: the cap, two devices
    try:
        refused = await _refused(phone)
        assert (refused.status, refused.code) == (429, "rate_limited")
        assert refused.retry_after is not None and refused.retry_after > 0
        started = time.monotonic()
        assert (await alice.health())["status"] == "ok"
        assert time.monotonic() - started < 1.0
        # Another user is not affected, and a freed place can be taken again.
        bob = await user()
        async with bob.connect(reconnect=False) as b_ws:
            sent = await held[0].send_message(recipient_id=bob.user_id, content="still here")
            got = await b_ws.next_event("new_message", timeout=5)
            assert got["data"]["message_id"] == sent["message_id"]
        await held.pop().close()
        for _ in range(50):  # the server sees the close a moment later
            try:
                held.append(await phone.connect(reconnect=False).open())
                break
            except ApiError as exc:
                assert exc.code == "rate_limited"
                await asyncio.sleep(0.05)
        assert len(held) == 3
    finally:
        for ws in held:
            await ws.close()


async def test_one_address_holds_at_most_max_sockets_per_address(user):
    users = [await user() for _ in range(3)]
    held = []
    try:
        for u in users[:2]:
            held += [await u.connect(reconnect=False).open() for _ in range(3)]  # 6 in all
        refused = await _refused(users[2])
        assert (refused.status, refused.code) == (429, "rate_limited")
    finally:
        for ws in held:
            await ws.close()


async def test_repeated_failed_handshakes_from_one_address_are_slowed(user, base_url):
    from chatd.client import ChatdClient

    async with ChatdClient(base_url) as stranger:
        stranger.token = "not-a-token"
        codes = []
        for _ in range(60):
            codes.append((await _refused(stranger)).code)
            if codes[-1] == "rate_limited":
                break
        assert codes[0] == "unauthorized" and codes[-1] == "rate_limited"
    alice = await user()  # others from elsewhere are unaffected; so is REST
    assert (await alice.me())["user_id"] == alice.user_id
