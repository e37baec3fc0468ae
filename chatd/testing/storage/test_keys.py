"""KeyStore: bundles per device, one-time prekeys handed out at most once."""

from __future__ import annotations

import asyncio
import base64

from chatd.core.models import DeviceKeys, Prekey, SignedPrekey


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def bundle(device_id: str, user_id: str = "u1", identity: str = "identity-1") -> DeviceKeys:
    signed = SignedPrekey(7, b64(f"signed-{device_id}"), b64("signature"))
    return DeviceKeys(device_id, user_id, b64(identity), signed, 1_700_000_000_000)


def prekeys(first: int, last: int, tag: str = "otk") -> list[Prekey]:
    return [Prekey(i, b64(f"{tag}-{i}")) for i in range(first, last + 1)]


async def test_bundle_round_trips(storage):
    keys = bundle("dev-a")
    await storage.keys.put(keys, prekeys(1, 3))
    assert await storage.keys.get("dev-a") == keys
    assert await storage.keys.get("dev-unknown") is None
    assert await storage.keys.count("dev-a") == 3
    assert await storage.keys.count("dev-unknown") == 0


async def test_each_prekey_is_claimed_once_then_none(storage):
    await storage.keys.put(bundle("dev-a"), prekeys(1, 3))
    await storage.keys.put(bundle("dev-b"), prekeys(1, 1, tag="other"))
    claimed = [await storage.keys.claim("dev-a") for _ in range(4)]
    assert claimed[3] is None
    assert sorted(claimed[:3], key=lambda p: p.key_id) == prekeys(1, 3)
    assert await storage.keys.count("dev-a") == 0
    assert await storage.keys.claim("dev-b") == Prekey(1, b64("other-1"))


async def test_later_upload_adds_prekeys_without_duplicating(storage):
    await storage.keys.put(bundle("dev-a"), prekeys(1, 5))
    await storage.keys.put(bundle("dev-a"), prekeys(4, 8))  # 4 and 5 again: a retried upload
    assert await storage.keys.count("dev-a") == 8
    claimed = {(await storage.keys.claim("dev-a")).key_id for _ in range(8)}
    assert claimed == set(range(1, 9))


async def test_new_signed_prekey_replaces_the_old_and_keeps_prekeys(storage):
    await storage.keys.put(bundle("dev-a"), prekeys(1, 2))
    rotated = DeviceKeys(
        "dev-a", "u1", b64("identity-1"), SignedPrekey(8, b64("signed-2"), b64("sig-2")), 2
    )
    await storage.keys.put(rotated, [])
    assert await storage.keys.get("dev-a") == rotated
    assert await storage.keys.count("dev-a") == 2


async def test_new_identity_drops_the_earlier_prekeys(storage):
    await storage.keys.put(bundle("dev-a"), prekeys(1, 5))
    reinstalled = bundle("dev-a", identity="identity-2")
    await storage.keys.put(reinstalled, prekeys(100, 101, tag="new"))
    assert await storage.keys.get("dev-a") == reinstalled
    assert await storage.keys.count("dev-a") == 2
    claimed = {(await storage.keys.claim("dev-a")).key_id for _ in range(2)}
    assert claimed == {100, 101}


async def test_concurrent_claims_on_two_nodes_get_distinct_prekeys(storage, second_node):
    await storage.keys.put(bundle("dev-a"), prekeys(1, 15))
    nodes = [storage, second_node]
    results = await asyncio.gather(*(nodes[i % 2].keys.claim("dev-a") for i in range(20)))
    handed = [p for p in results if p is not None]
    assert len(handed) == 15
    assert len({p.key_id for p in handed}) == 15
    assert results.count(None) == 5
    assert await storage.keys.count("dev-a") == 0


async def test_prekeys_survive_a_restart(backend):
    store = await backend.open()
    await store.keys.put(bundle("dev-a"), prekeys(1, 2))
    await store.keys.claim("dev-a")
    await backend.close(store)
    again = await backend.open()
    assert await again.keys.count("dev-a") == 1
    assert await again.keys.get("dev-a") == bundle("dev-a")
