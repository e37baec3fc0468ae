"""The SQLite database being migrated, opened read-only, as records of chatd's models.

Reads run on one thread of their own (sqlite3 blocks), inside one read
transaction held for the whole run: every step and the verification see the
same snapshot even if someone writes to the file meanwhile. Nobody should:
``open`` refuses while a ``chatd serve`` holds the data directory's
``serve.lock``, and holds that lock itself until ``close``, so no server can
start on the directory during the copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from chatd.core.models import Chat, Contact, Device, DeviceKeys, Media, Member, Message, User
from chatd.storage.sqlite.rows import (
    CHAT_COLUMNS,
    CONTACT_COLUMNS,
    DEVICE_COLUMNS,
    KEY_COLUMNS,
    MEDIA_COLUMNS,
    MEMBER_COLUMNS,
    MESSAGE_COLUMNS,
    USER_COLUMNS,
    chat_of,
    contact_of,
    device_of,
    keys_of,
    media_of,
    member_of,
    message_of,
    user_of,
)

T = TypeVar("T")
DB_NAME = "chatd.sqlite3"

#: Every table of the SQLite schema, and whether it is copied (a test checks the list
#: against a freshly migrated database, so a new table is not silently left behind).
TABLES = {
    "users": True,
    "devices": True,
    "contacts": True,
    "invites": True,
    "chats": True,
    "members": True,
    "messages": True,
    "device_cursors": True,
    "media": True,
    "device_keys": True,
    "one_time_prekeys": True,
    "revocations": False,  # the revocation feed: see chatd/storage/scylla/importer/
    "schema_migrations": False,
    "write_probe": False,  # /health's probe after a failed write: always empty
    "audit": False,  # the admin audit log: not copied yet, starts afresh on ScyllaDB
    "ciphertexts": False,  # transient, per device: see docs/operations.md (migrate)
    # Push: devices register their target again (apps do at every start); waiting
    # and dead notifications are transient. See docs/operations.md (migrate).
    "push_targets": False,
    "push_outbox": False,
    "push_dead": False,
}


class SourceError(Exception):
    """The source cannot be migrated as it is; the message says what to do."""


def database_file(path: Path) -> Path:
    """``chatd.sqlite3`` in a data directory, or the database file itself."""
    path = path.expanduser()
    if path.is_dir():
        path = path / DB_NAME
    if not path.is_file():
        raise SourceError(f"{path}: no such database (give the data directory or the file)")
    return path


def known_versions() -> set[int]:
    folder = resources.files("chatd.storage.sqlite") / "migrations"
    return {int(p.name.split("_", 1)[0]) for p in folder.iterdir() if p.name.endswith(".sql")}


class SqliteSource:
    def __init__(self, path: Path) -> None:
        self.path = database_file(path)
        self.data_dir = self.path.parent
        self._conn: sqlite3.Connection | None = None
        self._lock: Any = None
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="migrate-source")

    # -- lifecycle ---------------------------------------------------------------------

    async def open(self) -> None:
        await self.run(self._open)

    def _open(self) -> None:
        self._lock = _lock_data_dir(self.data_dir)
        uri = f"file:{quote(str(self.path.resolve()))}?mode=ro"
        try:
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA query_only=ON")
            conn.execute("BEGIN")
            versions = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
        except sqlite3.Error as exc:
            if "conn" in locals():
                conn.close()
            self._release()
            raise SourceError(f"{self.path}: cannot read it as a chatd database: {exc}") from exc
        self._conn = conn
        known = known_versions()
        if versions - known:
            self.close_now()
            raise SourceError(
                f"{self.path} has schema migrations this chatd does not know "
                f"({sorted(versions - known)}): run the chatd version that wrote it"
            )
        if known - versions:
            self.close_now()
            raise SourceError(
                f"{self.path} lacks schema migrations {sorted(known - versions)}: apply them "
                f"first with this chatd (e.g. `chatd user list --data-dir {self.data_dir}`)"
            )

    async def close(self) -> None:
        await self.run(self.close_now)
        self._thread.shutdown(wait=True)

    def close_now(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.execute("ROLLBACK")
            self._conn.close()
            self._conn = None
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a read on the source's thread (one at a time, in the snapshot)."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        assert self._conn is not None, "source is not open"
        return self._conn.execute(sql, params).fetchall()

    def _iter(self, sql: str, params: Sequence[Any] = ()) -> Iterator[tuple[Any, ...]]:
        assert self._conn is not None, "source is not open"
        yield from self._conn.execute(sql, params)

    # -- whole-database facts ----------------------------------------------------------

    def counts(self) -> dict[str, int]:
        """Rows per table (what the summary compares)."""
        return {
            name: int(self._rows(f"SELECT count(*) FROM {name}")[0][0])
            for name, copied in TABLES.items()
            if copied
        }

    def fingerprint(self) -> str:
        """A digest of everything copied, so a resumed run can tell that the source
        changed since the interrupted one (messages: their count and every chat's
        last_seq, since messages are never edited or deleted)."""
        digest = hashlib.blake2b(digest_size=16)
        for name, copied in TABLES.items():
            if not copied or name == "messages":
                continue
            for row in self._iter(f"SELECT * FROM {name} ORDER BY 1, 2"):
                digest.update(repr(row).encode())
            digest.update(b"\x00" + name.encode())
        digest.update(repr(self._rows("SELECT count(*) FROM messages")).encode())
        return digest.hexdigest()

    # -- pages, in key order (the resume position is the last key of a page) ----------

    def users(self, after: list[Any] | None, limit: int) -> list[User]:
        rows = self._rows(
            f"SELECT {USER_COLUMNS} FROM users WHERE user_id > ? ORDER BY user_id LIMIT ?",
            (_one(after), limit),
        )
        return [user_of(r) for r in rows]

    def devices(self, after: list[Any] | None, limit: int) -> list[tuple[Device, str]]:
        rows = self._rows(
            f"SELECT {DEVICE_COLUMNS}, token_hash FROM devices WHERE device_id > ? "
            "ORDER BY device_id LIMIT ?",
            (_one(after), limit),
        )
        return [(device_of(r), r[-1]) for r in rows]

    def contacts(self, after: list[Any] | None, limit: int) -> list[Contact]:
        rows = self._rows(
            f"SELECT {CONTACT_COLUMNS} FROM contacts "
            "WHERE (user_id, contact_id) > (?, ?) ORDER BY user_id, contact_id LIMIT ?",
            (*_two(after), limit),
        )
        return [contact_of(r) for r in rows]

    def invites(self, after: list[Any] | None, limit: int) -> list[tuple[str, int, int | None]]:
        rows = self._rows(
            "SELECT code, uses_left, expires_at FROM invites WHERE code > ? ORDER BY code LIMIT ?",
            (_one(after), limit),
        )
        return [(r[0], int(r[1]), r[2]) for r in rows]

    def chats(
        self, after: list[Any] | None, limit: int
    ) -> list[tuple[Chat, list[Member], str | None]]:
        rows = self._rows(
            f"SELECT {CHAT_COLUMNS}, direct_key FROM chats WHERE chat_id > ? "
            "ORDER BY chat_id LIMIT ?",
            (_one(after), limit),
        )
        members = self.members([r[0] for r in rows])
        return [(chat_of(r), members.get(r[0], []), r[-1]) for r in rows]

    def members(self, chat_ids: Sequence[str]) -> dict[str, list[Member]]:
        out: dict[str, list[Member]] = {}
        for start in range(0, len(chat_ids), 500):
            chunk = chat_ids[start : start + 500]
            for r in self._rows(
                f"SELECT {MEMBER_COLUMNS} FROM members "
                f"WHERE chat_id IN ({','.join('?' * len(chunk))}) ORDER BY chat_id, user_id",
                chunk,
            ):
                out.setdefault(r[0], []).append(member_of(r))
        return out

    def messages(self, after: list[Any] | None, limit: int) -> list[Message]:
        rows = self._rows(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE (chat_id, seq) > (?, ?) "
            "ORDER BY chat_id, seq LIMIT ?",
            (*_two(after, 0), limit),
        )
        return [message_of(r) for r in rows]

    def cursors(self, after: list[Any] | None, limit: int) -> list[tuple[str, str, int]]:
        rows = self._rows(
            "SELECT device_id, chat_id, delivered_seq FROM device_cursors "
            "WHERE (device_id, chat_id) > (?, ?) ORDER BY device_id, chat_id LIMIT ?",
            (*_two(after), limit),
        )
        return [(r[0], r[1], int(r[2])) for r in rows]

    def media(self, after: list[Any] | None, limit: int) -> list[tuple[Media, bool]]:
        """Records with whether a message carries them (the store's ``referenced``)."""
        rows = self._rows(
            f"SELECT {MEDIA_COLUMNS}, referenced != 0 OR EXISTS "
            "(SELECT 1 FROM messages m WHERE m.media_id = media.media_id) "
            "FROM media WHERE media_id > ? ORDER BY media_id LIMIT ?",
            (_one(after), limit),
        )
        return [(media_of(r), bool(r[-1])) for r in rows]

    def device_keys(self, after: list[Any] | None, limit: int) -> list[DeviceKeys]:
        rows = self._rows(
            f"SELECT {KEY_COLUMNS} FROM device_keys WHERE device_id > ? ORDER BY device_id LIMIT ?",
            (_one(after), limit),
        )
        return [keys_of(r) for r in rows]

    def prekeys(self, after: list[Any] | None, limit: int) -> list[tuple[str, int, str]]:
        rows = self._rows(
            "SELECT device_id, key_id, public_key FROM one_time_prekeys "
            "WHERE (device_id, key_id) > (?, ?) ORDER BY device_id, key_id LIMIT ?",
            (*_two(after, -(2**63)), limit),
        )
        return [(r[0], int(r[1]), r[2]) for r in rows]

    def done_before(self, step: str, position: list[Any] | None) -> int:
        """How many records of ``step`` lie at or before ``position`` (for the progress bar)."""
        if position is None:
            return 0
        table, key = _KEYS[step]
        if len(key) == 1:
            sql = f"SELECT count(*) FROM {table} WHERE {key[0]} <= ?"
        else:
            sql = f"SELECT count(*) FROM {table} WHERE ({', '.join(key)}) <= (?, ?)"
        return int(self._rows(sql, position)[0][0])

    # -- one chat, for epochs and verification -------------------------------------------

    def chat(self, chat_id: str) -> tuple[Chat, list[Member]] | None:
        rows = self._rows(f"SELECT {CHAT_COLUMNS} FROM chats WHERE chat_id = ?", (chat_id,))
        if not rows:
            return None
        return chat_of(rows[0]), self.members([chat_id]).get(chat_id, [])

    def system_seqs(self, chat_id: str) -> list[int]:
        """Seqs of the chat's system messages: each one moved the chat's version by one."""
        rows = self._rows(
            "SELECT seq FROM messages WHERE chat_id = ? AND type = 'system' ORDER BY seq",
            (chat_id,),
        )
        return [int(r[0]) for r in rows]

    def chat_messages(self, chat_id: str, after_seq: int, limit: int) -> list[Message]:
        rows = self._rows(
            f"SELECT {MESSAGE_COLUMNS} FROM messages WHERE chat_id = ? AND seq > ? "
            "ORDER BY seq LIMIT ?",
            (chat_id, after_seq, limit),
        )
        return [message_of(r) for r in rows]

    def chat_ids(self, after: str, limit: int) -> list[str]:
        rows = self._rows(
            "SELECT chat_id FROM chats WHERE chat_id > ? ORDER BY chat_id LIMIT ?", (after, limit)
        )
        return [r[0] for r in rows]


#: step -> (table, key columns): what ``done_before`` counts.
_KEYS = {
    "users": ("users", ("user_id",)),
    "devices": ("devices", ("device_id",)),
    "contacts": ("contacts", ("user_id", "contact_id")),
    "invites": ("invites", ("code",)),
    "media": ("media", ("media_id",)),
    "device_keys": ("device_keys", ("device_id",)),
    "prekeys": ("one_time_prekeys", ("device_id", "key_id")),
    "chats": ("chats", ("chat_id",)),
    "messages": ("messages", ("chat_id", "seq")),
    "cursors": ("device_cursors", ("device_id", "chat_id")),
}


def _one(after: list[Any] | None) -> Any:
    return after[0] if after else ""


def _two(after: list[Any] | None, low: Any = "") -> tuple[Any, Any]:
    return (after[0], after[1]) if after else ("", low)


def _lock_data_dir(data_dir: Path) -> Any:
    """Take the data directory's ``serve.lock`` (see ``chatd serve``), or refuse.

    A directory we cannot write to has no server writing to it either (a backup
    copy): no lock is needed there.
    """
    import fcntl

    path = data_dir / "serve.lock"
    try:
        handle = open(path, "a")  # noqa: SIM115 (held until close)
    except OSError:
        if not path.exists():
            return None
        try:
            handle = open(path)  # noqa: SIM115
        except OSError:
            return None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise SourceError(
            f"a chatd serve (or another chatd migrate) is using {data_dir}: stop it first; "
            "the source must not change during the copy"
        ) from None
    return handle
