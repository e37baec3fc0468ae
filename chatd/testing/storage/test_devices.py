"""DeviceStore: token lookup, live devices, revocation and the revocation feed."""

from __future__ import annotations

import asyncio

from chatd.core.ids import new_id, now_ms
from chatd.core.models import Device


async def test_by_token_finds_the_device(storage, make_user):
    alice = await make_user("alice")
    now = now_ms()
    device = Device(new_id(), alice.user_id, "laptop", now, now + 3_600_000)
    await storage.devices.create(device, "token-hash-1")
    assert await storage.devices.by_token("token-hash-1") == device
    assert await storage.devices.by_token("token-hash-2") is None


async def test_by_token_returns_a_revoked_device_with_revoked_at(storage, make_user, make_device):
    alice = await make_user("alice")
    before = now_ms()
    device = await make_device(alice, token_hash="th-alice")
    assert await storage.devices.revoke(device.device_id) is True
    found = await storage.devices.by_token("th-alice")
    assert found is not None and found.device_id == device.device_id
    assert found.revoked_at is not None and before <= found.revoked_at <= now_ms()


async def test_list_for_user_lists_live_devices_of_that_user_only(storage, make_user, make_device):
    alice, bob = await make_user("alice"), await make_user("bob")
    phone = await make_device(alice, "phone")
    laptop = await make_device(alice, "laptop")
    tablet = await make_device(alice, "tablet")
    await make_device(bob, "phone")
    assert await storage.devices.revoke(laptop.device_id)

    live = await storage.devices.list_for_user(alice.user_id)
    assert sorted(live, key=lambda d: d.device_id) == sorted(
        [phone, tablet], key=lambda d: d.device_id
    )
    assert await storage.devices.list_for_user(new_id()) == []


async def test_revoke_is_true_once_then_false(storage, make_user, make_device):
    alice = await make_user("alice")
    device = await make_device(alice)
    assert await storage.devices.revoke(device.device_id) is True
    assert await storage.devices.revoke(device.device_id) is False
    assert await storage.devices.revoke(new_id()) is False
    assert await storage.devices.list_for_user(alice.user_id) == []


async def test_revoke_all_revokes_every_live_device_of_the_user(storage, make_user, make_device):
    alice, bob = await make_user("alice"), await make_user("bob")
    alice_devices = [await make_device(alice, f"d{i}") for i in range(3)]
    bob_device = await make_device(bob)

    revoked = await storage.devices.revoke_all(alice.user_id)
    assert sorted(revoked) == sorted(d.device_id for d in alice_devices)
    assert await storage.devices.list_for_user(alice.user_id) == []
    for d in alice_devices:
        assert await storage.devices.revoke(d.device_id) is False
    assert await storage.devices.list_for_user(bob.user_id) == [bob_device]
    assert await storage.devices.revoke_all(alice.user_id) == []
    assert await storage.devices.revoke_all(new_id()) == []


async def test_a_fresh_cursor_starts_at_the_end_of_the_feed(storage, make_user, make_device):
    alice = await make_user("alice")
    old = await make_device(alice)
    await storage.devices.revoke(old.device_id)

    revoked, cursor = await storage.devices.revocations_since(-1)
    assert revoked == []
    again, same = await storage.devices.revocations_since(cursor)
    assert again == [] and same == cursor


async def test_an_empty_feed_gives_a_usable_cursor(storage, make_user, make_device):
    revoked, cursor = await storage.devices.revocations_since(-1)
    assert revoked == []
    alice = await make_user("alice")
    device = await make_device(alice)
    await storage.devices.revoke(device.device_id)
    assert (await storage.devices.revocations_since(cursor))[0] == [device.device_id]


async def test_revocations_appear_after_the_cursor_in_order(storage, make_user, make_device):
    alice = await make_user("alice")
    devices = [await make_device(alice, f"d{i}") for i in range(4)]
    _, cursor = await storage.devices.revocations_since(-1)

    for d in devices[:3]:
        await storage.devices.revoke(d.device_id)
    revoked, next_cursor = await storage.devices.revocations_since(cursor)
    assert revoked == [d.device_id for d in devices[:3]]
    assert next_cursor > cursor

    # Polling again from the new cursor sees nothing old, then only what is new.
    assert await storage.devices.revocations_since(next_cursor) == ([], next_cursor)
    await storage.devices.revoke(devices[3].device_id)
    revoked, last_cursor = await storage.devices.revocations_since(next_cursor)
    assert revoked == [devices[3].device_id]
    assert last_cursor > next_cursor
    # Another node polling from the first cursor still sees everything, in order.
    revoked, cursor_b = await storage.devices.revocations_since(cursor)
    assert revoked == [d.device_id for d in devices]
    assert cursor_b == last_cursor


async def test_revoke_all_is_on_the_feed(storage, make_user, make_device):
    alice = await make_user("alice")
    devices = [await make_device(alice, f"d{i}") for i in range(3)]
    _, cursor = await storage.devices.revocations_since(-1)
    await storage.devices.revoke_all(alice.user_id)
    revoked, new_cursor = await storage.devices.revocations_since(cursor)
    assert sorted(revoked) == sorted(d.device_id for d in devices)
    assert new_cursor > cursor


async def test_record_ban_puts_the_users_devices_on_the_feed_in_order(
    storage, make_user, make_device
):
    alice, mallory = await make_user("alice"), await make_user("mallory")
    alice_phone = await make_device(alice)
    mallory_devices = [await make_device(mallory, f"d{i}") for i in range(2)]
    alice_laptop = await make_device(alice, "laptop")
    _, cursor = await storage.devices.revocations_since(-1)

    await storage.devices.revoke(alice_phone.device_id)
    await storage.devices.record_ban(mallory.user_id)
    await storage.devices.revoke(alice_laptop.device_id)

    revoked, new_cursor = await storage.devices.revocations_since(cursor)
    assert new_cursor > cursor
    assert revoked[0] == alice_phone.device_id
    assert sorted(revoked[1:3]) == sorted(d.device_id for d in mallory_devices)
    assert revoked[3:] == [alice_laptop.device_id]


async def test_polling_the_feed_loses_nothing_however_long(storage, make_user, make_device):
    alice = await make_user("alice")
    devices = await asyncio.gather(*(make_device(alice, f"d{i}") for i in range(1_100)))
    _, cursor = await storage.devices.revocations_since(-1)
    revoked = await storage.devices.revoke_all(alice.user_id)
    assert len(revoked) == 1_100

    seen: list[str] = []
    for _ in range(1_100):
        batch, cursor = await storage.devices.revocations_since(cursor)
        if not batch:
            break
        seen.extend(batch)
    assert sorted(seen) == sorted(d.device_id for d in devices)


async def test_a_revocation_on_one_node_reaches_another(
    storage, second_node, make_user, make_device
):
    alice = await make_user("alice")
    phone = await make_device(alice, token_hash="th-phone")
    _, cursor = await second_node.devices.revocations_since(-1)
    assert await storage.devices.revoke(phone.device_id) is True

    revoked, _ = await second_node.devices.revocations_since(cursor)
    assert revoked == [phone.device_id]
    found = await second_node.devices.by_token("th-phone")
    assert found is not None and found.revoked_at is not None
    assert await second_node.devices.revoke(phone.device_id) is False
