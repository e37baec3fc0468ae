"""A device's end-to-end state in one SQLite file, every value sealed with the app's key.

Each stored value (private keys, ratchet states, peer identities, decrypted
messages) is JSON sealed with ChaCha20-Poly1305 under a 32-byte key the
application supplies, with the row's kind and key as associated data, so a
value moved to another row fails to open. Left readable: the row keys (user,
device, chat and message ids, seqs), i.e. who this device talks to and how
much, never what is said or any key. Opening with another key raises
``WrongStoreKey`` before anything is read.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from chatd.client.e2e.errors import WrongStoreKey

FORMAT = b"chatd-e2e-store-v1"
KEY_BYTES = 32
_NONCE = 12

_SCHEMA = """
CREATE TABLE IF NOT EXISTS header (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL, key TEXT NOT NULL, blob BLOB NOT NULL, PRIMARY KEY (kind, key));
CREATE TABLE IF NOT EXISTS messages (
    message_id TEXT PRIMARY KEY, chat_id TEXT NOT NULL, seq INTEGER NOT NULL, blob BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS messages_by_chat ON messages (chat_id, seq);
"""


def key_from_passphrase(passphrase: str, salt: bytes) -> bytes:
    """A store key from a passphrase (scrypt, n=2**15); ``salt``: see ``E2EStore.salt``."""
    return Scrypt(salt=salt, length=KEY_BYTES, n=2**15, r=8, p=1).derive(passphrase.encode())


class E2EStore:
    """The sealed SQLite file of one device. Use ``E2EStore.open(path, key=...)``."""

    def __init__(self, conn: sqlite3.Connection, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"the store key must be {KEY_BYTES} bytes")
        self._conn = conn
        self._aead = ChaCha20Poly1305(key)

    @classmethod
    def open(
        cls, path: str | Path, *, key: bytes | None = None, passphrase: str | None = None
    ) -> E2EStore:
        """Open (or create) the store at ``path`` with a 32-byte ``key`` or a ``passphrase``.

        Raises WrongStoreKey if the file was created with another key.
        """
        if (key is None) == (passphrase is None):
            raise ValueError("give exactly one of key= and passphrase=")
        fresh = not Path(path).exists()
        conn = sqlite3.connect(str(path), isolation_level=None)
        if fresh:
            os.chmod(path, 0o600)  # sealed, but nobody else's business either
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(_SCHEMA)
        salt = cls._header(conn, "salt")
        if salt is None:
            salt = os.urandom(16)
            conn.execute("INSERT INTO header VALUES ('salt', ?)", (salt,))
        if passphrase is not None:
            key = key_from_passphrase(passphrase, salt)
        assert key is not None
        store = cls(conn, key)
        check = cls._header(conn, "check")
        if check is None:
            conn.execute("INSERT INTO header VALUES ('check', ?)", (store._seal("header", FORMAT),))
        else:
            try:
                if store._open("header", check) != FORMAT:
                    raise WrongStoreKey("the store holds an unknown format")
            except WrongStoreKey:
                conn.close()
                raise
        return store

    @staticmethod
    def _header(conn: sqlite3.Connection, name: str) -> bytes | None:
        row = conn.execute("SELECT value FROM header WHERE name = ?", (name,)).fetchone()
        return bytes(row[0]) if row else None

    @property
    def salt(self) -> bytes:
        salt = self._header(self._conn, "salt")
        assert salt is not None
        return salt

    def close(self) -> None:
        self._conn.close()

    # -- sealing -------------------------------------------------------------------

    def _seal(self, label: str, data: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + self._aead.encrypt(nonce, data, label.encode())

    def _open(self, label: str, blob: bytes) -> bytes:
        try:
            return self._aead.decrypt(blob[:_NONCE], blob[_NONCE:], label.encode())
        except InvalidTag:
            raise WrongStoreKey(
                f"cannot open {label!r}: wrong store key or tampered file"
            ) from None

    # -- records -------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Writes inside commit together or not at all (nested uses join the outer one)."""
        if self._conn.in_transaction:
            yield
            return
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def get(self, kind: str, key: str) -> Any:
        """The value stored under (kind, key), or None."""
        row = self._conn.execute(
            "SELECT blob FROM records WHERE kind = ? AND key = ?", (kind, key)
        ).fetchone()
        if row is None:
            return None
        return orjson.loads(self._open(f"{kind}\x00{key}", bytes(row[0])))

    def put(self, kind: str, key: str, value: Any) -> None:
        blob = self._seal(f"{kind}\x00{key}", orjson.dumps(value))
        self._conn.execute("INSERT OR REPLACE INTO records VALUES (?, ?, ?)", (kind, key, blob))

    def delete(self, kind: str, key: str) -> None:
        self._conn.execute("DELETE FROM records WHERE kind = ? AND key = ?", (kind, key))

    def keys(self, kind: str, prefix: str = "") -> list[str]:
        rows = self._conn.execute(
            "SELECT key FROM records WHERE kind = ? AND substr(key, 1, ?) = ? ORDER BY key",
            (kind, len(prefix), prefix),
        )
        return [r[0] for r in rows]

    # -- messages ------------------------------------------------------------------

    def put_message(self, message: dict[str, Any]) -> None:
        """Keep a decrypted (or sent) message, keyed by its message_id."""
        mid = message["message_id"]
        blob = self._seal(f"message\x00{mid}", orjson.dumps(message))
        self._conn.execute(
            "INSERT OR REPLACE INTO messages VALUES (?, ?, ?, ?)",
            (mid, message["chat_id"], int(message.get("seq") or 0), blob),
        )

    def get_message(self, message_id: str) -> dict[str, Any] | None:
        row = self._conn.execute(
            "SELECT blob FROM messages WHERE message_id = ?", (message_id,)
        ).fetchone()
        if row is None:
            return None
        return orjson.loads(self._open(f"message\x00{message_id}", bytes(row[0])))

    def history(self, chat_id: str, *, limit: int = 100) -> list[dict[str, Any]]:
        """The latest ``limit`` kept messages of a chat, oldest first."""
        rows = self._conn.execute(
            "SELECT message_id, blob FROM messages WHERE chat_id = ? ORDER BY seq DESC LIMIT ?",
            (chat_id, limit),
        ).fetchall()
        return [orjson.loads(self._open(f"message\x00{m}", bytes(b))) for m, b in reversed(rows)]
