"""Sealed cluster packets: every gossip datagram and node-to-node frame is
encrypted and authenticated with the cluster key, and can be opened once.

Layout of a packet::

    version(1) | key_id(1) | boot_id(16) | ts_ms(8) | counter(8) | ciphertext + tag(16)

Each process picks a random ``boot_id`` when it starts and seals with a subkey
``HKDF(cluster key, salt=boot_id)`` and the nonce ``counter`` (incremented per
packet), so nonces never repeat under a key without any coordination between
nodes. The header is authenticated as associated data. A receiver drops a packet
whose key it does not hold, whose tag fails, whose timestamp is more than
``window_s`` away from its clock, or whose counter it has already accepted from
that boot (a sliding window, as IPsec and WireGuard keep). Several keys may be
held at once to rotate the cluster key without a restart of every node at once:
the first seals, all open.
"""

from __future__ import annotations

import hashlib
import os
import struct
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = 1
HEADER = struct.Struct(">BB16sQQ")
OVERHEAD = HEADER.size + 16
#: Counters this far behind the newest accepted one from a boot are refused.
WINDOW = 4096
LABEL = b"chatd-cluster-v1"


class BadKey(ValueError):
    """A cluster key file that is missing or not 64 hex characters."""


class Dropped(Exception):
    """A packet that must be ignored; ``reason`` is a metrics label."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_key_file(path: Path) -> bytes:
    """A cluster key: 32 random bytes written as 64 hex characters (whitespace ignored)."""
    try:
        text = "".join(path.read_text(encoding="ascii").split())
    except (OSError, UnicodeDecodeError) as exc:
        raise BadKey(f"cannot read cluster key file {path}: {exc}") from None
    if len(text) != 64:
        raise BadKey(f"cluster key file {path} must hold 64 hex characters")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise BadKey(f"cluster key file {path} must hold 64 hex characters") from None


def _key_id(key: bytes) -> int:
    return hashlib.sha256(b"chatd key id" + key).digest()[0]


@dataclass(frozen=True)
class Keyring:
    """The cluster keys this node holds: ``keys[0]`` seals, every key opens."""

    keys: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise BadKey("a keyring needs at least one key")
        ids = [_key_id(k) for k in self.keys]
        if any(len(k) != 32 for k in self.keys) or len(set(ids)) != len(ids):
            raise BadKey("cluster keys must be 32 bytes and distinct")

    @classmethod
    def from_files(cls, primary: Path, others: Sequence[Path] = ()) -> Keyring:
        return cls(tuple(read_key_file(p) for p in (primary, *others)))


class _Peer:
    """What is remembered of one sender boot: its cipher and replay window."""

    __slots__ = ("aead", "highest", "last_ms", "seen")

    def __init__(self, aead: ChaCha20Poly1305) -> None:
        self.aead = aead
        self.highest = 0
        self.seen = 0  # bit i set: counter ``highest - i`` was accepted
        self.last_ms = 0

    def fresh(self, counter: int) -> bool:
        if counter > self.highest:
            return True
        behind = self.highest - counter
        return behind < WINDOW and not (self.seen >> behind) & 1

    def accept(self, counter: int) -> None:
        if counter > self.highest:
            shift = counter - self.highest
            self.seen = ((self.seen << shift) | 1) & ((1 << WINDOW) - 1)
            self.highest = counter
        else:
            self.seen |= 1 << (self.highest - counter)


def _subkey(key: bytes, boot_id: bytes) -> ChaCha20Poly1305:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=boot_id, info=LABEL).derive(key)
    return ChaCha20Poly1305(derived)


class Sealer:
    """Seals this node's packets and opens its peers'. Not thread-safe (one event loop)."""

    def __init__(
        self,
        keyring: Keyring,
        *,
        window_s: float = 30.0,
        clock: Callable[[], float] = time.time,
        boot_id: bytes | None = None,
    ) -> None:
        self._by_id = {_key_id(k): k for k in keyring.keys}
        self._seal_id = _key_id(keyring.keys[0])
        self._window_ms = int(window_s * 1000)
        self._clock = clock
        self.boot_id = boot_id or os.urandom(16)
        self._own = _subkey(keyring.keys[0], self.boot_id)
        self._counter = 0
        self._peers: dict[tuple[int, bytes], _Peer] = {}
        self._last_prune_ms = 0
        #: Packets dropped so far, by reason (``auth``, ``stale``, ``replay``, ...).
        self.dropped: Counter[str] = Counter()

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def seal(self, payload: bytes) -> bytes:
        self._counter += 1
        header = HEADER.pack(VERSION, self._seal_id, self.boot_id, self._now_ms(), self._counter)
        nonce = self._counter.to_bytes(12, "big")
        return header + self._own.encrypt(nonce, payload, header + LABEL)

    def open(self, packet: bytes) -> bytes:
        """The payload of ``packet``, or ``Dropped`` (counted in ``dropped``)."""
        try:
            return self._open(packet)
        except Dropped as exc:
            self.dropped[exc.reason] += 1
            raise

    def _open(self, packet: bytes) -> bytes:
        if len(packet) < OVERHEAD:
            raise Dropped("malformed")
        version, key_id, boot_id, ts_ms, counter = HEADER.unpack_from(packet)
        if version != VERSION:
            raise Dropped("version")
        key = self._by_id.get(key_id)
        if key is None:
            raise Dropped("unknown_key")
        now = self._now_ms()
        if abs(now - ts_ms) > self._window_ms:
            raise Dropped("stale")
        peer = self._peers.get((key_id, boot_id))
        if peer is not None and not peer.fresh(counter):
            raise Dropped("replay")
        aead = peer.aead if peer is not None else _subkey(key, boot_id)
        header = packet[: HEADER.size]
        try:
            payload = aead.decrypt(
                counter.to_bytes(12, "big"), packet[HEADER.size :], header + LABEL
            )
        except InvalidTag:
            raise Dropped("auth") from None
        if peer is None:
            peer = self._peers[(key_id, boot_id)] = _Peer(aead)
        peer.accept(counter)
        peer.last_ms = now
        self._prune(now)
        return payload

    def _prune(self, now: int) -> None:
        """Forget boots silent for twice the window: their old packets are stale anyway."""
        if now - self._last_prune_ms < self._window_ms:
            return
        self._last_prune_ms = now
        horizon = now - 2 * self._window_ms
        for ident in [i for i, p in self._peers.items() if p.last_ms < horizon]:
            del self._peers[ident]
