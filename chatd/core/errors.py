"""The one error type of chatd, carrying a wire-contract error code.

Every refusal the server makes is a ``ChatdError``; the gateway maps its code to an
HTTP status or an ``error`` frame, so a code means the same thing on every path.
"""

from __future__ import annotations

from typing import Literal

ErrorCode = Literal[
    "bad_request",
    "unauthorized",
    "forbidden",
    "not_found",
    "conflict",
    "payload_too_large",
    "unsupported_media_type",
    "rate_limited",
    "unavailable",
]


class ChatdError(Exception):
    """A refusal the caller can act on; ``code`` is one of the contract's codes."""

    def __init__(self, code: ErrorCode, message: str, *, retry_after: float | None = None):
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message
        self.retry_after = retry_after
        #: Fields added to the wire's error object beside code and message.
        self.details: dict[str, object] = {}

    def __repr__(self) -> str:
        return f"ChatdError({self.code!r}, {self.message!r})"


def bad_request(message: str) -> ChatdError:
    return ChatdError("bad_request", message)


def not_found(what: str = "not found") -> ChatdError:
    return ChatdError("not_found", what)


def forbidden(message: str) -> ChatdError:
    return ChatdError("forbidden", message)


class StaleVersion(ChatdError):
    """A compare-and-set lost a race; the caller re-reads and retries."""

    def __init__(self, message: str = "changed concurrently; retry") -> None:
        super().__init__("conflict", message)


class TooManyPrekeys(ChatdError):
    """An upload would leave a device holding more one-time prekeys than allowed."""

    def __init__(self, held: int, adding: int, limit: int) -> None:
        super().__init__(
            "bad_request",
            f"a device holds at most {limit} one-time prekeys ({held} stored, {adding} new sent)",
        )
