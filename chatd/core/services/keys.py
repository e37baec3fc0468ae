"""End-to-end encryption key bundles (Signal protocol: X3DH).

The server only keeps public keys and hands them out: a device uploads its
identity key, a signed prekey and a stock of one-time prekeys; whoever starts a
session with a user fetches a bundle per device of that user, each with a
one-time prekey that nobody else will ever get. Fetches are rate limited per
caller, because draining a user's one-time prekeys weakens their sessions
(X3DH falls back to the signed prekey alone); and claims are limited per target
device, so many accounts together cannot drain one device either. Past that
limit a fetch still answers, without a one-time prekey for that device: a 429
would let the same accounts stop everyone from reaching the device at all.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chatd.core import validate
from chatd.core.auth import Caller
from chatd.core.errors import bad_request, not_found
from chatd.core.events import Event
from chatd.core.ids import now_ms
from chatd.core.models import DeviceKeys, Prekey, SignedPrekey
from chatd.core.ports.storage import Storage
from chatd.core.ratelimit import TokenBucket
from chatd.core.services.chats import ChatService
from chatd.core.services.fanout import FanOut

log = logging.getLogger(__name__)

#: One-time prekeys a device may hold at once (Signal clients keep about 100).
MAX_ONE_TIME_PREKEYS = 1000
#: Key ids are unsigned 24-bit in libsignal; accept any non-negative 31-bit id.
MAX_KEY_ID = 2**31 - 1
#: Decoded sizes: Curve25519 keys are 32-33 bytes, XEdDSA signatures 64; room for
#: post-quantum (Kyber) keys of about 1.6 KB.
MAX_KEY_BYTES = 2048
MAX_SIGNATURE_BYTES = 512


@dataclass(frozen=True, slots=True)
class Bundle:
    """What a sender needs to start a session with one device."""

    keys: DeviceKeys
    one_time_prekey: Prekey | None


class KeyService:
    def __init__(
        self,
        storage: Storage,
        fanout: FanOut,
        chats: ChatService,
        *,
        fetches_per_minute: float = 60,
        claims_per_device_per_hour: float = 60,
        prekey_low_watermark: int = 20,
    ) -> None:
        self._storage = storage
        self._fanout = fanout
        self._chats = chats
        self._low = prekey_low_watermark
        rate = fetches_per_minute / 60
        self._fetches = TokenBucket(rate, max(1.0, fetches_per_minute / 6), what="key fetches")
        self._claims = TokenBucket.per_period(
            claims_per_device_per_hour, 3600, what="one-time prekey claims"
        )

    async def upload(self, caller: Caller, data: Any) -> int:
        """Store the caller's bundle (or add prekeys to it); returns the prekeys it holds."""
        data = validate.body(data)
        current = await self._storage.keys.get(caller.device_id)
        sent_identity = data.get("identity_key") is not None
        sent_signed = data.get("signed_prekey") is not None
        if current is None and not (sent_identity and sent_signed):
            raise bad_request("the first upload needs identity_key and signed_prekey")
        identity = _key(data, "identity_key") if sent_identity else current.identity_key
        signed = _signed_prekey(data["signed_prekey"]) if sent_signed else current.signed_prekey
        renewed = current is not None and identity != current.identity_key
        if renewed and signed == current.signed_prekey:
            # A new identity drops every old prekey, the signed one too: it was signed
            # by the old identity, so a bundle mixing the two cannot be verified.
            raise bad_request("a new identity_key needs a new signed_prekey")
        one_time = _one_time_prekeys(data.get("one_time_prekeys", []))
        keys = DeviceKeys(caller.device_id, caller.user_id, identity, signed, now_ms())
        if await self._storage.keys.put(keys, one_time, limit=MAX_ONE_TIME_PREKEYS):
            await self.announce_devices(caller.user_id)
        return await self._storage.keys.count(caller.device_id)

    async def fetch(self, caller: Caller, user_id: str) -> list[Bundle]:
        """A bundle per live device of ``user_id`` that has uploaded keys.

        Each call consumes one one-time prekey per device, unless the device's
        claims are over their hourly limit. The caller's own device is left out:
        a device never opens a session with itself.
        """
        self._fetches.take(caller.user_id)
        user = await self._storage.users.get(user_id)
        if user is None or user.banned:
            raise not_found("user not found")
        bundles: list[Bundle] = []
        for device in await self._storage.devices.list_for_user(user_id):
            if device.device_id == caller.device_id:
                continue
            keys = await self._storage.keys.get(device.device_id)
            if keys is None:
                continue
            claimable = self._claims.try_take(device.device_id)
            prekey = await self._storage.keys.claim(device.device_id) if claimable else None
            if claimable and prekey is None:
                self._claims.give_back(device.device_id)  # none left: nothing was handed out
            if prekey is not None:
                await self._check_low(user_id, device.device_id)
            bundles.append(Bundle(keys, prekey))
        return bundles

    async def _check_low(self, user_id: str, device_id: str) -> None:
        """Tell a device whose stock of one-time prekeys ran low, so it uploads more."""
        left = await self._storage.keys.count(device_id)
        if left < self._low:
            event = Event.for_device(device_id, "keys_low", {"one_time_prekeys": left})
            self._fanout.publish([user_id], event)

    async def announce_devices(self, user_id: str) -> None:
        """``devices_changed`` to whoever may send to ``user_id``: its own devices,
        everyone sharing a chat with it, everyone having it as a contact.

        Called when the user's set of devices holding a bundle changed (a new
        device uploaded one, a device was revoked or logged out).
        """
        try:
            device_ids = []
            for device in await self._storage.devices.list_for_user(user_id):
                if await self._storage.keys.get(device.device_id) is not None:
                    device_ids.append(device.device_id)
            audience = {user_id}
            for member in await self._storage.chats.memberships(user_id):
                if member.left_seq is None:
                    audience |= await self._chats.member_ids(member.chat_id)
            audience |= set(await self._storage.contacts.watchers(user_id))
            event = Event("devices_changed", {"user_id": user_id, "device_ids": device_ids})
            self._fanout.publish(audience, event)
        except Exception:  # the change is stored; clients also refetch on bad_request
            log.exception("announcing the devices of %s failed", user_id)

    async def count(self, caller: Caller) -> int:
        return await self._storage.keys.count(caller.device_id)


def _key(data: Mapping[str, Any], name: str, max_bytes: int = MAX_KEY_BYTES) -> str:
    """A standard base64 string of 1..max_bytes bytes, kept exactly as sent."""
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise bad_request(f"{name} must be a base64 string")
    if len(value) > (max_bytes + 2) // 3 * 4:
        raise bad_request(f"{name} is longer than {max_bytes} bytes")
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request(f"{name} is not valid base64") from None
    return value


def _key_id(data: Mapping[str, Any], where: str) -> int:
    value = data.get("key_id")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_KEY_ID:
        raise bad_request(f"{where}.key_id must be an integer from 0 to {MAX_KEY_ID}")
    return value


def _signed_prekey(value: Any) -> SignedPrekey:
    if not isinstance(value, Mapping):
        raise bad_request("signed_prekey must be an object {key_id, public_key, signature}")
    return SignedPrekey(
        _key_id(value, "signed_prekey"),
        _key(value, "public_key"),
        _key(value, "signature", MAX_SIGNATURE_BYTES),
    )


def _one_time_prekeys(value: Any) -> list[Prekey]:
    if not isinstance(value, list):
        raise bad_request("one_time_prekeys must be a list of {key_id, public_key}")
    if len(value) > MAX_ONE_TIME_PREKEYS:
        raise bad_request(f"at most {MAX_ONE_TIME_PREKEYS} one_time_prekeys per upload")
    prekeys: list[Prekey] = []
    seen: set[int] = set()
    for item in value:
        if not isinstance(item, Mapping):
            raise bad_request("each one-time prekey must be an object {key_id, public_key}")
        prekey = Prekey(_key_id(item, "one_time_prekeys"), _key(item, "public_key"))
        if prekey.key_id in seen:
            raise bad_request(f"one_time_prekeys repeats key_id {prekey.key_id}")
        seen.add(prekey.key_id)
        prekeys.append(prekey)
    return prekeys
