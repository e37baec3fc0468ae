"""Checks for fields of client requests; every failure is a ``bad_request`` naming the field."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from chatd.core.errors import ChatdError, bad_request

USERNAME = re.compile(r"[a-z0-9_.\-]{3,32}")
#: Numbers on the wire are ASCII digits only. ``int()`` would also read "１" or
#: "٣" (any Unicode digit), "1_0", " 5" and "+5", and raises on 4,301 digits.
_DIGITS = re.compile(r"[0-9]+", re.ASCII)
#: A number with more significant digits than this reads as ``HUGE``: larger
#: than any count, offset or size the server handles, and cheap to compare.
MAX_DIGITS = 18
HUGE = 10**MAX_DIGITS


def body(data: Any) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise bad_request("the body must be a JSON object")
    return data


def string(
    data: Mapping[str, Any],
    name: str,
    *,
    required: bool = True,
    min_len: int = 0,
    max_len: int = 1024,
    allow_none: bool = False,
) -> str | None:
    value = data.get(name)
    if value is None:
        if required and not allow_none:
            raise bad_request(f"{name} is required")
        return None
    if not isinstance(value, str):
        raise bad_request(f"{name} must be a string")
    if not min_len <= len(value) <= max_len:
        raise bad_request(f"{name} must be {min_len} to {max_len} characters")
    return value


def required_string(
    data: Mapping[str, Any], name: str, *, min_len: int = 1, max_len: int = 1024
) -> str:
    value = string(data, name, min_len=min_len, max_len=max_len)
    assert value is not None
    return value


def integer(data: Mapping[str, Any], name: str, *, minimum: int = 0, maximum: int = 2**62) -> int:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad_request(f"{name} must be an integer")
    if not minimum <= value <= maximum:
        raise bad_request(f"{name} must be between {minimum} and {maximum}")
    return value


def boolean(data: Mapping[str, Any], name: str) -> bool:
    value = data.get(name)
    if not isinstance(value, bool):
        raise bad_request(f"{name} must be true or false")
    return value


def username(value: Any) -> str:
    if not isinstance(value, str) or not USERNAME.fullmatch(value.lower()):
        raise bad_request("username must be 3-32 characters of a-z, 0-9, '_', '.' and '-'")
    return value.lower()


def natural(raw: str) -> int | None:
    """The value of a string of ASCII digits (``HUGE`` if longer), None for anything else.

    The one reader of numbers from query strings and headers.
    """
    if not _DIGITS.fullmatch(raw):
        return None
    digits = raw.lstrip("0")
    return HUGE if len(digits) > MAX_DIGITS else int(digits or "0")


def query_int(
    params: Mapping[str, str], name: str, default: int, *, minimum: int, maximum: int
) -> int:
    """A non-negative integer query parameter in ASCII digits, within its bounds."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    value = natural(raw)
    if value is None:
        raise bad_request(f"{name} must be an integer (digits 0-9)")
    if not minimum <= value <= maximum:
        raise ChatdError("bad_request", f"{name} must be between {minimum} and {maximum}")
    return value
