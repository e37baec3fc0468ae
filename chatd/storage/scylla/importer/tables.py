"""The importer's view of the ScyllaDB schema, and the row (``Put``) it writes.

A test checks ``TABLES`` against the live keyspace: a table or column added to
the schema fails it until the importer handles it (or lists it as not imported).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

#: The write time of every imported cell that is not a max register.
IMPORT_TS = 1
#: The import's own checkpoint (not part of chatd's schema).
PROGRESS_TABLE = "import_progress"


@dataclass(frozen=True)
class Table:
    """The columns of one table, as the importer writes and verifies them."""

    partition: tuple[str, ...]
    clustering: tuple[str, ...] = ()
    statics: tuple[str, ...] = ()
    regular: tuple[str, ...] = ()
    #: The column naming the chat a row belongs to (mismatches are reported per chat).
    group: str | None = None
    #: Rows that several records write alike (a directory): compared as a set.
    shared: bool = False
    #: Compared by a full scan; ``messages`` is checked per chat through the store.
    scan: bool = True
    key: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", self.partition + self.clustering)

    def columns(self, static: bool) -> tuple[str, ...]:
        return self.partition + self.statics if static else self.key + self.regular


TABLES: dict[str, Table] = {
    "users": Table(
        ("user_id",),
        regular=(
            "username",
            "display_name",
            "password_hash",
            "created_at",
            "status_message",
            "avatar_media_id",
            "is_admin",
            "banned",
            "last_seen",
            "group_add",
        ),
    ),
    "usernames": Table(("username",), regular=("user_id",)),
    "users_by_prefix": Table(("prefix",), ("username",), regular=("user_id",)),
    "user_prefixes": Table(("shard",), ("prefix",), shared=True),
    "devices": Table(
        ("device_id",),
        regular=(
            "user_id",
            "token_hash",
            "name",
            "created_at",
            "expires_at",
            "revoked_at",
            "revoke_op",
        ),
    ),
    "device_tokens": Table(
        ("token_hash",),
        regular=("device_id", "user_id", "name", "created_at", "expires_at", "revoked_at"),
    ),
    "user_devices": Table(
        ("user_id",), ("device_id",), regular=("name", "created_at", "expires_at", "revoked_at")
    ),
    "contacts": Table(("user_id",), ("contact_id",), regular=("name", "created_at")),
    "contact_watchers": Table(("contact_id",), ("user_id",)),
    "invites": Table(("code",), regular=("uses_left", "expires_at", "ops")),
    "chat_members": Table(
        ("chat_id",),
        ("user_id",),
        statics=(
            "kind",
            "created_at",
            "title",
            "description",
            "avatar_media_id",
            "created_by",
            "version",
            "last_seq",
            "last_activity",
        ),
        regular=("role", "joined_at", "joined_seq", "delivered_seq", "read_seq", "left_seq"),
        group="chat_id",
    ),
    "user_chats": Table(("user_id",), ("chat_id",), regular=("kind", "peer_id"), group="chat_id"),
    "direct_pairs": Table(
        ("pair",),
        regular=("chat_id", "created_at", "created_by", "user_a", "user_b"),
        group="chat_id",
    ),
    "group_index": Table(("period",), ("chat_id",), group="chat_id"),
    "group_periods": Table(("shard",), ("period",), shared=True),
    "messages": Table(
        ("chat_id", "bucket"),
        ("seq",),
        statics=("epoch", "epoch_seq"),
        regular=(
            "message_id",
            "sender_id",
            "sender_device_id",
            "type",
            "content",
            "client_msg_id",
            "created_at",
            "media_id",
            "reply_to",
            "change",
            "encrypted",
        ),
        group="chat_id",
        scan=False,
    ),
    "message_ids": Table(("message_id",), regular=("chat_id", "seq"), group="chat_id"),
    "msg_keys": Table(
        ("sender_id", "client_msg_id"),
        regular=("owner", "chat_id", "claimed_at", "seq", "message_id"),
        group="chat_id",
    ),
    "device_cursors": Table(
        ("device_id",), ("chat_id",), regular=("delivered_seq",), group="chat_id"
    ),
    "media": Table(
        ("media_id",),
        regular=(
            "uploader_id",
            "sha256",
            "mime_type",
            "size",
            "created_at",
            "filename",
            "width",
            "height",
            "duration_ms",
            "thumbnail_sha256",
            "thumbnail_mime",
            "thumbnail_size",
            "referenced",
        ),
    ),
    "media_refs": Table(
        ("media_id",), ("message_id",), regular=("chat_id", "seq"), group="chat_id"
    ),
    "media_by_sha": Table(("sha256",), ("media_id",)),
    "media_unreferenced": Table(
        ("hour",), ("created_at", "media_id"), regular=("sha256", "thumbnail_sha256")
    ),
    "media_unreferenced_hours": Table(("shard",), ("hour",), shared=True),
    "device_keys": Table(
        ("device_id",),
        regular=(
            "user_id",
            "identity_key",
            "signed_key_id",
            "signed_public_key",
            "signed_signature",
            "updated_at",
        ),
    ),
    "one_time_prekeys": Table(
        ("device_id",), ("key_id",), statics=("last_upload",), regular=("public_key",)
    ),
}

#: Tables of the schema the importer leaves empty, and why (see the package docstring).
NOT_IMPORTED = {
    "schema_migrations": "written by the migrations themselves",
    "revocations": "the revocation feed: past entries are never read again",
    "feed_head": "the revocation feed's end",
    PROGRESS_TABLE: "the import's own checkpoint",
    "audit": "the admin audit log starts afresh on the new backend (not copied yet)",
    "audit_days": "the audit log's day index",
    "e2e_devices": "derived from device_keys once the copy is done (ScyllaKeys.fill_sets)",
    "ciphertexts": "transient: waiting ciphertexts are not copied (docs/operations.md)",
    "ciphertext_hours": "the ciphertexts' retention index",
    "ciphertext_hour_list": "the ciphertexts' retention index",
    "push_targets": "push targets are registered again by the apps (docs/operations.md)",
    "push_user_targets": "push targets by user, as push_targets",
    "push_outbox": "transient: waiting push notifications are not copied",
    "push_due": "the push outbox's index",
    "push_dead": "dead push notifications are not copied",
}


class Put(NamedTuple):
    """One row (or, ``static``, one partition's static cells) to write.

    ``values`` follow ``Table.columns(static)``; None is a cell left unwritten.
    """

    table: str
    static: bool
    values: tuple[Any, ...]
    ts: int = IMPORT_TS


def put(table: str, ts: int = IMPORT_TS, *, static: bool = False, **values: Any) -> Put:
    cols = TABLES[table].columns(static)
    unknown = set(values) - set(cols)
    assert not unknown, f"{table}: no column {unknown}"
    return Put(table, static, tuple(values.get(c) for c in cols), ts)
