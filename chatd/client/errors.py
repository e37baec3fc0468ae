"""The client's one error type, carrying the wire contract's error code.

REST error responses and WebSocket ``error`` frames both become an ``ApiError``, so
callers handle a refusal the same way whichever path produced it.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any

import orjson

#: The contract's status -> code table; a status it does not name maps to ``http_<status>``.
STATUS_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
    429: "rate_limited",
    503: "unavailable",
}


def code_for_status(status: int) -> str:
    """The contract code for an HTTP status, used when a body carries no code."""
    return STATUS_CODES.get(status, f"http_{status}")


class ApiError(Exception):
    """A refusal from the server.

    ``status`` is the HTTP status (None for a WebSocket error frame), ``code`` the
    contract code, ``retry_after`` the seconds to wait when the server said so, and
    ``details`` the whole error object (servers may add fields, e.g. missing device ids).
    """

    def __init__(
        self,
        status: int | None,
        code: str,
        message: str = "",
        *,
        retry_after: float | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.details: dict[str, Any] = details if details is not None else {}

    def __repr__(self) -> str:
        return f"ApiError(status={self.status!r}, code={self.code!r}, message={self.message!r})"


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header: delta-seconds or an HTTP date; None if absent/bad."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def error_from_response(status: int, body: bytes, headers: Mapping[str, str]) -> ApiError:
    """Build the ApiError for a non-2xx response, trusting the contract body when present."""
    retry_after = parse_retry_after(headers.get("Retry-After"))
    error: Any = None
    try:
        decoded = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        decoded = None
    if isinstance(decoded, dict):
        error = decoded.get("error")
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        return ApiError(
            status,
            error["code"],
            str(error.get("message", "")),
            retry_after=retry_after,
            details=error,
        )
    text = body.decode("utf-8", "replace").strip()[:200] if body else ""
    return ApiError(status, code_for_status(status), text, retry_after=retry_after)


def error_from_frame(data: Any) -> ApiError:
    """Build the ApiError for a WebSocket ``error`` frame's data."""
    if not isinstance(data, dict):
        return ApiError(None, "bad_request", f"malformed error frame data: {data!r}")
    retry_after: float | None = None
    if isinstance(data.get("retry_after_ms"), int | float):
        retry_after = data["retry_after_ms"] / 1000
    elif isinstance(data.get("retry_after"), int | float):
        retry_after = float(data["retry_after"])
    return ApiError(
        None,
        str(data.get("code", "bad_request")),
        str(data.get("message", "")),
        retry_after=retry_after,
        details=data,
    )
