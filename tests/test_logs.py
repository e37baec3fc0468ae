"""The log filters on their own: what is masked, and the count of held-back lines."""

from __future__ import annotations

import logging

from chatd.logs import RedactTokens, Throttle, redact


def test_redact_masks_tokens_wherever_they_appear():
    assert redact("GET /ws?token=abc.DEF-1 HTTP/1.1") == "GET /ws?token=<redacted> HTTP/1.1"
    assert redact("/ws?x=1&access_token=s3cr3t&y=2") == "/ws?x=1&access_token=<redacted>&y=2"
    assert redact("b'Authorization: Bearer abc\\x01'") == "b'Authorization: <redacted>'"
    assert redact("{'Authorization': 'Bearer abc'}") == "{'Authorization': '<redacted>'}"
    assert redact("sent Bearer abc, then") == "sent Bearer <redacted>, then"
    assert redact("a token of 12 characters") == "a token of 12 characters"


def record(msg: str, *args: object, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord("aiohttp.server", level, __file__, 1, msg, args, None)


def test_redaction_covers_arguments_and_tracebacks():
    try:
        raise ValueError("bad line b'GET /ws?token=zzz'")
    except ValueError as exc:
        rec = record("from %s: %s", "1.2.3.4", "?token=yyy")
        rec.exc_info = (type(exc), exc, exc.__traceback__)
    assert RedactTokens().filter(rec)
    assert rec.getMessage() == "from 1.2.3.4: ?token=<redacted>"
    assert "zzz" not in (rec.exc_text or "") and "token=<redacted>" in (rec.exc_text or "")


def test_throttle_writes_a_few_of_a_kind_then_the_count():
    now = [0.0]
    throttle = Throttle(3, clock=lambda: now[0])
    passed = [throttle.filter(record("Error handling request from %s", i)) for i in range(10)]
    assert passed == [True] * 3 + [False] * 7
    assert throttle.filter(record("another kind"))  # counted apart
    assert throttle.filter(record("debug noise", level=logging.INFO))
    now[0] = 61.0
    rec = record("Error handling request from %s", "x")
    assert throttle.filter(rec)
    assert rec.getMessage() == "Error handling request from x [7 more like this not logged]"
