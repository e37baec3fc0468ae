"""The Signal protocol pieces chatd uses, configured once: X3DH and the Double Ratchet.

Both sides of a session must agree on every parameter here (curves, hashes, info
strings, KDF constants), so they live in one place and are never changed for an
existing store: a change would make every stored session unreadable.
"""

from __future__ import annotations

import hashlib
from typing import Any

import x3dh
from doubleratchet import DoubleRatchet, Header
from doubleratchet.recommended import (
    HashFunction,
    aead_aes_hmac,
    diffie_hellman_ratchet_curve25519,
    kdf_hkdf,
    kdf_separate_hmacs,
)

#: How many one-time prekeys a device keeps on the server after a top-up.
PREKEY_TARGET = 100
#: How often the signed prekey is replaced (the previous one stays valid one more period).
SIGNED_PREKEY_PERIOD_S = 7 * 24 * 3600


class DeviceKeys(x3dh.BaseState):
    """One device's X3DH key material: identity key, signed prekey, one-time prekeys.

    ``BaseState`` rather than ``State``: chatd refills one-time prekeys when the
    server says it runs low (``keys_low``), not when the local count drops, since
    the server hands out keys whose messages may never come.
    """

    @staticmethod
    def _encode_public_key(key_format: x3dh.IdentityKeyFormat, pub: bytes) -> bytes:
        # Signal's type byte: 0x05 for Curve25519, so two formats never collide.
        return (b"\x05" if key_format is x3dh.IdentityKeyFormat.CURVE_25519 else b"\x06") + pub


X3DH_CONFIG: dict[str, Any] = {
    "identity_key_format": x3dh.IdentityKeyFormat.CURVE_25519,
    "hash_function": x3dh.HashFunction.SHA_256,
    "info": b"chatd-x3dh-v1",
}


def new_device_keys() -> DeviceKeys:
    return DeviceKeys.create(**X3DH_CONFIG)


def load_device_keys(data: Any) -> DeviceKeys:
    keys, _ = DeviceKeys.from_json(data, **X3DH_CONFIG)
    return keys


class Ratchet(DoubleRatchet):
    """The Double Ratchet with chatd's associated data: the X3DH data plus the header."""

    @staticmethod
    def _build_associated_data(associated_data: bytes, header: Header) -> bytes:
        return (
            len(associated_data).to_bytes(4, "big")
            + associated_data
            + header.ratchet_pub
            + header.sending_chain_length.to_bytes(8, "big")
            + header.previous_sending_chain_length.to_bytes(8, "big")
        )


class _DHRatchet(diffie_hellman_ratchet_curve25519.DiffieHellmanRatchet):
    pass


class _AEAD(aead_aes_hmac.AEAD):
    @staticmethod
    def _get_hash_function() -> HashFunction:
        return HashFunction.SHA_256

    @staticmethod
    def _get_info() -> bytes:
        return b"chatd-dr-aead"


class _RootKDF(kdf_hkdf.KDF):
    @staticmethod
    def _get_hash_function() -> HashFunction:
        return HashFunction.SHA_256

    @staticmethod
    def _get_info() -> bytes:
        return b"chatd-dr-root"


class _MessageKDF(kdf_separate_hmacs.KDF):
    @staticmethod
    def _get_hash_function() -> HashFunction:
        return HashFunction.SHA_256


#: Skipped message keys: up to 1,000 kept per session, and at most 1,000 computed for
#: one incoming message (a message claiming more is refused rather than computed).
RATCHET_CONFIG: dict[str, Any] = {
    "diffie_hellman_ratchet_class": _DHRatchet,
    "root_chain_kdf": _RootKDF,
    "message_chain_kdf": _MessageKDF,
    "message_chain_constant": b"\x01\x02",
    "dos_protection_threshold": 1000,
    "max_num_skipped_message_keys": 1000,
    "aead": _AEAD,
}


def load_ratchet(data: Any) -> Ratchet:
    return Ratchet.from_json(data, **RATCHET_CONFIG)


def binding(initiator: tuple[str, str], responder: tuple[str, str]) -> bytes:
    """Extra associated data naming both (user_id, device_id) ends of a session.

    Both ends authenticate it with every message, so a server that relabels who
    sent a message (another user or device) makes decryption fail.
    """
    parts = [*initiator, *responder]
    return b"chatd|" + hashlib.sha256("\x00".join(parts).encode()).digest()
