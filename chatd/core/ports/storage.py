"""Storage ports, split by entity.

Written in partitions, keys and watermarks, never joins, so a wide-column store
(ScyllaDB) implements them as directly as SQLite does. Unless a method says so,
a write is durable when its awaitable returns: the caller may acknowledge it.

The watermark rules the stores keep (only rising; the sender has read what it
wrote; the sending device's cursor and its gap rule; which chats are pending)
are functions of ``chatd.core.watermarks``: an adapter computes with those and
only stores the results, so every backend applies the same rules.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from chatd.core.models import (
    Appended,
    AuditEntry,
    Chat,
    Ciphertext,
    Contact,
    Device,
    DeviceKeys,
    GroupChange,
    Media,
    MediaRef,
    MediaUsage,
    Member,
    Message,
    MessageDraft,
    PendingChat,
    Prekey,
    Totals,
    User,
    WatermarkMove,
    WatermarkResult,
)
from chatd.core.ports.push import DeadItem, OutboxItem, PushTarget, RegisteredTarget


class UserStore(Protocol):
    async def create(self, user: User) -> None:
        """Store a new user; ``ChatdError('conflict')`` if the username is taken."""

    async def get(self, user_id: str) -> User | None: ...

    async def get_by_name(self, username: str) -> User | None:
        """Usernames are compared case-insensitively (stored lower-case)."""

    async def search(self, prefix: str, limit: int, after: str = "") -> list[User]:
        """Users whose username starts with ``prefix``, in username order; with
        ``after``, only usernames above it (keyset pagination for admins)."""

    async def list_all(self, limit: int, after_username: str = "") -> list[User]: ...

    async def update(self, user_id: str, **fields: object) -> User | None:
        """Set the named profile fields (display_name, status_message, avatar_media_id,
        password_hash, is_admin, banned, last_seen, group_add); returns the new record."""


class DeviceStore(Protocol):
    async def create(self, device: Device, token_hash: str) -> None: ...

    async def by_token(self, token_hash: str) -> Device | None:
        """The device a token belongs to, revoked or not; the caller checks expiry."""

    async def list_for_user(self, user_id: str) -> list[Device]:
        """The user's devices that are not revoked."""

    async def revoke(self, device_id: str) -> bool:
        """Revoke one device at once and record it in the revocation feed.
        True if it was live. Its key bundle and one-time prekeys are deleted with
        it (``KeyStore``), and from then on no encrypted send may cover it; its
        stored ciphertexts go with it or at their expiry."""

    async def revoke_all(self, user_id: str) -> list[str]:
        """Revoke every device of a user, as ``revoke`` does; returns their ids."""

    async def revocations_since(self, cursor: int) -> tuple[list[str], int]:
        """Devices revoked (or whose user was banned) after ``cursor``, and the new
        cursor. Every node polls this feed, so a revocation reaches all of them."""

    async def record_ban(self, user_id: str) -> None:
        """Put every device of a banned user on the revocation feed."""


class ContactStore(Protocol):
    async def put(self, contact: Contact) -> None: ...

    async def delete(self, user_id: str, contact_id: str) -> bool: ...

    async def list_for_user(self, user_id: str) -> list[Contact]: ...

    async def watchers(self, contact_id: str) -> list[str]:
        """Users who have ``contact_id`` in their contacts (they see its presence)."""


class InviteStore(Protocol):
    async def create(self, code: str, uses: int, expires_at: int | None) -> None: ...

    async def consume(self, code: str, now: int) -> bool:
        """Use an invite once, atomically; False if unknown, used up or expired."""


class ChatStore(Protocol):
    async def get_or_create_direct(self, chat: Chat, user_a: str, user_b: str) -> Chat:
        """The one direct chat of two users; ``chat`` is stored only if none exists.
        Atomic: two concurrent calls return the same chat."""

    async def create_group(
        self, chat: Chat, members: Sequence[Member], system: MessageDraft
    ) -> Message:
        """Store a new group, its members and its first (system) message, atomically.

        The system message is the actor's (``system.sender_id``): as with any
        append, the actor's watermarks rise to it."""

    async def change_group(self, change: GroupChange) -> Message:
        """Apply ``change`` and append its system message, atomically.

        Raises ``StaleVersion`` if the chat's version is no longer
        ``change.expected_version`` (someone else changed the group first):
        nothing is written, and the caller re-reads and tries again. Roles of
        ``add`` users start as "member"; ``roles`` apply after adds and removes.
        The actor's watermarks rise to the system message, as with any append.
        """

    async def get(self, chat_id: str) -> Chat | None: ...

    async def members(self, chat_id: str) -> list[Member]:
        """Current members only (``left_seq`` is None), in joining order."""

    async def member(self, chat_id: str, user_id: str) -> Member | None:
        """The user's membership, current or past (a past one has ``left_seq``)."""

    async def memberships(self, user_id: str) -> list[Member]:
        """The user's memberships, current and past (its inbox partition)."""

    async def inbox(
        self, user_id: str, limit: int, before: tuple[int, str] | None = None
    ) -> list[tuple[Chat, Member]]:
        """One page of the user's chats (memberships current and past) with the
        user's membership of each, most recent activity first.

        Ordered by ``(last_activity, chat_id)`` descending; with ``before``, only
        chats strictly below that pair. At most ``limit``.
        """

    async def group_ids(self, limit: int, after: str = "") -> list[str]:
        """Ids of groups in id order, for administration."""

    async def direct_peers(self, user_id: str) -> list[str]:
        """Users who share a direct chat with ``user_id``."""


class MessageStore(Protocol):
    async def append(self, draft: MessageDraft) -> Appended:
        """The durability point of a message.

        Assigns the chat's next ``seq`` (no gaps, no duplicates) and a time-sortable
        ``message_id``. The sender has read and received what it wrote: its own
        watermarks rise to the seq (``watermarks.sent``; ``Appended`` reports them
        as they were just before). The sending device has its own message: its
        cursor moves to the seq only if it had everything up to seq - 1
        (``watermarks.cursor_after_send``), so a replay never skips a gap. Idempotent on
        ``(sender_id, client_msg_id)``: a repeat returns the first message with
        ``created=False`` and stores nothing. Raises ``not_found`` if the sender
        is not a current member of the chat when the message is numbered, so a
        removal and a send cannot interleave. A draft's ``media_id`` is recorded
        as a reference to that media in the same atomic write: once append
        returns, ``MediaStore.references`` lists the message and
        ``MediaStore.delete_unreferenced`` keeps the media. Durable when it returns.

        An ``encrypted`` draft carries ``ciphertexts``: the store checks, atomically
        with numbering it, that they cover exactly the chat's current members'
        devices that hold a key bundle and are not revoked, less
        ``sender_device_id`` (``chatd.core.e2e.check_coverage``; ``DeviceMismatch``
        otherwise, and nothing is stored), and stores them with the message
        (``CiphertextStore``), never in the message row.
        """

    async def get(self, chat_id: str, message_id: str) -> Message | None: ...

    async def at_seq(self, chat_id: str, seq: int) -> Message | None: ...

    async def before(
        self, chat_id: str, before_seq: int, limit: int, min_seq: int = 0
    ) -> list[Message]:
        """Newest first: messages with ``min_seq < seq < before_seq``."""

    async def after(self, chat_id: str, after_seq: int, limit: int) -> list[Message]:
        """Oldest first: messages with ``seq > after_seq``."""

    async def senders_between(self, chat_id: str, low_seq: int, high_seq: int) -> set[str]:
        """Distinct senders of messages with ``low_seq < seq <= high_seq``."""


class ReceiptStore(Protocol):
    async def advance(self, moves: Sequence[WatermarkMove]) -> list[WatermarkResult | None]:
        """Raise watermarks; never lowers one. ``read`` also raises ``delivered``.

        Moves apply in order (``watermarks.apply_move``). Returns, per move, the
        member's watermarks before and after (None if the user is not a member).
        A move naming a device also raises that device's cursor in the chat to
        ``delivered_seq`` (``watermarks.acked_cursors``); cursors never fall either.
        The device has what it acknowledged: its ciphertexts in the chat up to
        that cursor are deleted in the same call (``CiphertextStore``).
        """

    async def pending(self, user_id: str, device_id: str) -> list[PendingChat]:
        """Chats in which the device has not acknowledged every message, least
        recently active first (``watermarks.pending_chats``).

        Each spans from the later of the user's join and the device's cursor to the
        chat's last seq, or to where the user left; a chat with nothing in that
        span is not listed. A past member's chats count too, up to its leaving.
        """


class MediaStore(Protocol):
    """Metadata of uploads; the bytes live in a ``BlobStore`` (``ports/media.py``).

    A media is referenced by the messages appended with its ``media_id``
    (``MessageStore.append`` records the reference atomically with the message).
    """

    async def create(self, media: Media) -> None:
        """Store a new record (a fresh ``media_id``). Durable when it returns."""

    async def get(self, media_id: str) -> Media | None: ...

    async def get_many(self, media_ids: Sequence[str]) -> dict[str, Media]:
        """The records that exist among ``media_ids``, by id (one round trip per page)."""

    async def references(self, media_id: str, limit: int = 1000) -> list[MediaRef]:
        """Messages carrying the media, oldest first, at most ``limit``."""

    async def unreferenced(self, created_before: int, limit: int) -> list[Media]:
        """Records created before ``created_before`` that no message references,
        oldest first: candidates for the retention job."""

    async def delete_unreferenced(self, media_id: str) -> bool:
        """Delete the record only if still no message references it, atomically with
        respect to ``MessageStore.append``; True if it was deleted."""

    async def blob_in_use(self, sha256: str) -> bool:
        """Whether any record still serves ``sha256`` as its file or its thumbnail."""


class KeyStore(Protocol):
    """End-to-end encryption key bundles (public keys only), per device."""

    async def put(self, keys: DeviceKeys, one_time: Sequence[Prekey], *, limit: int) -> bool:
        """Store the device's identity and signed prekey, and add ``one_time`` prekeys;
        True when the device had no bundle before (its user's set of devices with a
        bundle grew, which encrypted sends must see at once).

        A prekey whose ``key_id`` the device already has is left as it is (a retried
        upload adds nothing twice). A new ``identity_key`` means a reinstalled
        device: its earlier one-time prekeys are dropped first. The device may hold
        at most ``limit`` prekeys: ``chatd.core.prekeys.prekeys_to_add`` decides,
        inside the write, so concurrent puts for one device (on any node) cannot
        together pass it; a put that would pass it raises ``TooManyPrekeys`` and
        writes nothing. Durable when it returns.
        """

    async def get(self, device_id: str) -> DeviceKeys | None: ...

    async def claim(self, device_id: str) -> Prekey | None:
        """Hand out one of the device's one-time prekeys and forget it.

        Each prekey is returned at most once, across concurrent callers and nodes;
        None when the device has none left.
        """

    async def count(self, device_id: str) -> int:
        """How many one-time prekeys the device has left."""


class AuditStore(Protocol):
    """Who changed what, for administrators (``GET /admin/audit``)."""

    async def append(self, entry: AuditEntry) -> None:
        """Store one entry. Durable when it returns."""

    async def page(self, limit: int, before: tuple[int, str] | None = None) -> list[AuditEntry]:
        """Newest first, by ``(time, entry_id)`` descending; with ``before``, only
        entries strictly below that pair. At most ``limit``."""


class StatsStore(Protocol):
    """Whole-store counts for the admin dashboard. May cost a scan of the store
    (ScyllaDB has no cheap count): callers cache the answers."""

    async def totals(self) -> Totals: ...

    async def media_usage(self) -> MediaUsage: ...


class CiphertextStore(Protocol):
    """Per-device ciphertexts of end-to-end encrypted messages: written by
    ``MessageStore.append``, deleted by ``ReceiptStore.advance`` once their device
    acknowledged them, or here when expired."""

    async def between(
        self, device_id: str, chat_id: str, low_seq: int, high_seq: int
    ) -> dict[int, Ciphertext]:
        """The device's ciphertexts in the chat with ``low_seq <= seq <= high_seq``, by seq."""

    async def expire(self, before: int) -> int:
        """Delete ciphertexts stored before ``before`` (ms); how many went, if known.

        A store may keep one for up to an hour past ``before`` (it expires by hour)."""


class Storage(Protocol):
    """The whole storage port: one object with an entity store per noun."""

    users: UserStore
    devices: DeviceStore
    contacts: ContactStore
    invites: InviteStore
    chats: ChatStore
    messages: MessageStore
    receipts: ReceiptStore
    media: MediaStore
    keys: KeyStore
    push: PushStore
    audit: AuditStore
    stats: StatsStore
    ciphertexts: CiphertextStore

    async def open(self) -> None:
        """Connect and run pending schema migrations."""

    async def aclose(self) -> None:
        """Finish pending writes, then release connections."""

    async def ping(self) -> bool:
        """True when the store answers and its writes succeed (for /health): after a
        failed write (a full disk) False until a write succeeds again."""


# -- batching: an optional capability, declared here and checked once at wiring --


@runtime_checkable
class StartsAppends(Protocol):
    """A message store that queues an append without a coroutine (SQLite's writer)."""

    def append_nowait(self, draft: MessageDraft) -> asyncio.Future[Appended]:
        """Start ``append`` at once; the future resolves as ``append`` would return.

        Appends started in one event-loop turn may share one commit. Same
        guarantees as ``append``; raises ``ChatdError('unavailable')`` at once
        when the store is closed.
        """


@runtime_checkable
class StartsAdvances(Protocol):
    """A receipt store that queues ``advance`` without a coroutine."""

    def advance_nowait(
        self, moves: Sequence[WatermarkMove]
    ) -> asyncio.Future[list[WatermarkResult | None]]:
        """Start ``advance`` at once; the future resolves as ``advance`` would return."""


def append_starter(store: MessageStore) -> Callable[[MessageDraft], asyncio.Future[Appended]]:
    """The one way the core starts an append: the store's ``append_nowait`` if it
    has one, else a task around ``append``. Both give a future with one outcome."""
    if isinstance(store, StartsAppends):
        return store.append_nowait
    return lambda draft: asyncio.ensure_future(store.append(draft))


def advance_starter(
    store: ReceiptStore,
) -> Callable[[Sequence[WatermarkMove]], asyncio.Future[list[WatermarkResult | None]]]:
    """``append_starter`` for receipts."""
    if isinstance(store, StartsAdvances):
        return store.advance_nowait
    return lambda moves: asyncio.ensure_future(store.advance(moves))


class PushStore(Protocol):
    """Push targets per device and the durable outbox of waiting notifications.

    The outbox holds one item per (device, chat). Several workers, in one
    process or on several nodes sharing the store, claim due items with a lease;
    a claim is exclusive (two claimants never both get an item while its lease
    runs). ``done``, ``retry_later`` and ``bury`` apply only while the item still
    has the ``delivery_id`` the caller holds: an item replaced meanwhile by a
    later message is left alone.
    """

    async def put_target(self, target: PushTarget, registered_at: int) -> None:
        """Set (or replace) the device's target. Durable when it returns."""

    async def get_target(self, device_id: str) -> RegisteredTarget | None: ...

    async def delete_target(self, device_id: str) -> bool:
        """Delete the device's target and its waiting notifications; True if it had one."""

    async def targets(self, user_id: str) -> list[RegisteredTarget]:
        """The targets of the user's devices."""

    async def enqueue(self, items: Sequence[OutboxItem]) -> None:
        """Write waiting notifications, one per (device, chat).

        Where an item of that device and chat waits already, a new one with a
        higher ``seq`` replaces its ``delivery_id``, ``seq`` and ``payload``,
        restarts ``attempts`` at 0, keeps the later of the two ``due_at`` (a
        backoff is not cut short) and ends any claim on it; one with a lower or
        equal ``seq`` changes nothing.
        """

    async def cancel(self, device_id: str) -> int:
        """Drop the device's waiting notifications (it connected); how many."""

    async def claim(
        self, now: int, lease_ms: int, limit: int, devices: Sequence[str] | None = None
    ) -> list[OutboxItem]:
        """Claim up to ``limit`` items due at ``now`` (``due_at <= now``, no live claim),
        among ``devices`` if given, for ``lease_ms``: nobody else claims them
        until then. Earliest due first where the store can order them."""

    async def done(self, item: OutboxItem) -> bool:
        """Delete the item if it still has ``item.delivery_id`` (sent or dropped)."""

    async def retry_later(self, item: OutboxItem, attempts: int, due_at: int, error: str) -> bool:
        """Record a failed attempt and release the claim, if the item is unchanged."""

    async def bury(self, item: OutboxItem, attempts: int, error: str, dead_at: int) -> bool:
        """Move the item to the dead items (kept with ``error``), if it is unchanged."""

    async def dead(self, limit: int, cursor: str = "") -> tuple[list[DeadItem], str | None]:
        """One page of dead items after ``cursor`` ("" first) and the next cursor
        (None at the end)."""

    async def revive(self, delivery_id: str, now: int) -> str | None:
        """Put a dead item back in the outbox, due at ``now``, attempts 0, with the
        same ``delivery_id``: ``"requeued"``; ``"superseded"`` when a later
        notification of that device and chat waits already (the dead item is
        dropped, the waiting one covers it); None if there is no such dead item."""

    async def expire_dead(self, before: int) -> int:
        """Delete the dead items buried before ``before`` (ms): the retention sweep of
        ``[push] dead_retention_days``; how many. Revived items are not dead."""

    async def depth(self) -> int:
        """Notifications waiting in the outbox (for ``chatd_push_outbox_depth``)."""
