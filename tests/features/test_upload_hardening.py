"""Hostile uploads and requests: names, multipart, Range and numbers never reach a 500.

Each test sends what a hostile client would, then checks the refusal, that
nothing was stored, and that the server still answers everyone else.
"""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp
import pytest

from chatd.client import ApiError
from chatd.gateway.context import SERVICES
from tests import media_files as mf
from tests.abuse_checks import still_serving

PDF = b"%PDF-1.4\n" + os.urandom(991)


def stored_files(tmp_path: Path) -> list[Path]:
    media = tmp_path / "data" / "media"
    return [p for p in media.rglob("*") if p.is_file()]


async def raw(client, method: str, path: str, *, headers=None, data=None):
    """(status, JSON error code or None, body) of a request with the client's token."""
    hdrs = {"Authorization": f"Bearer {client.token}", **(headers or {})}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, client.api_url + path, headers=hdrs, data=data) as resp,
    ):
        body = await resp.read()
        code = None
        if resp.content_type == "application/json" and resp.status >= 400:
            code = (await resp.json())["error"]["code"]
        return resp.status, code, body


def internal_errors(server) -> float:
    metrics = server.app[SERVICES].metrics
    return metrics.errors.labels("internal")._value.get()


# -- item 10: names a desktop would run or a browser would render ---------------------


@pytest.mark.parametrize(
    "name", ["run.bat.", "x.hta.", "setup.exe . .", "x.html", "page.HTM", "x.svg", "a.xhtml"]
)
async def test_program_and_web_page_names_are_refused_even_with_trailing_dots(user, tmp_path, name):
    alice = await user()
    with pytest.raises(ApiError) as err:
        await alice.upload_media(b"hello\n", "text/plain", filename=name)
    assert err.value.code == "unsupported_media_type"
    assert stored_files(tmp_path) == []


async def test_trailing_dots_and_spaces_are_dropped_from_kept_names(user):
    alice = await user()
    media = await alice.upload_media(b"hello\n", "text/plain", filename="notes.txt. . ")
    status, _, _ = await raw(alice, "GET", f"/media/{media['media_id']}")
    assert status == 200
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            alice.api_url + f"/media/{media['media_id']}",
            headers={"Authorization": f"Bearer {alice.token}"},
        ) as resp,
    ):
        assert resp.headers["Content-Disposition"] == 'attachment; filename="notes.txt"'


# -- item 11: malformed multipart ----------------------------------------------------


def multipart(boundary: str, *, header_extra: str = "", close: bool = True) -> bytes:
    head = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"; filename="doc.pdf"\r\n'
        f"Content-Type: application/pdf\r\n{header_extra}\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode() if close else b""
    return head + PDF + tail


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data", multipart("b0undary")),  # no boundary parameter
        ('multipart/form-data; boundary=""', multipart("b0undary")),
        ("multipart/form-data; boundary=other", multipart("b0undary")),  # never in the body
        (
            "multipart/form-data; boundary=b0undary",
            multipart("b0undary", header_extra="X-Junk: " + "a" * 100_000 + "\r\n"),
        ),
        ("multipart/form-data; boundary=b0undary", multipart("b0undary", close=False)),
        ("multipart/form-data; boundary=b0undary", b"--b0undary\r\nContent-Dispo"),
    ],
    ids=["no-boundary", "empty-boundary", "absent-boundary", "100kB-header", "unclosed", "cut"],
)
async def test_malformed_multipart_is_a_400_and_stores_nothing(
    server, base_url, user, tmp_path, content_type, body
):
    alice = await user()
    before = internal_errors(server)
    status, code, _ = await raw(
        alice, "POST", "/media", headers={"Content-Type": content_type}, data=body
    )
    assert (status, code) in {(400, "bad_request"), (413, "payload_too_large")}
    assert stored_files(tmp_path) == []
    assert internal_errors(server) == before
    await still_serving(user, base_url)


async def test_a_well_formed_multipart_upload_still_works(user):
    alice = await user()
    status, _, body = await raw(
        alice,
        "POST",
        "/media",
        headers={"Content-Type": "multipart/form-data; boundary=b0undary"},
        data=multipart("b0undary"),
    )
    assert status == 201, body


# -- items 11 and 14: Range and query numbers ------------------------------------------


@pytest.fixture
async def pdf(user):
    alice = await user()
    media = await alice.upload_media(PDF, "application/pdf", filename="doc.pdf")
    return alice, f"/media/{media['media_id']}"


HUGE = "9" * 4400  # past Python's 4,300-digit limit for int(); a header line stays < 8 kB


@pytest.mark.parametrize(
    ("header", "status", "content_range"),
    [
        (f"bytes={HUGE}-", 416, "bytes */1000"),
        (f"bytes=0-{HUGE}", 206, "bytes 0-999/1000"),
        (f"bytes=-{HUGE}", 206, "bytes 0-999/1000"),
        ("bytes=" + "0" * 4400 + "5-9", 206, "bytes 5-9/1000"),
        ("bytes=٣-٤", 200, None),  # Arabic-Indic digits: not a range, the whole file
        ("bytes=１-２", 200, None),  # fullwidth digits
        ("bytes=1_0-20", 200, None),
    ],
    ids=["huge-start", "huge-end", "huge-suffix", "zeros", "arabic", "fullwidth", "underscore"],
)
async def test_range_numbers_are_ascii_digits_of_any_length(pdf, header, status, content_range):
    alice, path = pdf
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            alice.api_url + path,
            headers={"Authorization": f"Bearer {alice.token}", "Range": header},
        ) as resp,
    ):
        body = await resp.read()
        assert resp.status == status
        assert resp.headers.get("Content-Range") == content_range
        if status == 200:
            assert body == PDF


@pytest.mark.parametrize(
    "query",
    ["limit=１", "limit=٣", "after_seq=1_0", "after_seq=+1", "after_seq= 1", f"limit={HUGE}"],
    ids=["fullwidth", "arabic", "underscore", "plus", "space", "huge"],
)
async def test_query_numbers_are_ascii_digits_only(user, query):
    alice, bob = await user(), await user()
    sent = await alice.send_message(recipient_id=bob.user_id, content="hi")
    chat = sent["chat_id"]
    status, code, _ = await raw(alice, "GET", f"/chats/{chat}/messages?{query}")
    assert (status, code) == (400, "bad_request")
    status, _, _ = await raw(alice, "GET", f"/chats/{chat}/messages?after_seq=0&limit=10")
    assert status == 200


async def test_user_search_limit_takes_ascii_digits_only(user):
    alice = await user()
    status, code, _ = await raw(alice, "GET", "/users?q=us&limit=２")
    assert (status, code) == (400, "bad_request")
    assert (await raw(alice, "GET", "/users?q=us&limit=2"))[0] == 200


async def test_images_still_upload(user):
    alice = await user()
    media = await alice.upload_media(mf.png(), "image/png")
    assert media["width"] == 400
