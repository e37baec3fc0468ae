"""Versioned schema migrations, safe when several nodes start at once.

``schema.cql`` documents the resulting schema; the statements here are what runs.
A migration is a list of idempotent DDL statements (``IF NOT EXISTS``; an added
column is an ``AddColumn``, skipped when the table already has it) and is
recorded in ``schema_migrations`` with an LWT once applied.

Concurrent DDL on different coordinators is what Cassandra 5.0 and ScyllaDB
without Raft schema handle worst (two table ids for one name), so starters
serialize: every node sends DDL to the same coordinator (the lowest address
that is up), takes a lock row with ``INSERT ... IF NOT EXISTS USING TTL``, and
waits for schema agreement after each statement. A starter that finds the
versions already recorded runs no DDL at all.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from chatd.core.ids import new_id, now_ms
from chatd.storage.scylla.bridge import Cql, unavailable

log = logging.getLogger("chatd.storage.scylla")

LOCK_VERSION = 0
LOCK_TTL_S = 120
IDENTIFIER = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,47}$")

_BOOTSTRAP = (
    "CREATE TABLE IF NOT EXISTS {ks}.schema_migrations "
    "(version int PRIMARY KEY, name text, applied_at bigint, applied_by text)"
)


def _table(name: str, columns: str, key: str) -> str:
    return f"CREATE TABLE IF NOT EXISTS {{ks}}.{name} ({columns}, PRIMARY KEY ({key}))"


@dataclass(frozen=True)
class AddColumn:
    """``ALTER TABLE ... ADD``, made idempotent by looking at the schema first:
    ScyllaDB has no ``ADD IF NOT EXISTS``, and a migration cut short by a crash
    runs again from its first statement."""

    table: str
    column: str
    type: str


MIGRATIONS: list[tuple[int, str, list[str | AddColumn]]] = [
    (
        1,
        "init",
        [
            _table(
                "users",
                "user_id text, username text, display_name text, password_hash text, "
                "created_at bigint, status_message text, avatar_media_id text, "
                "is_admin boolean, banned boolean, last_seen bigint",
                "user_id",
            ),
            _table("usernames", "username text, user_id text", "username"),
            _table(
                "users_by_prefix", "prefix text, username text, user_id text", "prefix, username"
            ),
            _table("user_prefixes", "shard int, prefix text", "shard, prefix"),
            _table(
                "devices",
                "device_id text, user_id text, token_hash text, name text, created_at bigint, "
                "expires_at bigint, revoked_at bigint, revoke_op text",
                "device_id",
            ),
            _table(
                "device_tokens",
                "token_hash text, device_id text, user_id text, name text, created_at bigint, "
                "expires_at bigint, revoked_at bigint",
                "token_hash",
            ),
            _table(
                "user_devices",
                "user_id text, device_id text, name text, created_at bigint, "
                "expires_at bigint, revoked_at bigint",
                "user_id, device_id",
            ),
            _table("revocations", "bucket int, id bigint, device_id text, at bigint", "bucket, id"),
            _table("feed_head", "name text, last_id bigint", "name"),
            _table(
                "contacts",
                "user_id text, contact_id text, name text, created_at bigint",
                "user_id, contact_id",
            ),
            _table("contact_watchers", "contact_id text, user_id text", "contact_id, user_id"),
            _table(
                "invites",
                "code text, uses_left int, expires_at bigint, ops set<text>",
                "code",
            ),
            _table(
                "chat_members",
                "chat_id text, user_id text, kind text static, created_at bigint static, "
                "title text static, description text static, avatar_media_id text static, "
                "created_by text static, version int static, last_seq bigint static, "
                "last_activity bigint static, role text, joined_at bigint, joined_seq bigint, "
                "delivered_seq bigint, read_seq bigint, left_seq bigint",
                "chat_id, user_id",
            ),
            _table(
                "user_chats",
                "user_id text, chat_id text, kind text, peer_id text",
                "user_id, chat_id",
            ),
            _table(
                "direct_pairs",
                "pair text, chat_id text, created_at bigint, created_by text, "
                "user_a text, user_b text",
                "pair",
            ),
            _table("group_index", "period int, chat_id text", "period, chat_id"),
            _table("group_periods", "shard int, period int", "shard, period"),
            _table(
                "messages",
                "chat_id text, bucket int, seq bigint, message_id text, sender_id text, "
                "sender_device_id text, type text, content text, client_msg_id text, "
                "created_at bigint, media_id text, reply_to text, change text, "
                "epoch int static, epoch_seq bigint static",
                "(chat_id, bucket), seq",
            ),
            _table("message_ids", "message_id text, chat_id text, seq bigint", "message_id"),
            _table(
                "msg_keys",
                "sender_id text, client_msg_id text, owner text, chat_id text, "
                "claimed_at bigint, seq bigint, message_id text",
                "(sender_id, client_msg_id)",
            ),
            _table(
                "device_cursors",
                "device_id text, chat_id text, delivered_seq bigint",
                "device_id, chat_id",
            ),
        ],
    ),
    (
        2,
        "media",
        [
            _table(
                "media",
                "media_id text, uploader_id text, sha256 text, mime_type text, size bigint, "
                "created_at bigint, filename text, width int, height int, duration_ms bigint, "
                "thumbnail_sha256 text, thumbnail_mime text, thumbnail_size bigint, "
                "referenced boolean",
                "media_id",
            ),
            _table(
                "media_refs",
                "media_id text, message_id text, chat_id text, seq bigint",
                "media_id, message_id",
            ),
            _table("media_by_sha", "sha256 text, media_id text", "sha256, media_id"),
            _table(
                "media_unreferenced",
                "hour int, created_at bigint, media_id text, sha256 text, thumbnail_sha256 text",
                "hour, created_at, media_id",
            ),
            _table("media_unreferenced_hours", "shard int, hour int", "shard, hour"),
        ],
    ),
    (
        3,
        "keys",
        [
            _table(
                "device_keys",
                "device_id text, user_id text, identity_key text, signed_key_id int, "
                "signed_public_key text, signed_signature text, updated_at bigint",
                "device_id",
            ),
            _table(
                "one_time_prekeys",
                "device_id text, key_id int, public_key text",
                "device_id, key_id",
            ),
        ],
    ),
    (
        4,
        "prekey_uploads",
        # The id of the last upload applied to a device's prekeys: uploads are
        # conditional batches on it, so two cannot together pass the cap.
        [AddColumn("one_time_prekeys", "last_upload", "uuid static")],
    ),
    (5, "group_add", [AddColumn("users", "group_add", "text")]),
    (
        6,
        "push",
        [
            _table(
                "push_targets",
                "user_id text, device_id text, provider text, push_token text, endpoint text, "
                "p256dh text, auth text, registered_at bigint",
                "device_id",
            ),
            _table(
                "push_user_targets",
                "user_id text, device_id text, provider text, push_token text, endpoint text, "
                "p256dh text, auth text, registered_at bigint",
                "user_id, device_id",
            ),
            _table(
                "push_outbox",
                "device_id text, chat_id text, user_id text, delivery_id text, seq bigint, "
                "payload text, due_at bigint, attempts int, last_error text, "
                "claim_until bigint, claimed_by text",
                "device_id, chat_id",
            ),
            _table("push_due", "shard int, device_id text, touched bigint", "shard, device_id"),
            _table(
                "push_dead",
                "shard int, delivery_id text, device_id text, chat_id text, user_id text, "
                "seq bigint, payload text, attempts int, last_error text, dead_at bigint",
                "shard, delivery_id",
            ),
        ],
    ),
    (
        8,
        "audit",
        # Administrative changes, one partition per UTC day, newest first; the
        # days that have entries, newest first, in one small partition.
        [
            "CREATE TABLE IF NOT EXISTS {ks}.audit (day int, time bigint, entry_id text, "
            "actor_id text, action text, target_id text, detail text, "
            "PRIMARY KEY (day, time, entry_id)) "
            "WITH CLUSTERING ORDER BY (time DESC, entry_id DESC)",
            "CREATE TABLE IF NOT EXISTS {ks}.audit_days (shard int, day int, "
            "PRIMARY KEY (shard, day)) WITH CLUSTERING ORDER BY (day DESC)",
        ],
    ),
]


def replication_cql(replication: dict[str, Any] | str) -> str:
    """``{'class': ..., ...}`` from a dict (values quoted) or a CQL map literal as given."""
    if isinstance(replication, str):
        text = replication.strip()
        if not (text.startswith("{") and text.endswith("}")):
            raise ValueError(f"replication must be a CQL map literal, got {replication!r}")
        return text
    items = ", ".join(f"'{k}': '{v}'" for k, v in replication.items())
    return "{" + items + "}"


class Migrator:
    def __init__(self, cql: Cql, cluster: Any, keyspace: str, replication: str) -> None:
        if not IDENTIFIER.match(keyspace):
            raise ValueError(f"not a valid keyspace name: {keyspace!r}")
        self._cql = cql
        self._cluster = cluster
        self._ks = keyspace
        self._replication = replication
        self._me = new_id()

    def _ddl_host(self) -> Any:
        hosts = [h for h in self._cluster.metadata.all_hosts() if h.is_up is not False]
        return min(hosts, key=lambda h: str(h.endpoint.address)) if hosts else None

    async def _ddl(self, text: str) -> None:
        started = time.perf_counter()
        try:
            await self._cql.run(text.replace("{ks}", self._ks), op="ddl", host=self._ddl_host())
            agreed = await asyncio.to_thread(self._cql.session.wait_for_schema_agreement)
        except Exception as exc:
            raise unavailable(exc) from exc
        if not agreed:
            log.warning("no schema agreement after %r", text[:60])
        log.debug("ddl in %.2fs: %s", time.perf_counter() - started, text[:60])

    async def _add_column(self, add: AddColumn) -> None:
        keyspace = self._cluster.metadata.keyspaces.get(self._ks)
        table = keyspace.tables.get(add.table) if keyspace is not None else None
        if table is not None and add.column in table.columns:
            return
        await self._ddl(f"ALTER TABLE {{ks}}.{add.table} ADD {add.column} {add.type}")

    async def _applied(self) -> set[int]:
        rs = await self._cql.run(
            f"SELECT version FROM {self._ks}.schema_migrations", serial=False, op="read"
        )
        return {r.version for r in rs.current_rows if r.version != LOCK_VERSION}

    async def run(self) -> None:
        """Create the keyspace if needed and apply pending migrations in order."""
        meta = self._cluster.metadata.keyspaces.get(self._ks)
        if meta is None:
            await self._ddl(
                f"CREATE KEYSPACE IF NOT EXISTS {{ks}} WITH replication = {self._replication}"
            )
            meta = self._cluster.metadata.keyspaces.get(self._ks)
        if meta is None or "schema_migrations" not in meta.tables:
            await self._ddl(_BOOTSTRAP)
        wanted = {version for version, _, _ in MIGRATIONS}
        if wanted <= await self._applied():
            return
        await self._lock()
        try:
            done = await self._applied()
            for version, name, statements in sorted(MIGRATIONS):
                if version in done:
                    continue
                log.info("applying scylla migration %04d_%s", version, name)
                for statement in statements:
                    if isinstance(statement, AddColumn):
                        await self._add_column(statement)
                    else:
                        await self._ddl(statement)
                await self._cql.run(
                    f"INSERT INTO {self._ks}.schema_migrations "
                    "(version, name, applied_at, applied_by) VALUES (%s, %s, %s, %s) IF NOT EXISTS",
                    (version, name, now_ms(), self._me),
                    op="lwt",
                )
        finally:
            await self._unlock()

    async def _lock(self) -> None:
        deadline = time.monotonic() + LOCK_TTL_S
        while True:
            rs = await self._cql.run(
                f"INSERT INTO {self._ks}.schema_migrations (version, name, applied_by) "
                f"VALUES ({LOCK_VERSION}, 'lock', %s) IF NOT EXISTS USING TTL {LOCK_TTL_S}",
                (self._me,),
                op="lwt",
            )
            row = rs.current_rows[0]
            if row[0] or row.applied_by == self._me:
                return
            if time.monotonic() > deadline:
                raise unavailable(RuntimeError("schema migration lock is held elsewhere"))
            await asyncio.sleep(0.5)

    async def _unlock(self) -> None:
        try:
            await self._cql.run(
                f"DELETE FROM {self._ks}.schema_migrations WHERE version = {LOCK_VERSION} "
                "IF applied_by = %s",
                (self._me,),
                op="lwt",
            )
        except Exception as exc:  # the TTL frees it anyway
            log.warning("could not release the migration lock: %s", exc)
