"""Opaque page cursors for keyset pagination: the sort key of the last row shown.

A cursor names its list (``kind``) so one list's cursor is refused by another.
"""

from __future__ import annotations

import base64

from chatd.core.errors import bad_request

MAX_CURSOR = 400


def encode(kind: str, key: str) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{key}".encode()).decode().rstrip("=")


def decode(kind: str, cursor: str | None) -> str | None:
    """The key inside ``cursor`` (None when there is none), or ``bad_request``."""
    if not cursor:
        return None
    try:
        if len(cursor) > MAX_CURSOR:
            raise ValueError
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        got, sep, key = raw.partition(":")
        if got != kind or not sep or not key:
            raise ValueError
        return key
    except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors
        raise bad_request("cursor is not one this server gave") from None
