"""PushStore: targets per device, the outbox (one item per device and chat), claims, dead items."""

from __future__ import annotations

import asyncio

from chatd.core.ids import new_id
from chatd.core.ports.push import OutboxItem, PushTarget

NOW = 1_800_000_000_000
LEASE = 30_000


def target(user: str, device: str, provider: str = "webhook") -> PushTarget:
    return PushTarget(user, device, provider, token=f"token-{device}")


def item(device: str, chat: str, seq: int, *, due: int = NOW, user: str = "u1") -> OutboxItem:
    return OutboxItem(device, chat, user, new_id(), seq, {"chat_id": chat, "seq": seq}, due)


async def test_targets_by_device_and_user(storage):
    await storage.push.put_target(target("u1", "d1"), NOW)
    await storage.push.put_target(target("u1", "d2", "fcm"), NOW + 1)
    await storage.push.put_target(target("u2", "d3"), NOW)
    got = await storage.push.get_target("d1")
    assert got is not None and got.target == target("u1", "d1") and got.registered_at == NOW
    assert {t.target.device_id for t in await storage.push.targets("u1")} == {"d1", "d2"}
    await storage.push.put_target(target("u1", "d1", "fcm"), NOW + 5)  # replaced
    assert (await storage.push.get_target("d1")).target.provider == "fcm"
    assert await storage.push.delete_target("d1") is True
    assert await storage.push.delete_target("d1") is False
    assert await storage.push.get_target("d1") is None
    assert [t.target.device_id for t in await storage.push.targets("u1")] == ["d2"]


async def test_one_item_per_device_and_chat_the_latest_wins(storage):
    first = item("d1", "c1", 1)
    await storage.push.enqueue([first, item("d1", "c2", 1), item("d2", "c1", 1)])
    later = item("d1", "c1", 3)
    await storage.push.enqueue([later])
    await storage.push.enqueue([item("d1", "c1", 2)])  # older than what waits: ignored
    assert await storage.push.depth() == 3
    claimed = await storage.push.claim(NOW, LEASE, 10, devices=["d1"])
    by_chat = {i.chat_id: i for i in claimed}
    assert set(by_chat) == {"c1", "c2"}
    assert by_chat["c1"].delivery_id == later.delivery_id
    assert by_chat["c1"].seq == 3 and by_chat["c1"].payload == {"chat_id": "c1", "seq": 3}


async def test_a_claim_is_exclusive_until_its_lease_ends(storage, second_node):
    await storage.push.enqueue([item(f"d{n}", "c1", 1) for n in range(6)])
    a, b = await asyncio.gather(
        storage.push.claim(NOW, LEASE, 100), second_node.push.claim(NOW, LEASE, 100)
    )
    ids = [i.delivery_id for i in a + b]
    assert len(ids) == 6 and len(set(ids)) == 6
    assert await storage.push.claim(NOW + LEASE - 1, LEASE, 100) == []
    again = await second_node.push.claim(NOW + LEASE, LEASE, 100)  # the lease ran out
    assert len(again) == 6


async def test_items_are_not_claimed_before_they_are_due(storage):
    await storage.push.enqueue([item("d1", "c1", 1, due=NOW + 1000)])
    assert await storage.push.claim(NOW, LEASE, 10) == []
    assert len(await storage.push.claim(NOW + 1000, LEASE, 10)) == 1


async def test_retry_keeps_the_delivery_id_and_waits(storage):
    await storage.push.enqueue([item("d1", "c1", 1)])
    (claimed,) = await storage.push.claim(NOW, LEASE, 10)
    assert await storage.push.retry_later(claimed, 1, NOW + 2000, "http_503") is True
    assert await storage.push.claim(NOW + 1999, LEASE, 10) == []
    (again,) = await storage.push.claim(NOW + 2000, LEASE, 10)
    assert again.delivery_id == claimed.delivery_id
    assert again.attempts == 1 and again.last_error == "http_503"
    assert await storage.push.done(again) is True
    assert await storage.push.depth() == 0


async def test_a_replaced_item_is_not_deleted_by_its_old_claim(storage):
    await storage.push.enqueue([item("d1", "c1", 1)])
    (claimed,) = await storage.push.claim(NOW, LEASE, 10)
    newer = item("d1", "c1", 2)
    await storage.push.enqueue([newer])  # a later message while the old one is sent
    assert await storage.push.done(claimed) is False
    assert await storage.push.retry_later(claimed, 1, NOW, "x") is False
    assert await storage.push.bury(claimed, 1, "x", NOW) is False
    (fresh,) = await storage.push.claim(NOW, LEASE, 10)  # the update ended the claim
    assert fresh.delivery_id == newer.delivery_id and fresh.attempts == 0


async def test_an_update_keeps_a_running_backoff(storage):
    await storage.push.enqueue([item("d1", "c1", 1)])
    (claimed,) = await storage.push.claim(NOW, LEASE, 10)
    await storage.push.retry_later(claimed, 3, NOW + 8000, "http_503")
    await storage.push.enqueue([item("d1", "c1", 2, due=NOW + 10)])
    assert await storage.push.claim(NOW + 7999, LEASE, 10) == []
    (fresh,) = await storage.push.claim(NOW + 8000, LEASE, 10)
    assert fresh.seq == 2 and fresh.attempts == 0


async def test_cancel_and_delete_target_drop_waiting_items(storage):
    await storage.push.put_target(target("u1", "d1"), NOW)
    await storage.push.enqueue([item("d1", "c1", 1), item("d1", "c2", 1), item("d2", "c1", 1)])
    assert await storage.push.cancel("d1") == 2
    assert await storage.push.depth() == 1
    await storage.push.enqueue([item("d1", "c3", 1)])
    await storage.push.delete_target("d1")
    claimed = await storage.push.claim(NOW, LEASE, 10)
    assert [i.device_id for i in claimed] == ["d2"]


async def test_dead_items_are_listed_page_by_page_and_revived(storage):
    items = [item(f"d{n}", "c1", 1) for n in range(5)]
    await storage.push.enqueue(items)
    for claimed in await storage.push.claim(NOW, LEASE, 10):
        assert await storage.push.bury(claimed, 8, "http_500", NOW + 1) is True
    assert await storage.push.depth() == 0
    seen, cursor, pages = [], "", 0
    while True:
        page, cursor = await storage.push.dead(2, cursor)
        seen.extend(page)
        pages += 1
        if cursor is None:
            break
    assert pages >= 3
    assert sorted(d.item.delivery_id for d in seen) == sorted(i.delivery_id for i in items)
    assert all(d.item.last_error == "http_500" and d.item.attempts == 8 for d in seen)
    assert all(d.dead_at == NOW + 1 for d in seen)

    first = items[0]
    assert await storage.push.revive(first.delivery_id, NOW + 5) == "requeued"
    assert await storage.push.revive(first.delivery_id, NOW + 5) is None
    (back,) = await storage.push.claim(NOW + 5, LEASE, 10)
    assert back.delivery_id == first.delivery_id and back.attempts == 0

    second = items[1]
    await storage.push.enqueue([item(second.device_id, "c1", 2)])
    assert await storage.push.revive(second.delivery_id, NOW + 5) == "superseded"


async def test_dead_items_past_retention_are_deleted_and_the_others_kept(storage):
    items = [item(f"d{n}", "c1", 1) for n in range(4)]
    await storage.push.enqueue(items)
    claimed = sorted(await storage.push.claim(NOW, LEASE, 10), key=lambda i: i.device_id)
    for n, one in enumerate(claimed):  # buried a day apart: d0 oldest
        assert await storage.push.bury(one, 8, "http_500", NOW + n * 86_400_000) is True
    assert await storage.push.expire_dead(NOW + 86_400_000) == 1  # strictly before
    assert await storage.push.expire_dead(NOW + 2 * 86_400_000 + 1) == 2
    page, cursor = await storage.push.dead(10)
    assert [d.item.device_id for d in page] == ["d3"] and cursor is None
    assert await storage.push.revive(claimed[0].delivery_id, NOW) is None  # gone for good
    assert await storage.push.expire_dead(NOW) == 0
    assert await storage.push.revive(claimed[3].delivery_id, NOW) == "requeued"


async def test_the_outbox_survives_a_restart(backend, storage):
    waiting = item("d1", "c1", 4)
    await storage.push.enqueue([waiting])
    await backend.close(storage)
    reopened = await backend.open()
    (claimed,) = await reopened.push.claim(NOW, LEASE, 10)
    assert claimed == waiting
