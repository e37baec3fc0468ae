"""Identifiers and timestamps.

Ids are UUIDv7 strings (RFC 9562): their text sorts in creation order, which the
contract promises for the messages of one chat. Written here rather than taken
from a package because the core imports only the standard library (3.14 adds
``uuid.uuid7``); it follows the RFC's method 1, a 12-bit counter within a
millisecond, so ids stay monotonic in a process even when the clock steps back.
"""

from __future__ import annotations

import hashlib
import os
import random
import secrets
import threading
import time

_lock = threading.Lock()
_last_ms = 0
_counter = 0
# Ids are not secrets (every read is authorized, tokens come from ``secrets``), so
# their random bits come from a fast generator seeded from the OS.
_random = random.Random(os.urandom(32))


def new_id() -> str:
    """A fresh time-sortable id (UUIDv7 text), greater than every earlier one."""
    global _last_ms, _counter
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms, _counter = ms, _random.getrandbits(11)  # leave room to count up
        else:
            _counter += 1
            if _counter > 0xFFF:  # 4096 ids in one millisecond: borrow the next one
                _last_ms, _counter = _last_ms + 1, 0
        value = (_last_ms << 80) | (0x7 << 76) | (_counter << 64) | (0b10 << 62)
        value |= _random.getrandbits(62)
    h = f"{value:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def id_time_ms(id_: str) -> int | None:
    """When an id from ``new_id`` was made (epoch ms); None for any other string."""
    digits = id_.replace("-", "")[:12]
    try:
        return int(digits, 16) if len(digits) == 12 else None
    except ValueError:
        return None


def new_token() -> str:
    """A bearer token: 256 random bits, URL-safe."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """Tokens are stored hashed, so a leaked database does not log anyone in."""
    return hashlib.sha256(token.encode()).hexdigest()


def now_ms() -> int:
    return time.time_ns() // 1_000_000


_second = -1
_second_text = ""


def format_ts(ms: int | None) -> str | None:
    """RFC 3339 UTC with milliseconds, as the contract writes every timestamp."""
    global _second, _second_text
    if ms is None:
        return None
    second, millis = divmod(ms, 1000)
    if second != _second:  # one strftime a second, not one a message
        _second, _second_text = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
    return f"{_second_text}.{millis:03d}Z"
