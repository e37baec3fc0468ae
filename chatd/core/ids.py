"""Identifiers and timestamps.

Message ids are UUIDv7 strings: their text sorts in creation order, which the
contract promises for the messages of one chat. The ``uuid6`` package keeps them
monotonic within a process even when several are made in one millisecond.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from datetime import UTC, datetime

from uuid6 import uuid7


def new_id() -> str:
    """A fresh time-sortable id (UUIDv7 text)."""
    return str(uuid7())


def new_token() -> str:
    """A bearer token: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """Tokens are stored hashed, so a leaked database does not log anyone in."""
    return hashlib.sha256(token.encode()).hexdigest()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def format_ts(ms: int | None) -> str | None:
    """RFC 3339 UTC with milliseconds, as the contract writes every timestamp."""
    if ms is None:
        return None
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
