"""The tables of one in-memory store: plain dicts of chatd's frozen records.

Records are immutable (frozen dataclasses), so a reader may hold one while a
writer replaces it. Every store method runs without awaiting in between, so on
the event loop each one is atomic: no locks are needed, across "nodes" too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chatd.core.models import (
    AuditEntry,
    Chat,
    Contact,
    Device,
    DeviceKeys,
    Media,
    MediaRef,
    Member,
    Message,
    User,
)
from chatd.core.ports.push import DeadItem, OutboxItem, RegisteredTarget


@dataclass
class Tables:
    users: dict[str, User] = field(default_factory=dict)
    usernames: dict[str, str] = field(default_factory=dict)  # lower-case name -> user_id

    devices: dict[str, Device] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # token hash -> device_id
    #: The revocation feed: its position (1-based) is the cursor.
    revocations: list[str] = field(default_factory=list)

    contacts: dict[tuple[str, str], Contact] = field(default_factory=dict)  # (user, contact)
    invites: dict[str, tuple[int, int | None]] = field(default_factory=dict)  # uses, expiry

    chats: dict[str, Chat] = field(default_factory=dict)
    directs: dict[tuple[str, str], str] = field(default_factory=dict)  # sorted pair -> chat
    #: chat_id -> user_id -> membership, in joining order.
    members: dict[str, dict[str, Member]] = field(default_factory=dict)
    #: user_id -> chat_ids of the user's memberships, current and past.
    inbox: dict[str, dict[str, None]] = field(default_factory=dict)

    #: chat_id -> its messages; ``messages[chat][seq - 1]`` has that seq.
    messages: dict[str, list[Message]] = field(default_factory=dict)
    by_id: dict[str, Message] = field(default_factory=dict)
    sent: dict[tuple[str, str], Message] = field(default_factory=dict)  # (sender, client id)
    #: (device_id, chat_id) -> the device's delivery cursor.
    cursors: dict[tuple[str, str], int] = field(default_factory=dict)

    media: dict[str, Media] = field(default_factory=dict)
    refs: dict[str, list[MediaRef]] = field(default_factory=dict)  # media_id -> messages

    keys: dict[str, DeviceKeys] = field(default_factory=dict)
    prekeys: dict[str, dict[int, str]] = field(default_factory=dict)  # device -> id -> key

    push_targets: dict[str, RegisteredTarget] = field(default_factory=dict)  # by device
    #: (device_id, chat_id) -> (the waiting item, its claim's end in ms).
    outbox: dict[tuple[str, str], tuple[OutboxItem, int]] = field(default_factory=dict)
    dead: dict[str, DeadItem] = field(default_factory=dict)  # by delivery_id
    audit: dict[tuple[int, str], AuditEntry] = field(default_factory=dict)  # (time, id)
