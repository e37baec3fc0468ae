"""Who is calling: the identity every service call is made on behalf of."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Caller:
    user_id: str
    device_id: str
    username: str
    is_admin: bool = False
