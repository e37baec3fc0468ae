"""Events the services publish to connected devices.

An event is a frame type plus its contract ``data``; the sink encodes it once and
hands the same bytes to every socket it goes to.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class Event:
    """One event; treat as immutable.

    A plain class with slots rather than a frozen dataclass: one is built for
    every message and every receipt announced, and a frozen dataclass's
    ``__init__`` (an ``object.__setattr__`` per field) cost several times more.
    """

    __slots__ = ("chat_id", "created_at", "data", "seq", "type")

    def __init__(
        self,
        type: str,
        data: dict[str, Any],
        chat_id: str | None = None,
        seq: int = 0,
        created_at: int = 0,
    ) -> None:
        self.type = type
        self.data = data
        #: For ``new_message``: lets a session that is replaying history skip a live
        #: copy it has already sent, so each device sees a chat's messages in order.
        self.chat_id = chat_id
        self.seq = seq
        #: Wall-clock ms when the event's cause was accepted, for latency metrics.
        self.created_at = created_at

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return (self.type, self.data, self.chat_id, self.seq, self.created_at) == (
            other.type,
            other.data,
            other.chat_id,
            other.seq,
            other.created_at,
        )

    __hash__ = None  # type: ignore[assignment]  # data is a dict: not hashable anyway

    def __repr__(self) -> str:
        return f"Event({self.type!r}, {self.data!r}, chat_id={self.chat_id!r}, seq={self.seq})"


class Invalidation:
    """A change that every node must apply to its caches and sockets at once.

    ``kind``: ``"membership"`` (``ids`` are chats whose member list changed),
    ``"devices"`` (``ids`` are devices whose tokens were revoked: close their
    sockets with ``reason``). Carried by the router to every node, the
    originating one included.
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

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Invalidation):
            return NotImplemented
        return (self.kind, self.ids, self.reason) == (other.kind, other.ids, other.reason)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Invalidation({self.kind!r}, {self.ids!r})"
