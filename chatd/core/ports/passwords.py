"""Password hashing, kept behind a port so the core holds no crypto dependency."""

from __future__ import annotations

from typing import Protocol


class PasswordHasher(Protocol):
    async def hash(self, password: str) -> str:
        """A salted, slow hash (Argon2id by default), computed off the event loop."""

    async def verify(self, password_hash: str, password: str) -> bool:
        """True when ``password`` matches; never raises for a mismatch."""
