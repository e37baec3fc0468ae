"""Safety numbers: a 60-digit code two users compare out of band (read aloud, QR).

In chatd every device has its own identity key, so a user's fingerprint covers
the identity keys of all their devices: 30 digits from 5,200 rounds of SHA-512
over the user id and the sorted keys (Signal's construction). The safety number
of a pair is both fingerprints, the smaller first, so it is the same whoever
computes it. It changes when either user adds a device or a key changes, which
is the point: a device the server slipped in shows up as a different number.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

VERSION = b"\x00\x00"
ITERATIONS = 5200


def fingerprint(user_id: str, identity_keys: Iterable[bytes]) -> str:
    """30 digits identifying ``user_id``'s set of device identity keys."""
    keys = b"".join(sorted(set(identity_keys)))
    digest = hashlib.sha512(VERSION + keys + user_id.encode()).digest()
    for _ in range(ITERATIONS):
        digest = hashlib.sha512(digest + keys).digest()
    chunks = (int.from_bytes(digest[i : i + 5], "big") % 100_000 for i in range(0, 30, 5))
    return "".join(f"{c:05d}" for c in chunks)


def safety_number(
    user_a: str, keys_a: Iterable[bytes], user_b: str, keys_b: Iterable[bytes]
) -> str:
    """60 digits for the pair, identical whichever side computes it."""
    return "".join(sorted((fingerprint(user_a, keys_a), fingerprint(user_b, keys_b))))


def grouped(number: str) -> str:
    """The digits in groups of five, as shown to people: ``12345 67890 ...``."""
    return " ".join(number[i : i + 5] for i in range(0, len(number), 5))
