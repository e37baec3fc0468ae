"""Users on ScyllaDB: unique names by LWT, prefix search by two-character partitions.

``create`` writes the user row first, then claims the name with ``IF NOT EXISTS``
(the commit point), then the search rows. A loser deletes its row; a process
that dies before the claim leaves a row no name points at (unreachable), one
that dies after it leaves a user that logs in but is missing from search until
an administrator recreates the rows (documented in docs/architecture.md).
"""

from __future__ import annotations

from typing import Any

from cassandra.query import UNSET_VALUE

from chatd.core.errors import ChatdError
from chatd.core.models import User
from chatd.storage.scylla.bridge import Cql, gather_limited

_COLUMNS = (
    "user_id, username, display_name, password_hash, created_at, status_message, "
    "avatar_media_id, is_admin, banned, last_seen, group_add"
)
_UPDATABLE = (
    "display_name",
    "status_message",
    "avatar_media_id",
    "password_hash",
    "is_admin",
    "banned",
    "last_seen",
    "group_add",
)

CQL = {
    "users.insert": f"INSERT INTO users ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
    "users.delete": "DELETE FROM users WHERE user_id = ?",
    "users.get": f"SELECT {_COLUMNS} FROM users WHERE user_id = ?",
    "users.claim_name": "INSERT INTO usernames (username, user_id) VALUES (?, ?) IF NOT EXISTS",
    "users.by_name": "SELECT user_id FROM usernames WHERE username = ?",
    "users.name_owner": "SELECT user_id FROM usernames WHERE username = ?",
    "users.put_prefix": "INSERT INTO users_by_prefix (prefix, username, user_id) VALUES (?, ?, ?)",
    "users.put_directory": "INSERT INTO user_prefixes (shard, prefix) VALUES (0, ?)",
    "users.range": "SELECT username, user_id FROM users_by_prefix "
    "WHERE prefix = ? AND username >= ? AND username < ? LIMIT ?",
    "users.range_after": "SELECT username, user_id FROM users_by_prefix "
    "WHERE prefix = ? AND username > ? AND username < ? LIMIT ?",
    "users.after": "SELECT username, user_id FROM users_by_prefix "
    "WHERE prefix = ? AND username > ? LIMIT ?",
    "users.directory_range": "SELECT prefix FROM user_prefixes "
    "WHERE shard = 0 AND prefix >= ? AND prefix < ?",
    "users.directory_from": "SELECT prefix FROM user_prefixes WHERE shard = 0 AND prefix >= ?",
    **{f"users.set_{f}": f"UPDATE users SET {f} = ? WHERE user_id = ?" for f in _UPDATABLE},
}

_TOP = "\U0010ffff"


def _user(row: Any) -> User:
    return User(
        user_id=row.user_id,
        username=row.username,
        display_name=row.display_name,
        password_hash=row.password_hash,
        created_at=int(row.created_at),
        status_message=row.status_message or "",
        avatar_media_id=row.avatar_media_id,
        is_admin=bool(row.is_admin),
        banned=bool(row.banned),
        last_seen=row.last_seen,
        group_add=row.group_add or "everyone",  # null: a user from before migration 4
    )


def prefix_of(username: str) -> str:
    """The search partition of a (lower-case) username: its first two characters."""
    return username[:2]


def _upper(prefix: str) -> str:
    """The smallest string above every string that starts with ``prefix``."""
    if not prefix:
        return _TOP
    last = ord(prefix[-1])
    return prefix[:-1] + (chr(last + 1) if last < 0x10FFFF else _TOP)


def _unset(value: Any) -> Any:
    return UNSET_VALUE if value is None else value


class ScyllaUsers:
    def __init__(self, cql: Cql) -> None:
        self._cql = cql

    async def create(self, user: User) -> None:
        async with self._cql.gate.held():
            name = user.username.lower()
            await self._cql.write(
                "users.insert",
                (
                    user.user_id,
                    name,
                    user.display_name,
                    user.password_hash,
                    user.created_at,
                    user.status_message,
                    _unset(user.avatar_media_id),
                    user.is_admin,
                    user.banned,
                    _unset(user.last_seen),
                    user.group_add,
                ),
            )

            async def verify() -> bool:
                row = await self._cql.one("users.name_owner", (name,), serial=True)
                return row is not None and row.user_id == user.user_id

            claim = await self._cql.lwt("users.claim_name", (name, user.user_id), verify=verify)
            if not claim.applied:
                await self._cql.write("users.delete", (user.user_id,))
                raise ChatdError("conflict", "username is taken")
            prefix = prefix_of(name)
            await self._cql.writes(
                [
                    ("users.put_prefix", (prefix, name, user.user_id)),
                    ("users.put_directory", (prefix,)),
                ]
            )

    async def get(self, user_id: str) -> User | None:
        row = await self._cql.one("users.get", (user_id,))
        return _user(row) if row is not None and row.username is not None else None

    async def _many(self, user_ids: list[str]) -> list[User]:
        found = await gather_limited([self.get(u) for u in user_ids])
        return [u for u in found if u is not None]

    async def get_by_name(self, username: str) -> User | None:
        row = await self._cql.one("users.by_name", (username.lower(),))
        if row is None:
            return None
        user = await self.get(row.user_id)
        return user if user is not None and user.username == username.lower() else None

    async def search(self, prefix: str, limit: int, after: str = "") -> list[User]:
        text = prefix.lower()
        if limit <= 0:
            return []
        if not text and not after:
            return await self.list_all(limit)
        top = _upper(text)
        if len(text) >= 2:
            partitions = [text[:2]]
        else:
            start = max(text, after[:2])
            rows = await self._cql.all_rows("users.directory_range", (start, top))
            partitions = [r.prefix for r in rows]
        ids: list[str] = []
        for partition in partitions:
            if after >= text:  # the cursor is the tighter lower bound (exclusive)
                rows = await self._cql.rows(
                    "users.range_after", (partition, after, top, limit - len(ids))
                )
            else:
                rows = await self._cql.rows("users.range", (partition, text, top, limit - len(ids)))
            ids.extend(r.user_id for r in rows)
            if len(ids) >= limit:
                break
        return await self._many(ids)

    async def list_all(self, limit: int, after_username: str = "") -> list[User]:
        ids: list[str] = []
        if limit <= 0:
            return []
        for row in await self._cql.all_rows("users.directory_from", (after_username[:2],)):
            rows = await self._cql.rows(
                "users.after", (row.prefix, after_username, limit - len(ids))
            )
            ids.extend(r.user_id for r in rows)
            if len(ids) >= limit:
                break
        return await self._many(ids)

    async def update(self, user_id: str, **fields: object) -> User | None:
        unknown = set(fields) - set(_UPDATABLE)
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        if await self.get(user_id) is None:
            return None
        if fields:
            async with self._cql.gate.held():
                batch = self._cql.batch(
                    [(f"users.set_{name}", (value, user_id)) for name, value in fields.items()]
                )
                await self._cql.write(batch)
        return await self.get(user_id)
