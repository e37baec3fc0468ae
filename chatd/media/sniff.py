"""The type of a file from its first bytes, never from what the client claims.

Binary formats are recognised by their signatures (the ``filetype`` package).
What has no signature is text if it decodes as UTF-8 without control
characters, and then it is judged by how it starts: a ``#!`` script, HTML, SVG
and XML are named as such (so the allow list can refuse them); other text takes
the declared type only when that is one of the harmless text types, else
``text/plain``. Anything else is ``application/octet-stream``.
"""

from __future__ import annotations

import re

import filetype

#: How many leading bytes are examined (filetype needs at most 8 KiB).
HEAD_BYTES = 8192

#: filetype's names -> the ones clients and the allow list use.
ALIASES = {
    "audio/x-wav": "audio/wav",
    "audio/x-flac": "audio/flac",
    "image/apng": "image/png",
}

#: Declared types that plain text may keep (the bytes cannot tell them apart).
TEXT_TYPES = frozenset(
    {
        "text/plain",
        "text/csv",
        "text/markdown",
        "text/calendar",
        "text/vcard",
        "application/json",
    }
)
#: Declared types that mark text as a program: kept, so the allow list refuses them.
SCRIPT_TYPES = frozenset(
    {
        "application/javascript",
        "application/x-javascript",
        "text/javascript",
        "application/x-sh",
        "application/x-shellscript",
        "text/x-shellscript",
        "text/x-python",
        "text/x-script.python",
        "application/x-python",
        "application/x-perl",
        "application/x-bat",
        "application/x-msdos-program",
        "application/x-powershell",
        "text/html",
        "application/xhtml+xml",
        "image/svg+xml",
    }
)
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f]")
_HTML_STARTS = ("<!doctype html", "<html", "<head", "<body", "<script", "<iframe", "<meta")


def detect(head: bytes, declared: str | None = None) -> str:
    """The MIME type of a file whose first bytes are ``head``."""
    kind = filetype.guess(head[:HEAD_BYTES]) if head else None
    if kind is not None:
        return ALIASES.get(kind.mime, kind.mime)
    text = _as_text(head)
    if text is None:
        return "application/octet-stream"
    return _text_type(text, declared)


def _as_text(head: bytes) -> str | None:
    """The head decoded as UTF-8 text, or None if it is binary."""
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a character cut at the end
            return None
        text = head[: exc.start].decode("utf-8")
    return None if _CONTROL.search(text) else text


def _text_type(text: str, declared: str | None) -> str:
    start = text.lstrip().lower()
    if text.startswith("#!"):
        return "text/x-script"
    if start.startswith(_HTML_STARTS):
        return "text/html"
    if start.startswith("<svg") or (start.startswith("<?xml") and "<svg" in start):
        return "image/svg+xml"
    if start.startswith("<?xml"):
        return "application/xml"
    if declared in TEXT_TYPES or declared in SCRIPT_TYPES:
        return declared
    return "text/plain"
