"""End-to-end encryption for chatd clients: X3DH + Double Ratchet, per device.

``E2EStore`` is a device's sealed local state, ``E2EDevice`` its keys, sessions
and message sealing without any network, ``E2EClient`` runs it over a logged-in
``ChatdClient`` (key upload, bundle fetches, fan-out, receipts). See docs/e2e.md.
"""

from chatd.client.e2e.device import E2EDevice, Received
from chatd.client.e2e.errors import (
    DecryptionFailed,
    E2EError,
    IdentityChanged,
    MalformedMessage,
    StoreMismatch,
    WrongStoreKey,
)
from chatd.client.e2e.store import E2EStore, key_from_passphrase
from chatd.client.e2e.trust import grouped, safety_number

__all__ = [
    "DecryptionFailed",
    "E2EDevice",
    "E2EError",
    "E2EStore",
    "IdentityChanged",
    "MalformedMessage",
    "Received",
    "StoreMismatch",
    "WrongStoreKey",
    "grouped",
    "key_from_passphrase",
    "safety_number",
]
