"""What travels in a ``ciphertexts`` entry, and what is inside it once decrypted.

The entry's ``body`` is base64 of a compact binary envelope: the sending device's
id (the server knows it anyway), for a ``prekey`` entry the X3DH header, then the
Double Ratchet header and ciphertext. Inside, the plaintext is a small JSON object
padded to a multiple of 160 bytes (as Signal does), so the server sees message
sizes only to that granularity.
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass
from typing import Any

import orjson
import x3dh
from doubleratchet import EncryptedMessage, Header

from chatd.client.e2e.errors import MalformedMessage

VERSION = 1
KEY_BYTES = 32
PAD_BLOCK = 160
PREKEY, MESSAGE = "prekey", "message"


@dataclass(frozen=True, slots=True)
class Envelope:
    """One device's decoded ``ciphertexts`` entry."""

    sender_device: str
    message: EncryptedMessage
    x3dh_header: x3dh.Header | None  # set on a "prekey" entry

    @property
    def kind(self) -> str:
        return PREKEY if self.x3dh_header is not None else MESSAGE


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: Any, what: str = "value") -> bytes:
    if not isinstance(text, str):
        raise MalformedMessage(f"{what} is not a base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedMessage(f"{what} is not valid base64") from None


def encode(envelope: Envelope) -> dict[str, str]:
    """The ``{type, body}`` entry for one device."""
    device = envelope.sender_device.encode()
    out = bytearray([VERSION, len(device)]) + device
    xh = envelope.x3dh_header
    if xh is not None:
        out += xh.identity_key + xh.ephemeral_key + xh.signed_pre_key
        out += b"\x01" + xh.pre_key if xh.pre_key is not None else b"\x00"
    header = envelope.message.header
    out += header.ratchet_pub
    out += struct.pack(">II", header.previous_sending_chain_length, header.sending_chain_length)
    out += envelope.message.ciphertext
    return {"type": envelope.kind, "body": b64(bytes(out))}


def decode(entry: Any) -> Envelope:
    """Parse a received ``ciphertext``; raises MalformedMessage on anything unexpected."""
    if not isinstance(entry, dict) or entry.get("type") not in (PREKEY, MESSAGE):
        raise MalformedMessage("ciphertext must be {type: prekey|message, body}")
    raw = unb64(entry.get("body"), "ciphertext body")
    try:
        if raw[0] != VERSION:
            raise MalformedMessage(f"unknown envelope version {raw[0]}")
        pos = 2 + raw[1]
        sender_device = raw[2:pos].decode()
        xh = None
        if entry["type"] == PREKEY:
            ik, ek, spk = (raw[pos + i * KEY_BYTES : pos + (i + 1) * KEY_BYTES] for i in range(3))
            pos += 3 * KEY_BYTES
            opk = None
            if raw[pos] == 1:
                opk = raw[pos + 1 : pos + 1 + KEY_BYTES]
                pos += KEY_BYTES
            pos += 1
            xh = x3dh.Header(ik, ek, spk, opk)
        ratchet_pub = raw[pos : pos + KEY_BYTES]
        pn, n = struct.unpack_from(">II", raw, pos + KEY_BYTES)
        ciphertext = raw[pos + KEY_BYTES + 8 :]
    except (IndexError, struct.error, UnicodeDecodeError):
        raise MalformedMessage("truncated ciphertext body") from None
    if len(ratchet_pub) != KEY_BYTES or not ciphertext:
        raise MalformedMessage("truncated ciphertext body")
    return Envelope(sender_device, EncryptedMessage(Header(ratchet_pub, pn, n), ciphertext), xh)


def pad(payload: dict[str, Any]) -> bytes:
    """JSON, then 0x80 and zeros up to a multiple of PAD_BLOCK bytes (ISO/IEC 7816-4)."""
    data = orjson.dumps(payload) + b"\x80"
    return data + b"\x00" * (-len(data) % PAD_BLOCK)


def unpad(data: bytes) -> dict[str, Any]:
    end = data.rstrip(b"\x00")
    if not end.endswith(b"\x80"):
        raise MalformedMessage("bad padding")
    try:
        payload = orjson.loads(end[:-1])
    except orjson.JSONDecodeError:
        raise MalformedMessage("the decrypted payload is not JSON") from None
    if not isinstance(payload, dict):
        raise MalformedMessage("the decrypted payload is not an object")
    return payload
