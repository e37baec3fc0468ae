"""Logging for ``chatd serve``: every line goes through two filters on the handlers.

- ``Throttle``: warnings and errors of one kind (logger, level, message template)
  are written at most ``per_minute`` times a minute; the rest are counted and the
  count rides on the next line of that kind written. Junk from the internet
  (malformed requests make aiohttp log an ERROR with a traceback each) cannot
  flood the disk or the journal.
- ``RedactTokens``: bearer tokens never reach a log, whoever logs them: a
  ``token=`` query parameter, an ``Authorization`` header or a ``Bearer`` value
  is masked in the message, its arguments and any traceback (aiohttp quotes
  the raw request line of a request it cannot parse).

They sit on the root handlers, so records of every logger that propagates
(chatd's, aiohttp's, the drivers') pass through them; a handler added later
gets them with ``protect``.
"""

from __future__ import annotations

import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MASK = "<redacted>"

_PATTERNS = (
    # ?token=..., &access_token=... up to the next separator (escapes included).
    re.compile(r"(?i)((?:\b|_)token=)[^&\s'\"]+"),
    # Authorization: <anything> up to the end of the line or a quote.
    re.compile(r"(?i)(\bauthorization\b['\"]?\s*[:=,]\s*['\"]?)[^\r\n'\"]+"),
    # Bearer <token> anywhere else (a header repr, an exception message).
    re.compile(r"(?i)(\bbearer\s+)[^\s'\",]+"),
)


def redact(text: str) -> str:
    """``text`` with every token-looking value replaced by ``<redacted>``."""
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + MASK, text)
    return text


class RedactTokens(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self._formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class Throttle(logging.Filter):
    """At most ``per_minute`` warnings/errors of one kind per minute; 0: no limit."""

    def __init__(
        self,
        per_minute: int,
        *,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_kinds: int = 1000,
    ) -> None:
        super().__init__()
        self._per_minute = per_minute
        self._window = window_s
        self._clock = clock
        self._max_kinds = max_kinds
        # kind -> [window start, lines written in it, lines held back since last written]
        self._kinds: OrderedDict[tuple[str, int, str], list[float]] = OrderedDict()

    def filter(self, record: logging.LogRecord) -> bool:
        if self._per_minute <= 0 or record.levelno < logging.WARNING:
            return True
        kind = (record.name, record.levelno, str(record.msg)[:200])
        now = self._clock()
        state = self._kinds.pop(kind, None) or [now, 0, 0]
        self._kinds[kind] = state
        if len(self._kinds) > self._max_kinds:
            self._kinds.popitem(last=False)
        if now - state[0] >= self._window:
            state[0], state[1] = now, 0
        if state[1] >= self._per_minute:
            state[2] += 1
            return False
        state[1] += 1
        held = int(state[2])
        if held:
            state[2] = 0
            note = f" [{held} more like this not logged]"
            record.msg = str(record.msg) + note.replace("%", "%%")
        return True


def protect(handler: logging.Handler, repeats_per_minute: int) -> None:
    """Put the throttle, then the redaction, on ``handler``."""
    handler.addFilter(Throttle(repeats_per_minute))
    handler.addFilter(RedactTokens())


def setup(level: str, repeats_per_minute: int) -> None:
    """Log to standard error at ``level``, every line throttled and redacted."""
    logging.basicConfig(level=level.upper(), format=FORMAT)
    for handler in logging.getLogger().handlers:
        protect(handler, repeats_per_minute)
