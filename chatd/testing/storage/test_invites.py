"""InviteStore: consume respects uses and expiry, atomically."""

from __future__ import annotations

import asyncio

from chatd.core.ids import now_ms


async def test_single_use_invite_is_consumed_once(storage):
    await storage.invites.create("one-shot", 1, None)
    assert await storage.invites.consume("one-shot", now_ms()) is True
    assert await storage.invites.consume("one-shot", now_ms()) is False


async def test_unknown_code_is_refused(storage):
    await storage.invites.create("real", 5, None)
    assert await storage.invites.consume("fake", now_ms()) is False
    assert await storage.invites.consume("REAL", now_ms()) is False


async def test_invite_gives_exactly_its_number_of_uses(storage):
    await storage.invites.create("three", 3, None)
    await storage.invites.create("other", 3, None)
    now = now_ms()
    assert [await storage.invites.consume("three", now) for _ in range(5)] == [
        True,
        True,
        True,
        False,
        False,
    ]
    assert await storage.invites.consume("other", now) is True


async def test_invite_without_uses_is_refused(storage):
    await storage.invites.create("empty", 0, None)
    assert await storage.invites.consume("empty", now_ms()) is False


async def test_expired_invite_is_refused(storage):
    now = now_ms()
    await storage.invites.create("fresh", 5, now + 60_000)
    await storage.invites.create("stale", 5, now + 60_000)
    await storage.invites.create("forever", 5, None)
    assert await storage.invites.consume("fresh", now) is True
    assert await storage.invites.consume("fresh", now + 59_999) is True
    assert await storage.invites.consume("stale", now + 60_001) is False
    assert await storage.invites.consume("stale", now + 10 * 365 * 86_400_000) is False
    assert await storage.invites.consume("forever", now + 10 * 365 * 86_400_000) is True


async def test_expiry_does_not_spend_a_use(storage):
    now = now_ms()
    await storage.invites.create("once", 1, now + 1_000)
    assert await storage.invites.consume("once", now + 2_000) is False
    assert await storage.invites.consume("once", now) is True


async def test_concurrent_consumes_never_exceed_the_uses(storage):
    await storage.invites.create("three", 3, None)
    await storage.invites.create("two", 2, now_ms() + 60_000)
    now = now_ms()
    results = await asyncio.gather(
        *(storage.invites.consume(code, now) for _ in range(25) for code in ("three", "two"))
    )
    three = results[0::2]
    two = results[1::2]
    assert three.count(True) == 3 and three.count(False) == 22
    assert two.count(True) == 2 and two.count(False) == 23
    assert await storage.invites.consume("three", now) is False


async def test_two_nodes_share_the_uses(storage, second_node):
    await storage.invites.create("shared", 3, None)
    now = now_ms()
    results = await asyncio.gather(
        *(node.invites.consume("shared", now) for _ in range(10) for node in (storage, second_node))
    )
    assert results.count(True) == 3
