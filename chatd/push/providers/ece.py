"""Web Push message encryption (RFC 8291, ``aes128gcm``) for the webpush and
unifiedpush providers, by ``http_ece`` (the library pywebpush itself uses)."""

from __future__ import annotations

import base64
import binascii

import http_ece
from cryptography.hazmat.primitives.asymmetric import ec

from chatd.core.ports.push import InvalidTarget


def b64url_decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def b64url_encode(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).rstrip(b"=").decode("ascii")


def _receiver_key(p256dh: str) -> ec.EllipticCurvePublicKey:
    try:
        raw = b64url_decode(p256dh)
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except (ValueError, binascii.Error):
        raise InvalidTarget("keys.p256dh must be a base64url P-256 public key") from None


def _auth_secret(auth: str) -> bytes:
    try:
        secret = b64url_decode(auth)
    except (ValueError, binascii.Error):
        secret = b""
    if len(secret) != 16:
        raise InvalidTarget("keys.auth must be 16 bytes, base64url") from None
    return secret


def check_keys(p256dh: str | None, auth: str | None) -> None:
    """Raise ``InvalidTarget`` unless both keys are present and well formed."""
    if not p256dh or not auth:
        raise InvalidTarget("keys must have both p256dh and auth")
    _receiver_key(p256dh)
    _auth_secret(auth)


def encrypt(body: bytes, p256dh: str, auth: str) -> bytes:
    """``body`` encrypted for one subscription, with a fresh sender key each time."""
    return http_ece.encrypt(
        body,
        private_key=ec.generate_private_key(ec.SECP256R1()),
        dh=_receiver_key(p256dh),
        auth_secret=_auth_secret(auth),
        version="aes128gcm",
    )
