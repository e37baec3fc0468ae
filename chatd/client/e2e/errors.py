"""Errors of the end-to-end encryption SDK, one class per thing the app may act on."""

from __future__ import annotations


class E2EError(Exception):
    """Base class of every SDK error."""


class WrongStoreKey(E2EError):
    """The key given to open a store is not the one it was created with."""


class StoreMismatch(E2EError):
    """The store belongs to another device (each device needs its own store file)."""


class MalformedMessage(E2EError):
    """A ciphertext or decrypted payload that does not parse."""


class DecryptionFailed(E2EError):
    """A ciphertext that no session of the sending device can decrypt."""


class IdentityChanged(E2EError):
    """A known device now presents another identity key.

    Nothing is encrypted to such a device until the app accepts the new key
    (``accept_identity``), after showing the user the new safety number.
    ``devices`` lists ``(user_id, device_id)`` pairs.
    """

    def __init__(self, devices: list[tuple[str, str]]) -> None:
        names = ", ".join(f"{u}/{d}" for u, d in devices)
        super().__init__(f"identity key changed for {names}")
        self.devices = devices
