"""HTTP details of serving immutable files: Range, ETag, Content-Disposition.

Written here rather than delegated to ``web.FileResponse`` so that every blob
store (local files or a remote one) is served the same way, with the blob's
SHA-256 as a strong ETag that is the same on every node. Tests pin each rule.

- ``Range``: one ``bytes`` range, ``a-b``, ``a-`` or the suffix ``-n``. A range
  starting at or past the end, a zero-length suffix, or any range of an empty
  file is unsatisfiable (416 with ``Content-Range: bytes */size``). Several
  ranges, another unit or a malformed value (digits other than ASCII 0-9
  included) are ignored: the whole file, 200. A number of any length is read
  (beyond 18 digits as "more than any file"), never a 500.
- ``If-None-Match`` (weak comparison, ``*`` too) -> 304.
- ``If-Range`` with anything but the current ETag -> the whole file, 200.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from chatd.core.validate import natural

_SPEC = re.compile(r"[ \t]*bytes[ \t]*=[ \t]*([0-9]*)[ \t]*-[ \t]*([0-9]*)[ \t]*", re.I | re.A)
INLINE_PREFIXES = ("image/", "video/", "audio/")


class Unsatisfiable(Exception):
    """The Range asks for no byte of the file."""


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(first, last)`` inclusive for a satisfiable single range, None to send it all."""
    if not header:
        return None
    match = _SPEC.fullmatch(header)
    if match is None:  # several ranges, another unit, or garbage: ignored
        return None
    first, last = match.group(1), match.group(2)
    if not first and not last:
        return None
    if not first:  # suffix: the last n bytes
        n = _number(last)
        if n == 0 or size == 0:
            raise Unsatisfiable
        return max(0, size - n), size - 1
    start = _number(first)
    end = _number(last) if last else size - 1
    if last and end < start:
        return None  # invalid: ignored, as RFC 9110 says
    if start >= size:
        raise Unsatisfiable
    return start, min(end, size - 1)


def _number(digits: str) -> int:
    value = natural(digits)  # the pattern let only ASCII digits through
    assert value is not None
    return value


def etag_matches(header: str | None, etag: str) -> bool:
    """Weak comparison against an ``If-None-Match`` list."""
    if not header:
        return False
    for tag in header.split(","):
        tag = tag.strip()
        if tag == "*" or tag.removeprefix("W/") == etag:
            return True
    return False


def range_applies(if_range: str | None, etag: str) -> bool:
    """Whether ``Range`` is honoured: no ``If-Range``, or one naming this exact ETag."""
    return if_range is None or if_range.strip() == etag


def content_disposition(mime_type: str, filename: str | None) -> str:
    """``inline`` for pictures, video and sound, ``attachment`` for the rest.

    The name is offered as printable ASCII (anything else replaced by ``_``) and,
    when that changed it, in full as RFC 8187 ``filename*``; neither can carry a
    quote, a backslash or a line break, so the header cannot be split or extended.
    """
    kind = "inline" if mime_type.startswith(INLINE_PREFIXES) else "attachment"
    if not filename:
        return kind
    ascii_name = "".join(c if " " <= c <= "~" and c not in '"\\' else "_" for c in filename)
    value = f'{kind}; filename="{ascii_name}"'
    if ascii_name != filename:
        value += f"; filename*=UTF-8''{quote(filename, safe='')}"
    return value
