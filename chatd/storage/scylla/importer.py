"""Bulk import into a chatd keyspace (``chatd migrate``): rows, not appends.

A migration copies finished state, so it does not go through the stores' write
paths (one LWT per message, one per username...): it writes the rows those paths
would have left behind, derived tables and sequencer state included, as plain
idempotent upserts, batched per partition. What makes that safe:

* **Timestamps.** Every cell is written ``USING TIMESTAMP``: max registers
  (watermarks, ``last_seq``/``last_activity``, cursors) with their value, as
  ``marks.py`` does; everything else with ``IMPORT_TS`` (1 µs after the epoch).
  So any later write by a chatd node, plain or LWT, wins over an imported cell
  whatever the clocks of the importing machine and the cluster say (a plain
  write with the importer's clock could shadow a later Paxos write, e.g. a group
  change's ``epoch``), and writing a row twice (a resumed run) changes nothing.
* **Sequencer state.** Each message bucket gets the ``epoch``/``epoch_seq`` the
  sequencer would have left (the chat version after the bucket's last message,
  and the seq of the system message that set it), the chat partition its
  ``version`` and ``last_seq``, so the next append claims ``last_seq + 1`` in the
  right bucket under the right fence, as after a restart.
* **Idempotency keys** are stored with their seq, as a finished append leaves
  them: a retried ``client_msg_id`` finds the original message.
* **Media records**, written only by LWT on the serving path, are plain writes
  here: nothing serves the keyspace during an import, and ``IMPORT_TS`` loses to
  every later LWT, so ``referenced`` and retention deletes behave as usual.

Not imported: the revocation feed (``revocations``, ``feed_head``): revoked
devices are copied revoked, and nodes read the feed from its end on start, so
past entries would never be read. The system messages' ``change`` payload is
not needed either: the chat partition is written at the version it produced.

``TABLES`` is the importer's view of the schema; a test checks it against the
live keyspace, so a new table or column fails loudly until it is handled here.
The same layout gives the verification's row images (``images``, ``scan``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from cassandra.query import UNSET_VALUE, BatchStatement, BatchType

from chatd.core.errors import ChatdError
from chatd.core.ids import now_ms
from chatd.core.models import Chat, Contact, Device, DeviceKeys, Media, Member, Message, User
from chatd.storage.scylla import ScyllaStorage
from chatd.storage.scylla.bridge import Cql, gather_limited, unavailable
from chatd.storage.scylla.common import bucket_of
from chatd.storage.scylla.groups import period_of
from chatd.storage.scylla.media import hour_of, shas_of
from chatd.storage.scylla.users import prefix_of

#: The write time of every imported cell that is not a max register.
IMPORT_TS = 1
#: A single-partition batch is one mutation (exempt from the batch size limits);
#: past this many bytes it is split anyway, to keep one request small.
MAX_BATCH_BYTES = 256 * 1024
#: Lone rows of different partitions go in batches of at most this many rows and
#: bytes: Cassandra's defaults for warning about a batch across partitions
#: (``unlogged_batch_across_partitions_warn_threshold``, ``batch_size_warn_threshold``).
SPREAD_ROWS = 10
SPREAD_BYTES = 5 * 1024
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

#: Tables of the schema the importer leaves empty, and why (see the module docstring).
NOT_IMPORTED = {
    "schema_migrations": "written by the migrations themselves",
    "revocations": "the revocation feed: past entries are never read again",
    "feed_head": "the revocation feed's end",
    PROGRESS_TABLE: "the import's own checkpoint",
}


def _statements() -> dict[str, str]:
    out: dict[str, str] = {}
    for name, table in TABLES.items():
        for static in (False, True) if table.statics else (False,):
            cols = table.columns(static)
            marks = ", ".join("?" * len(cols))
            out[_name(name, static)] = (
                f"INSERT INTO {name} ({', '.join(cols)}) VALUES ({marks}) USING TIMESTAMP ?"
            )
        if table.scan:
            select = table.key + table.statics + table.regular
            out[f"import.scan.{name}"] = f"SELECT {', '.join(select)} FROM {name}"
    return out


def _name(table: str, static: bool) -> str:
    return f"import.{table}.{'static' if static else 'row'}"


CQL: dict[str, str] = {
    **_statements(),
    "import.epoch": "SELECT epoch, epoch_seq FROM messages WHERE chat_id = ? AND bucket = ? "
    "LIMIT 1",
    "import.progress": f"SELECT step, position, done, info FROM {PROGRESS_TABLE} "
    "WHERE source = 'sqlite'",
    "import.save": f"INSERT INTO {PROGRESS_TABLE} (source, step, position, done, info, "
    "updated_at) VALUES ('sqlite', ?, ?, ?, ?, ?)",
}

#: Tables whose first row tells whether chatd already wrote to a keyspace.
_USED_BY_CHATD = ("users", "chat_members", "messages", "devices")


class Put(NamedTuple):
    """One row (or, ``static``, one partition's static cells) to write.

    ``values`` follow ``Table.columns(static)``; None is a cell left unwritten.
    """

    table: str
    static: bool
    values: tuple[Any, ...]
    ts: int = IMPORT_TS


def _put(table: str, ts: int = IMPORT_TS, *, static: bool = False, **values: Any) -> Put:
    cols = TABLES[table].columns(static)
    unknown = set(values) - set(cols)
    assert not unknown, f"{table}: no column {unknown}"
    return Put(table, static, tuple(values.get(c) for c in cols), ts)


# -- what each record becomes -------------------------------------------------------


def user_puts(u: User) -> list[Put]:
    name = u.username.lower()
    return [
        _put(
            "users",
            user_id=u.user_id,
            username=name,
            display_name=u.display_name,
            password_hash=u.password_hash,
            created_at=u.created_at,
            status_message=u.status_message,
            avatar_media_id=u.avatar_media_id,
            is_admin=u.is_admin,
            banned=u.banned,
            last_seen=u.last_seen,
            group_add=u.group_add,
        ),
        _put("usernames", username=name, user_id=u.user_id),
        _put("users_by_prefix", prefix=prefix_of(name), username=name, user_id=u.user_id),
        _put("user_prefixes", shard=0, prefix=prefix_of(name)),
    ]


def device_puts(d: Device, token_hash: str) -> list[Put]:
    common = {
        "name": d.name,
        "created_at": d.created_at,
        "expires_at": d.expires_at,
        "revoked_at": d.revoked_at,
    }
    return [
        _put("devices", device_id=d.device_id, user_id=d.user_id, token_hash=token_hash, **common),
        _put(
            "device_tokens",
            token_hash=token_hash,
            device_id=d.device_id,
            user_id=d.user_id,
            **common,
        ),
        _put("user_devices", user_id=d.user_id, device_id=d.device_id, **common),
    ]


def contact_puts(c: Contact) -> list[Put]:
    return [
        _put(
            "contacts",
            user_id=c.user_id,
            contact_id=c.contact_id,
            name=c.name,
            created_at=c.created_at,
        ),
        _put("contact_watchers", contact_id=c.contact_id, user_id=c.user_id),
    ]


def invite_puts(code: str, uses_left: int, expires_at: int | None) -> list[Put]:
    return [_put("invites", code=code, uses_left=uses_left, expires_at=expires_at)]


def chat_puts(chat: Chat, members: Sequence[Member], direct_key: str | None) -> list[Put]:
    """The chat partition (statics, members, watermarks), the members' inbox rows, and
    the direct pair or the group index."""
    cid = chat.chat_id
    puts = [
        _put(
            "chat_members",
            static=True,
            chat_id=cid,
            kind=chat.kind,
            created_at=chat.created_at,
            title=chat.title,
            description=chat.description,
            avatar_media_id=chat.avatar_media_id,
            created_by=chat.created_by,
            version=chat.version,
        ),
        # max register: written as marks.last does
        _put(
            "chat_members",
            chat.last_seq,
            static=True,
            chat_id=cid,
            last_seq=chat.last_seq,
            last_activity=chat.last_activity,
        ),
    ]
    pair: list[str] = []
    if chat.kind == "direct":
        if direct_key is None:
            raise ValueError(f"direct chat {cid} has no direct_key")
        pair = direct_key.split(":")
        puts.append(
            _put(
                "direct_pairs",
                pair=direct_key,
                chat_id=cid,
                created_at=chat.created_at,
                created_by=chat.created_by,
                user_a=pair[0],
                user_b=pair[-1],
            )
        )
    else:
        period = period_of(cid)
        puts.append(_put("group_index", period=period, chat_id=cid))
        puts.append(_put("group_periods", shard=0, period=period))
    for m in members:
        puts.append(
            _put(
                "chat_members",
                chat_id=cid,
                user_id=m.user_id,
                role=m.role,
                joined_at=m.joined_at,
                joined_seq=m.joined_seq,
                left_seq=m.left_seq,
            )
        )
        # max registers (marks.delivered / marks.read); 0 is what an absent cell reads as
        if m.delivered_seq:
            delivered = {"delivered_seq": m.delivered_seq}
            puts.append(
                _put("chat_members", m.delivered_seq, chat_id=cid, user_id=m.user_id, **delivered)
            )
        if m.read_seq:
            read = {"read_seq": m.read_seq}
            puts.append(_put("chat_members", m.read_seq, chat_id=cid, user_id=m.user_id, **read))
        if chat.kind == "direct":
            peer = pair[0] if m.user_id == pair[-1] else pair[-1]
            puts.append(
                _put(
                    "user_chats",
                    user_id=m.user_id,
                    chat_id=cid,
                    kind="direct",
                    peer_id=peer if peer != m.user_id else None,
                )
            )
        else:
            puts.append(_put("user_chats", user_id=m.user_id, chat_id=cid, kind="group"))
    return puts


def message_puts(m: Message) -> list[Put]:
    """The message row, its id index, its idempotency key (with its seq, as a finished
    append leaves it; system messages have none, as on the serving path) and its
    media reference."""
    puts = [
        _put(
            "messages",
            chat_id=m.chat_id,
            bucket=bucket_of(m.seq),
            seq=m.seq,
            message_id=m.message_id,
            sender_id=m.sender_id,
            sender_device_id=m.sender_device_id,
            type=m.type,
            content=m.content,
            client_msg_id=m.client_msg_id,
            created_at=m.created_at,
            media_id=m.media_id,
            reply_to=m.reply_to,
        ),
        _put("message_ids", message_id=m.message_id, chat_id=m.chat_id, seq=m.seq),
    ]
    if m.type != "system":
        puts.append(
            _put(
                "msg_keys",
                sender_id=m.sender_id,
                client_msg_id=m.client_msg_id,
                owner="import",
                chat_id=m.chat_id,
                claimed_at=m.created_at,
                seq=m.seq,
                message_id=m.message_id,
            )
        )
    if m.media_id is not None:
        puts.append(
            _put(
                "media_refs",
                media_id=m.media_id,
                message_id=m.message_id,
                chat_id=m.chat_id,
                seq=m.seq,
            )
        )
    return puts


def epoch_puts(chat_id: str, bucket: int, epoch: int, epoch_seq: int) -> list[Put]:
    """The bucket's membership fence (see sequencer.py)."""
    return [
        _put(
            "messages",
            static=True,
            chat_id=chat_id,
            bucket=bucket,
            epoch=epoch,
            epoch_seq=epoch_seq,
        )
    ]


def cursor_puts(device_id: str, chat_id: str, delivered_seq: int) -> list[Put]:
    return [
        _put(
            "device_cursors",
            delivered_seq,
            device_id=device_id,
            chat_id=chat_id,
            delivered_seq=delivered_seq,
        )
    ]


def media_puts(m: Media, referenced: bool) -> list[Put]:
    puts = [
        _put(
            "media",
            media_id=m.media_id,
            uploader_id=m.uploader_id,
            sha256=m.sha256,
            mime_type=m.mime_type,
            size=m.size,
            created_at=m.created_at,
            filename=m.filename,
            width=m.width,
            height=m.height,
            duration_ms=m.duration_ms,
            thumbnail_sha256=m.thumbnail_sha256,
            thumbnail_mime=m.thumbnail_mime,
            thumbnail_size=m.thumbnail_size,
            referenced=referenced,
        )
    ]
    for sha in shas_of(m.sha256, m.thumbnail_sha256):
        puts.append(_put("media_by_sha", sha256=sha, media_id=m.media_id))
    if not referenced:  # a retention candidate, as media.create lists it
        hour = hour_of(m.created_at)
        puts.append(
            _put(
                "media_unreferenced",
                hour=hour,
                created_at=m.created_at,
                media_id=m.media_id,
                sha256=m.sha256,
                thumbnail_sha256=m.thumbnail_sha256,
            )
        )
        puts.append(_put("media_unreferenced_hours", shard=0, hour=hour))
    return puts


def device_key_puts(k: DeviceKeys) -> list[Put]:
    device_id, user_id, identity, key_id, public, signature, updated = k.flat()
    return [
        _put(
            "device_keys",
            device_id=device_id,
            user_id=user_id,
            identity_key=identity,
            signed_key_id=key_id,
            signed_public_key=public,
            signed_signature=signature,
            updated_at=updated,
        )
    ]


def prekey_puts(device_id: str, key_id: int, public_key: str) -> list[Put]:
    return [_put("one_time_prekeys", device_id=device_id, key_id=key_id, public_key=public_key)]


# -- row images, for verification -----------------------------------------------------


class Image(NamedTuple):
    """A row as it reads back: key values and its non-null cells, in table order."""

    table: str
    static: bool
    key: tuple[Any, ...]
    cells: tuple[tuple[str, Any], ...]

    @property
    def group(self) -> str:
        """The chat the row belongs to ("" when the table has no chat column)."""
        table = TABLES[self.table]
        if table.group is None:
            return ""
        cols = table.partition if self.static else table.key
        if table.group in cols:
            return str(self.key[cols.index(table.group)])
        return str(dict(self.cells).get(table.group, ""))


def images(puts: Iterable[Put]) -> list[Image]:
    """What ``puts`` leave in the tables, one image per row (cells of a row merged)."""
    rows: dict[tuple[str, bool, tuple[Any, ...]], dict[str, Any]] = {}
    for p in puts:
        table = TABLES[p.table]
        cols = table.columns(p.static)
        width = len(table.partition) if p.static else len(table.key)
        cells = rows.setdefault((p.table, p.static, p.values[:width]), {})
        for col, value in zip(cols[width:], p.values[width:], strict=True):
            if value is not None:
                cells[col] = value
    out = []
    for (name, static, key), cells in rows.items():
        order = TABLES[name].statics if static else TABLES[name].regular
        out.append(Image(name, static, key, tuple((c, cells[c]) for c in order if c in cells)))
    return out


def _plain(value: Any) -> Any:
    """A read value as the importer wrote it (sets come back as sorted sets)."""
    if isinstance(value, (set, frozenset)) or type(value).__name__ == "SortedSet":
        return sorted(value)
    return value


# -- the importer ----------------------------------------------------------------------


class Importer:
    """Writes ``Put``s into an opened ``ScyllaStorage``'s keyspace, keeps the import's
    checkpoint there, and reads tables back for verification."""

    def __init__(self, storage: ScyllaStorage, *, batch_rows: int = 200) -> None:
        self.storage = storage
        self._cql: Cql = storage._cql  # the adapter's bridge: same session, same policies
        self._keyspace: str = storage._keyspace
        self._batch_rows = max(1, batch_rows)

    async def open(self) -> None:
        """Create the checkpoint table (not part of chatd's schema) and prepare statements."""
        await self._run(
            f"CREATE TABLE IF NOT EXISTS {PROGRESS_TABLE} (source text, step text, "
            "position text, done boolean, info text, updated_at bigint, "
            "PRIMARY KEY (source, step))"
        )
        await asyncio.to_thread(self._cql.prepare_all, CQL)

    async def _run(self, text: str, params: Sequence[Any] | None = None) -> Any:
        try:
            return await self._cql.run(text, params)
        except ChatdError:
            raise
        except Exception as exc:
            raise unavailable(exc) from exc

    async def used_by_chatd(self) -> bool:
        """Whether the keyspace already holds chatd data (a first import needs it empty)."""
        for table in _USED_BY_CHATD:
            rs = await self._run(f"SELECT * FROM {table} LIMIT 1")
            if rs.current_rows:
                return True
        return False

    # -- writes --------------------------------------------------------------------

    async def write(self, puts: Sequence[Put]) -> None:
        """Write ``puts`` in as few requests as the cluster takes without complaint.

        Rows of one partition: unlogged batches (split past ``batch_rows`` rows or
        ``MAX_BATCH_BYTES``), one mutation each. Lone rows (the id index, the
        idempotency keys...): small unlogged batches of rows whose partitions have
        the same first replica (token-aware routing sends a batch to a replica of
        its first row, so the coordinator holds the others too, or most of them),
        within Cassandra's default warning thresholds for batches across partitions
        (``SPREAD_ROWS`` partitions, ``SPREAD_BYTES``). One request per lone row
        made the importer's own CPU the bottleneck (about 1,000 messages/s against
        5,000). Idempotent: writing the same puts again leaves the same cells.
        """
        partitions: dict[tuple[str, tuple[Any, ...]], list[Put]] = {}
        for p in dict.fromkeys(puts):  # drop exact repeats (a shared directory row)
            width = len(TABLES[p.table].partition)
            partitions.setdefault((p.table, p.values[:width]), []).append(p)
        requests: list[tuple[Any, Sequence[Any]]] = []
        spread: dict[Any, tuple[BatchStatement, int]] = {}
        for group in partitions.values():
            if len(group) == 1:
                p = group[0]
                bound = self._cql.q[_name(p.table, p.static)].bind(_bind(p))
                owner = self._replica(bound.routing_key)
                batch, size = spread.get(owner) or (_batch(), 0)
                weight = _weight(p)
                if len(batch) and (len(batch) >= SPREAD_ROWS or size + weight > SPREAD_BYTES):
                    requests.append((batch, ()))
                    batch, size = _batch(), 0
                batch.add(bound)
                spread[owner] = (batch, size + weight)
                continue
            batch, size = _batch(), 0
            for p in group:
                weight = _weight(p)
                if len(batch) and (
                    len(batch) >= self._batch_rows or size + weight > MAX_BATCH_BYTES
                ):
                    requests.append((batch, ()))
                    batch, size = _batch(), 0
                batch.add(self._cql.q[_name(p.table, p.static)], _bind(p))
                size += weight
            requests.append((batch, ()))
        requests += [(batch, ()) for batch, _ in spread.values()]
        await self._cql.writes(requests)

    def _replica(self, routing_key: bytes | None) -> Any:
        """The first replica of a partition (None when the driver has no token map)."""
        token_map = self._cql.session.cluster.metadata.token_map
        if token_map is None or routing_key is None:
            return None
        replicas = token_map.get_replicas(
            self._keyspace, token_map.token_class.from_key(routing_key)
        )
        return replicas[0] if replicas else None

    # -- checkpoint ------------------------------------------------------------------

    async def progress(self) -> dict[str, tuple[Any, bool, Any]]:
        """Each step's (position, done, info), as saved."""
        rows = await self._cql.all_rows("import.progress", ())
        return {
            r.step: (
                json.loads(r.position) if r.position else None,
                bool(r.done),
                json.loads(r.info) if r.info else None,
            )
            for r in rows
        }

    async def save(self, step: str, position: Any, done: bool = False, info: Any = None) -> None:
        """Record a step's progress: called only once what it covers is written."""
        await self._cql.write(
            "import.save",
            (
                step,
                json.dumps(position) if position is not None else UNSET_VALUE,
                done,
                json.dumps(info) if info is not None else UNSET_VALUE,
                now_ms(),
            ),
        )

    # -- reads, for verification ---------------------------------------------------------

    async def scan(self, table: str, page_size: int = 2000) -> AsyncIterator[list[Image]]:
        """Every row of ``table`` (a full scan, page by page) as images.

        For a table with static columns, each partition's statics are one image
        (``static=True``) and each of its rows another.
        """
        spec = TABLES[table]
        width, cut = len(spec.key), len(spec.key) + len(spec.statics)
        state: bytes | None = None
        last_partition: tuple[Any, ...] | None = None
        while True:
            rs = await self._cql.execute(
                f"import.scan.{table}", (), fetch_size=page_size, paging_state=state
            )
            page: list[Image] = []
            for row in rs.current_rows:
                values = tuple(_plain(v) for v in row)
                if spec.statics:
                    partition = values[: len(spec.partition)]
                    if partition != last_partition:
                        last_partition = partition
                        statics = tuple(
                            (c, v)
                            for c, v in zip(spec.statics, values[width:cut], strict=True)
                            if v is not None
                        )
                        if statics:
                            page.append(Image(table, True, partition, statics))
                    if values[len(spec.partition)] is None:
                        continue  # a partition with statics only
                cells = tuple(
                    (c, v) for c, v in zip(spec.regular, values[cut:], strict=True) if v is not None
                )
                page.append(Image(table, False, values[:width], cells))
            yield page
            state = rs.paging_state
            if not state:
                return

    async def epochs(self, chat_id: str, buckets: Sequence[int]) -> list[tuple[int, int] | None]:
        """The (epoch, epoch_seq) statics of a chat's message buckets (None: unset)."""
        rows = await gather_limited(
            [self._cql.one("import.epoch", (chat_id, b)) for b in buckets], 32
        )
        return [
            (int(r.epoch), int(r.epoch_seq or 0)) if r is not None and r.epoch is not None else None
            for r in rows
        ]


def _weight(p: Put) -> int:
    """A row's size, roughly: its text plus a fixed cost per row."""
    return 64 + sum(len(v) for v in p.values if isinstance(v, str))


def _batch() -> BatchStatement:
    return BatchStatement(batch_type=BatchType.UNLOGGED)


def _bind(p: Put) -> tuple[Any, ...]:
    return (*(UNSET_VALUE if v is None else v for v in p.values), p.ts)
