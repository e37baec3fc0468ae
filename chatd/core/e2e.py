"""End-to-end encrypted messages: the rules every store applies the same way.

The server relays one ciphertext per recipient device and never sees plaintext.
Which devices a message must cover is decided inside the store's append (so a
device that gets its bundle or is revoked meanwhile cannot slip through), but
the rule itself lives here: the members' devices holding a key bundle and not
revoked, less the sending device, exactly.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping
from typing import Any

from chatd.core.errors import ChatdError, bad_request
from chatd.core.models import Ciphertext

CIPHERTEXT_TYPES = ("prekey", "message")


class DeviceMismatch(ChatdError):
    """A ``ciphertexts`` map that does not cover exactly the devices it must.

    The error object carries ``missing_devices`` and ``unknown_devices`` (lists of
    ids), and the message names them too: ``missing devices: a, b; unknown devices: c``.
    """

    def __init__(self, missing: Iterable[str], unknown: Iterable[str]) -> None:
        self.missing = sorted(missing)
        self.unknown = sorted(unknown)
        parts = []
        if self.missing:
            parts.append("missing devices: " + ", ".join(self.missing))
        if self.unknown:
            parts.append("unknown devices: " + ", ".join(self.unknown))
        super().__init__("bad_request", "; ".join(parts))
        self.details = {"missing_devices": self.missing, "unknown_devices": self.unknown}


def check_coverage(required: Iterable[str], given: Iterable[str]) -> None:
    """Raise ``DeviceMismatch`` unless ``given`` is exactly ``required``."""
    need, have = set(required), set(given)
    if need != have:
        raise DeviceMismatch(need - have, have - need)


def parse_ciphertexts(
    value: Any, *, max_devices: int, max_body_bytes: int
) -> dict[str, Ciphertext]:
    """The ``ciphertexts`` field of a send: ``{device_id: {type, body}}``, checked."""
    if not isinstance(value, Mapping):
        raise bad_request("ciphertexts must be an object {device_id: {type, body}}")
    if len(value) > max_devices:
        raise ChatdError("payload_too_large", f"ciphertexts has more than {max_devices} devices")
    out: dict[str, Ciphertext] = {}
    max_chars = (max_body_bytes + 2) // 3 * 4
    for device_id, entry in value.items():
        if not device_id or len(device_id) > 64:
            raise bad_request("ciphertexts keys must be device ids")
        if not isinstance(entry, Mapping):
            raise bad_request(f"ciphertexts.{device_id} must be an object {{type, body}}")
        kind, body = entry.get("type"), entry.get("body")
        if kind not in CIPHERTEXT_TYPES:
            raise bad_request(f"ciphertexts.{device_id}.type must be prekey or message")
        if not isinstance(body, str) or not body:
            raise bad_request(f"ciphertexts.{device_id}.body must be a base64 string")
        if len(body) > max_chars:
            raise ChatdError(
                "payload_too_large", f"ciphertexts.{device_id}.body is over {max_body_bytes} bytes"
            )
        try:
            base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise bad_request(f"ciphertexts.{device_id}.body is not valid base64") from None
        out[device_id] = Ciphertext(kind, body)
    return out


def ciphertext_view(ciphertext: Ciphertext | None) -> dict[str, str] | None:
    """The contract's ``ciphertext`` field of one device's copy of a message."""
    if ciphertext is None:
        return None
    return {"type": ciphertext.type, "body": ciphertext.body}
