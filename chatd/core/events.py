"""Events the services publish to connected devices.

An event is a frame type plus its contract ``data``; the sink encodes it once and
hands the same bytes to every socket it goes to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Event:
    type: str
    data: dict[str, Any]
    #: For ``new_message``: lets a session that is replaying history skip a live
    #: copy it has already sent, so each device sees a chat's messages in order.
    chat_id: str | None = None
    seq: int = 0
    #: Wall-clock ms when the event's cause was accepted, for latency metrics.
    created_at: int = 0
