"""KeyStore: bundles per device, one-time prekeys handed out at most once."""

from __future__ import annotations

import asyncio
import base64

import pytest

from chatd.core.errors import TooManyPrekeys
from chatd.core.models import DeviceKeys, Prekey, SignedPrekey

LIMIT = 1000


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def bundle(device_id: str, user_id: str = "u1", identity: str = "identity-1") -> DeviceKeys:
    signed = SignedPrekey(7, b64(f"signed-{device_id}"), b64("signature"))
    return DeviceKeys(device_id, user_id, b64(identity), signed, 1_700_000_000_000)


def prekeys(first: int, last: int, tag: str = "otk") -> list[Prekey]:
    return [Prekey(i, b64(f"{tag}-{i}")) for i in range(first, last + 1)]


async def claim_all(storage, device_id: str) -> set[Prekey]:
    claimed = set()
    while (prekey := await storage.keys.claim(device_id)) is not None:
        claimed.add(prekey)
    return claimed


async def test_bundle_round_trips(storage):
    keys = bundle("dev-a")
    await storage.keys.put(keys, prekeys(1, 3), limit=LIMIT)
    assert await storage.keys.get("dev-a") == keys
    assert await storage.keys.get("dev-unknown") is None
    assert await storage.keys.count("dev-a") == 3
    assert await storage.keys.count("dev-unknown") == 0


async def test_each_prekey_is_claimed_once_then_none(storage):
    await storage.keys.put(bundle("dev-a"), prekeys(1, 3), limit=LIMIT)
    await storage.keys.put(bundle("dev-b"), prekeys(1, 1, tag="other"), limit=LIMIT)
    claimed = [await storage.keys.claim("dev-a") for _ in range(4)]
    assert claimed[3] is None
    assert sorted(claimed[:3], key=lambda p: p.key_id) == prekeys(1, 3)
    assert await storage.keys.count("dev-a") == 0
    assert await storage.keys.claim("dev-b") == Prekey(1, b64("other-1"))


async def test_later_upload_adds_prekeys_without_duplicating(storage):
    await storage.keys.put(bundle("dev-a"), prekeys(1, 5), limit=LIMIT)
    await storage.keys.put(
        bundle("dev-a"), prekeys(4, 8), limit=LIMIT
    )  # 4 and 5 again: a retried upload
    assert await storage.keys.count("dev-a") == 8
    claimed = {(await storage.keys.claim("dev-a")).key_id for _ in range(8)}
    assert claimed == set(range(1, 9))


async def test_new_signed_prekey_replaces_the_old_and_keeps_prekeys(storage):
    await storage.keys.put(bundle("dev-a"), prekeys(1, 2), limit=LIMIT)
    rotated = DeviceKeys(
        "dev-a", "u1", b64("identity-1"), SignedPrekey(8, b64("signed-2"), b64("sig-2")), 2
    )
    await storage.keys.put(rotated, [], limit=LIMIT)
    assert await storage.keys.get("dev-a") == rotated
    assert await storage.keys.count("dev-a") == 2


async def test_new_identity_drops_the_earlier_prekeys(storage):
    await storage.keys.put(bundle("dev-a"), prekeys(1, 5), limit=LIMIT)
    reinstalled = bundle("dev-a", identity="identity-2")
    await storage.keys.put(reinstalled, prekeys(100, 101, tag="new"), limit=LIMIT)
    assert await storage.keys.get("dev-a") == reinstalled
    assert await storage.keys.count("dev-a") == 2
    claimed = {(await storage.keys.claim("dev-a")).key_id for _ in range(2)}
    assert claimed == {100, 101}


async def test_concurrent_claims_on_two_nodes_get_distinct_prekeys(storage, second_node):
    await storage.keys.put(bundle("dev-a"), prekeys(1, 15), limit=LIMIT)
    nodes = [storage, second_node]
    results = await asyncio.gather(*(nodes[i % 2].keys.claim("dev-a") for i in range(20)))
    handed = [p for p in results if p is not None]
    assert len(handed) == 15
    assert len({p.key_id for p in handed}) == 15
    assert results.count(None) == 5
    assert await storage.keys.count("dev-a") == 0


async def test_prekeys_survive_a_restart(backend):
    store = await backend.open()
    await store.keys.put(bundle("dev-a"), prekeys(1, 2), limit=LIMIT)
    await store.keys.claim("dev-a")
    await backend.close(store)
    again = await backend.open()
    assert await again.keys.count("dev-a") == 1
    assert await again.keys.get("dev-a") == bundle("dev-a")


async def test_a_device_can_hold_the_limit_of_large_prekeys_in_one_upload(storage):
    # As many as a device may hold, each the size of a post-quantum (Kyber) key.
    big = [Prekey(i, base64.b64encode(bytes([i % 256]) * 1600).decode()) for i in range(1000)]
    await storage.keys.put(bundle("dev-a"), big, limit=1000)
    assert await storage.keys.count("dev-a") == 1000
    assert await storage.keys.claim("dev-a") in big


async def test_an_upload_past_the_limit_fails_whole(storage):
    await storage.keys.put(bundle("dev-a"), prekeys(1, 8), limit=10)
    rotated = DeviceKeys("dev-a", "u1", b64("identity-1"), SignedPrekey(9, b64("s"), b64("g")), 2)
    with pytest.raises(TooManyPrekeys) as err:
        await storage.keys.put(rotated, prekeys(9, 11, tag="late"), limit=10)
    assert err.value.code == "bad_request"
    assert await storage.keys.get("dev-a") == bundle("dev-a")  # not even the signed prekey
    assert await claim_all(storage, "dev-a") == set(prekeys(1, 8))


async def test_re_sent_prekeys_do_not_count_twice_against_the_limit(storage):
    await storage.keys.put(bundle("dev-a"), prekeys(1, 8), limit=10)
    await storage.keys.put(bundle("dev-a"), prekeys(5, 10), limit=10)  # 5..8 held already
    assert await storage.keys.count("dev-a") == 10
    await storage.keys.put(bundle("dev-a"), prekeys(1, 10), limit=10)  # a full retry
    assert await storage.keys.count("dev-a") == 10


async def test_claimed_prekeys_make_room(storage):
    await storage.keys.put(bundle("dev-a"), prekeys(1, 10), limit=10)
    for _ in range(3):
        await storage.keys.claim("dev-a")
    await storage.keys.put(bundle("dev-a"), prekeys(11, 13), limit=10)
    assert await storage.keys.count("dev-a") == 10


async def test_a_new_identity_counts_only_its_own_prekeys(storage):
    await storage.keys.put(bundle("dev-a"), prekeys(1, 10), limit=10)
    reinstalled = bundle("dev-a", identity="identity-2")
    await storage.keys.put(reinstalled, prekeys(5, 14, tag="new"), limit=10)
    assert await storage.keys.get("dev-a") == reinstalled
    assert await claim_all(storage, "dev-a") == set(prekeys(5, 14, tag="new"))
    with pytest.raises(TooManyPrekeys):
        await storage.keys.put(bundle("dev-a", identity="identity-3"), prekeys(1, 11), limit=10)
    assert await storage.keys.get("dev-a") == reinstalled


async def test_concurrent_uploads_on_two_nodes_cannot_together_pass_the_limit(storage, second_node):
    """Each upload fits alone, both do not: exactly one is stored, whole; the other none."""
    devices = [f"dev-{n}" for n in range(6)]
    for device_id in devices:
        await storage.keys.put(bundle(device_id), prekeys(1, 4), limit=10)
    uploads = [
        node.keys.put(bundle(device_id), prekeys(first, first + 3, tag=node_tag), limit=10)
        for device_id in devices
        for node, first, node_tag in ((storage, 100, "one"), (second_node, 200, "two"))
    ]
    results = await asyncio.gather(*uploads, return_exceptions=True)
    for n, device_id in enumerate(devices):
        first, second = results[2 * n : 2 * n + 2]
        stored = [not isinstance(r, BaseException) for r in (first, second)]
        assert stored.count(True) == 1, (device_id, first, second)
        assert all(r is False or isinstance(r, TooManyPrekeys) for r in (first, second))
        won = prekeys(100, 103, tag="one") if stored[0] else prekeys(200, 203, tag="two")
        assert await claim_all(second_node, device_id) == set(prekeys(1, 4) + won)
