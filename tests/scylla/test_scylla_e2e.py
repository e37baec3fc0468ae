"""ScyllaDB only: the per-user device sets behind encrypted sends (``e2e_devices``)."""

from __future__ import annotations

import base64

import pytest

from chatd.core.e2e import DeviceMismatch
from chatd.core.ids import now_ms
from chatd.core.models import Ciphertext, DeviceKeys, SignedPrekey

from .scylla_nodes import cql

pytest.importorskip("cassandra", reason="scylla-driver is not installed")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def test_bundles_stored_before_the_device_sets_existed_are_counted(
    backend, storage, make_user, make_device, make_direct, draft
):
    """A keyspace upgraded to migration 7 has bundles but no ``e2e_devices`` rows:
    opening fills them in once, so those devices must be covered."""
    alice, bob = await make_user(), await make_user()
    phone, bob_phone = await make_device(alice), await make_device(bob)
    chat = await make_direct(alice, bob)
    signed = SignedPrekey(1, b64("spk"), b64("sig"))
    await storage.keys.put(
        DeviceKeys(bob_phone.device_id, bob.user_id, b64("ik"), signed, now_ms()), [], limit=10
    )
    # As before the upgrade: no device sets, no mark that they were filled.
    await cql("TRUNCATE {ks}.e2e_devices")
    reopened = await backend.open()
    sealed = {bob_phone.device_id: Ciphertext("message", b64("x"))}
    ok = await reopened.messages.append(
        draft(chat, alice, device=phone, content="", encrypted=True, ciphertexts=sealed)
    )
    assert ok.created
    with pytest.raises(DeviceMismatch) as refused:
        await reopened.messages.append(
            draft(chat, alice, device=phone, content="", encrypted=True, ciphertexts={})
        )
    assert refused.value.missing == [bob_phone.device_id]
