"""Domain records shared by services and storage adapters.

Plain frozen dataclasses: adapters build them from rows, services read them, and
the gateway turns them into contract JSON through ``chatd.core.views``.
Times are integer milliseconds since the epoch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, Literal

ChatKind = Literal["direct", "group"]
Role = Literal["admin", "member"]
GroupAdd = Literal["everyone", "contacts"]
GROUP_ADD = ("everyone", "contacts")
MESSAGE_TYPES = frozenset({"text", "image", "video", "audio", "file"})
SYSTEM = "system"  # membership and settings changes; written by the server only


def columns(record: type) -> str:
    """The record's field names in order, comma-separated: the column list of a table
    that stores the record field for field (adapters build records from such rows)."""
    return ", ".join(f.name for f in fields(record))


@dataclass(frozen=True, slots=True)
class User:
    user_id: str
    username: str
    display_name: str
    password_hash: str
    created_at: int
    status_message: str = ""
    avatar_media_id: str | None = None
    is_admin: bool = False
    banned: bool = False
    last_seen: int | None = None
    #: Who may add the user to groups: "everyone" or "contacts" (users the
    #: user has as a contact).
    group_add: GroupAdd = "everyone"


@dataclass(frozen=True, slots=True)
class Device:
    device_id: str
    user_id: str
    name: str
    created_at: int
    expires_at: int
    revoked_at: int | None = None


@dataclass(frozen=True, slots=True)
class Contact:
    user_id: str
    contact_id: str
    name: str | None
    created_at: int


@dataclass(frozen=True, slots=True)
class Chat:
    chat_id: str
    kind: ChatKind
    created_at: int
    title: str | None = None
    description: str | None = None
    avatar_media_id: str | None = None
    created_by: str | None = None
    last_seq: int = 0
    last_activity: int = 0
    #: Bumped by every membership or settings change; changes are applied only
    #: if the version is still the one they were computed from.
    version: int = 0


@dataclass(frozen=True, slots=True)
class Member:
    """A user's membership of a chat, with the user's own watermarks in it.

    ``delivered_seq``: some device of the user has every message up to it.
    ``read_seq``: the user has read every message up to it (never above delivered).
    ``joined_seq``: the chat's last seq when the user joined; history starts after it.
    ``left_seq``: set when the user left or was removed: the seq of that event, the
    last message the user may see. None while the user is a member.
    """

    chat_id: str
    user_id: str
    role: Role
    joined_at: int
    joined_seq: int = 0
    delivered_seq: int = 0
    read_seq: int = 0
    left_seq: int | None = None

    @property
    def active(self) -> bool:
        return self.left_seq is None

    def sees(self, seq: int) -> bool:
        """Whether this membership covers the message with ``seq``."""
        return self.joined_seq < seq and (self.left_seq is None or seq <= self.left_seq)


@dataclass(frozen=True, slots=True)
class GroupChange:
    """One atomic change of a group, with the system message that records it.

    Applied only if the chat's version is still ``expected_version``. Users in
    ``add`` join just before the system message (they see it); users in
    ``remove`` leave with it (it is the last message they see).
    """

    chat_id: str
    expected_version: int
    system: MessageDraft
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    roles: tuple[tuple[str, Role], ...] = ()
    settings: tuple[tuple[str, str | None], ...] = ()


@dataclass(frozen=True, slots=True)
class MessageDraft:
    """What a sender asks to store; the store adds id, seq and timestamp."""

    chat_id: str
    sender_id: str
    sender_device_id: str
    type: str
    content: str
    client_msg_id: str
    media_id: str | None = None
    reply_to: str | None = None

    def to_message(self, *, message_id: str, seq: int, created_at: int) -> Message:
        """The stored message this draft becomes once a store numbered it."""
        return Message(
            message_id=message_id,
            chat_id=self.chat_id,
            seq=seq,
            sender_id=self.sender_id,
            sender_device_id=self.sender_device_id,
            type=self.type,
            content=self.content,
            client_msg_id=self.client_msg_id,
            created_at=created_at,
            media_id=self.media_id,
            reply_to=self.reply_to,
        )


@dataclass(frozen=True, slots=True)
class Message:
    message_id: str
    chat_id: str
    seq: int
    sender_id: str
    sender_device_id: str
    type: str
    content: str
    client_msg_id: str
    created_at: int
    media_id: str | None = None
    reply_to: str | None = None


@dataclass(frozen=True, slots=True)
class Media:
    """One upload: who sent it and what the served bytes are.

    ``sha256``/``size`` describe the bytes served, which are the uploaded ones
    except for images whose metadata (EXIF, GPS) was stripped. Blobs are
    content-addressed, so several records may share one ``sha256``.
    """

    media_id: str
    uploader_id: str
    sha256: str
    mime_type: str
    size: int
    created_at: int
    filename: str | None = None
    width: int | None = None
    height: int | None = None
    duration_ms: int | None = None
    thumbnail_sha256: str | None = None
    thumbnail_mime: str | None = None
    thumbnail_size: int | None = None


@dataclass(frozen=True, slots=True)
class MediaRef:
    """A message that carries a media: readers of the message may read the media."""

    media_id: str
    chat_id: str
    seq: int
    message_id: str


@dataclass(frozen=True, slots=True)
class Appended:
    """The outcome of an append: ``created`` is False when ``client_msg_id`` was seen before.

    ``previous_read_seq``/``previous_delivered_seq``: the sender's watermarks just
    before this message raised them (None when the store does not report them),
    so the service can tell the senders of the messages this reply covers.
    """

    message: Message
    created: bool
    previous_read_seq: int | None = None
    previous_delivered_seq: int | None = None


@dataclass(frozen=True, slots=True)
class WatermarkMove:
    """A request to raise a member's (and optionally one device's) watermarks."""

    chat_id: str
    user_id: str
    device_id: str | None = None
    delivered_seq: int = 0
    read_seq: int = 0


@dataclass(frozen=True, slots=True)
class WatermarkResult:
    """Member watermarks before and after a move; equal values mean nothing changed."""

    delivered_before: int
    delivered_after: int
    read_before: int
    read_after: int


@dataclass(frozen=True, slots=True)
class PendingChat:
    """A chat in which a device has not acknowledged everything yet."""

    chat_id: str
    after_seq: int
    last_seq: int


@dataclass(frozen=True, slots=True)
class Prekey:
    """A public prekey of the Signal protocol (X3DH); ``public_key`` is base64."""

    key_id: int
    public_key: str


@dataclass(frozen=True, slots=True)
class SignedPrekey:
    """The medium-term prekey, signed by the device's identity key."""

    key_id: int
    public_key: str
    signature: str


@dataclass(frozen=True, slots=True)
class DeviceKeys:
    """A device's long-lived public keys. The server stores them and never needs
    a private key: it only hands bundles to whoever wants to start a session."""

    device_id: str
    user_id: str
    identity_key: str
    signed_prekey: SignedPrekey
    updated_at: int

    def flat(self) -> tuple[str, str, str, int, str, str, int]:
        """The record as one row (device_id, user_id, identity_key, signed key_id,
        signed public_key, signature, updated_at): the column order both stores use."""
        s = self.signed_prekey
        return (
            self.device_id,
            self.user_id,
            self.identity_key,
            s.key_id,
            s.public_key,
            s.signature,
            self.updated_at,
        )

    @classmethod
    def from_flat(cls, row: Sequence[Any]) -> DeviceKeys:
        signed = SignedPrekey(int(row[3]), row[4], row[5])
        return cls(row[0], row[1], row[2], signed, int(row[6]))


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One administrative change: who (``actor_id``: a user id, or ``"cli"``) did
    ``action`` to ``target_id`` (a user, device, group or invite), and when.
    ``entry_id`` is time-sortable and breaks ties between entries of one millisecond."""

    entry_id: str
    time: int
    actor_id: str
    action: str
    target_id: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Totals:
    """Whole-server counts for the admin dashboard."""

    users: int
    chats: int
    messages: int


@dataclass(frozen=True, slots=True)
class MediaUsage:
    """Stored uploads: records, their bytes (files, not thumbnails), and how many no
    message references (candidates for the retention job)."""

    files: int
    bytes: int
    unreferenced_files: int
