"""Events the services publish to connected devices.

An event is a frame type plus its contract ``data``; the sink encodes it once and
hands the same bytes to every socket it goes to.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class Event:
    """One event; treat as immutable.

    A plain class with slots rather than a frozen dataclass: one is built for
    every message and every receipt announced, and a frozen dataclass's
    ``__init__`` (an ``object.__setattr__`` per field) cost several times more.
    """

    __slots__ = ("chat_id", "created_at", "data", "only_listed", "per_device", "seq", "type")

    def __init__(
        self,
        type: str,
        data: dict[str, Any],
        chat_id: str | None = None,
        seq: int = 0,
        created_at: int = 0,
        per_device: Mapping[str, Mapping[str, Any]] | None = None,
        only_listed: bool = False,
    ) -> None:
        self.type = type
        self.data = data
        #: For ``new_message``: lets a session that is replaying history skip a live
        #: copy it has already sent, so each device sees a chat's messages in order.
        self.chat_id = chat_id
        self.seq = seq
        #: Wall-clock ms when the event's cause was accepted, for latency metrics.
        self.created_at = created_at
        #: Per device id, fields that replace those of ``data`` in that device's copy
        #: (an end-to-end encrypted message: each device gets only its own
        #: ciphertext). The delivery step resolves it per socket; with
        #: ``only_listed``, devices not named get nothing (an event for one device).
        self.per_device = per_device
        self.only_listed = only_listed

    @classmethod
    def for_device(cls, device_id: str, type: str, data: dict[str, Any]) -> Event:
        """An event for one device of a user (publish it to that user)."""
        return cls(type, {}, per_device={device_id: data}, only_listed=True)

    def data_for(self, device_id: str) -> dict[str, Any] | None:
        """The ``data`` one device receives (None: nothing for that device)."""
        per_device = self.per_device
        if per_device is None:
            return self.data
        extra = per_device.get(device_id)
        if extra is None:
            return None if self.only_listed else self.data
        return {**self.data, **extra}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return (
            self.type,
            self.data,
            self.chat_id,
            self.seq,
            self.created_at,
            self.per_device,
            self.only_listed,
        ) == (
            other.type,
            other.data,
            other.chat_id,
            other.seq,
            other.created_at,
            other.per_device,
            other.only_listed,
        )

    __hash__ = None  # type: ignore[assignment]  # data is a dict: not hashable anyway

    def __repr__(self) -> str:
        return f"Event({self.type!r}, {self.data!r}, chat_id={self.chat_id!r}, seq={self.seq})"


class Invalidation:
    """A change that every node must apply to its caches and sockets at once.

    ``kind``: ``"membership"`` (``ids`` are chats whose member list changed),
    ``"devices"`` (``ids`` are devices whose tokens were revoked: close their
    sockets with ``reason``), ``"push_targets"`` (``ids`` are users whose push
    targets were registered, changed or deleted: drop their cached targets).
    Carried by the router to every node, the originating one included.
    """

    __slots__ = ("ids", "kind", "reason")

    def __init__(self, kind: str, ids: tuple[str, ...], reason: str = "") -> None:
        self.kind = kind
        self.ids = ids
        self.reason = reason

    @classmethod
    def membership(cls, chat_id: str) -> Invalidation:
        return cls("membership", (chat_id,))

    @classmethod
    def devices(cls, device_ids: Iterable[str], reason: str) -> Invalidation:
        return cls("devices", tuple(device_ids), reason)

    @classmethod
    def push_targets(cls, user_ids: Iterable[str]) -> Invalidation:
        return cls("push_targets", tuple(user_ids))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Invalidation):
            return NotImplemented
        return (self.kind, self.ids, self.reason) == (other.kind, other.ids, other.reason)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Invalidation({self.kind!r}, {self.ids!r})"
