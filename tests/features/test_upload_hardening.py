"""Hostile uploads and requests: names, multipart, Range and numbers never reach a 500.

Each test sends what a hostile client would, then checks the refusal, that
nothing was stored, and that the server still answers everyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from pathlib import Path

import aiohttp
import pytest
from yarl import URL

from chatd.client import ApiError, ChatdClient
from chatd.gateway.context import SERVICES
from tests import media_files as mf
from tests.abuse_checks import health, still_serving
from tests.conftest import PASSWORD

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


# -- items 9 and 12: trickling and aborted bodies --------------------------------------


async def open_upload(base_url: str, token: str, length: int):
    """A raw connection that has sent the headers of a ``POST /media`` of ``length`` bytes."""
    url = URL(base_url)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(
        (
            f"POST /api/v1/media HTTP/1.1\r\nHost: {url.host}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/pdf\r\n"
            f"Content-Length: {length}\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    return reader, writer


@pytest.mark.parametrize(
    "config_overrides",
    [{"limits": {"upload_min_bytes_per_s": 2000, "upload_rate_window_s": 0.5}}],
)
async def test_an_upload_trickling_in_is_ended(server, base_url, user, tmp_path):
    alice = await user()
    reader, writer = await open_upload(base_url, alice.token, len(PDF))
    writer.write(PDF[:100])  # a start, then a byte every 0.2 s: far under 2000 bytes/s
    started = time.monotonic()
    answer = asyncio.create_task(reader.read(4096))
    with contextlib.suppress(ConnectionError):
        for byte in PDF[100:120]:
            if answer.done():
                break
            await asyncio.sleep(0.2)
            writer.write(bytes([byte]))
            await writer.drain()
    head = await asyncio.wait_for(answer, 5)
    assert head.startswith(b"HTTP/1.1 400"), head[:200]
    assert b"too slow" in head
    assert time.monotonic() - started < 3
    writer.close()
    assert [p for p in stored_files(tmp_path) if p.suffix == ".part"] == []
    # A client at a normal pace is not affected.
    assert (await alice.upload_media(PDF, "application/pdf"))["size"] == len(PDF)
    await still_serving(user, base_url)


async def test_a_client_aborting_mid_upload_is_a_disconnect_not_an_error(chatd_process):
    # A real `chatd serve`: aiohttp's test server cancels handlers on disconnect,
    # the production one lets them run into the lost connection.
    await chatd_process.start()
    url = chatd_process.url
    alice, bob, carol = (ChatdClient(url) for _ in range(3))
    try:
        for client, name in ((alice, "alice"), (bob, "bob"), (carol, "carol")):
            await client.register(name, PASSWORD)
            await client.login(name, PASSWORD)
        for _ in range(3):
            _, writer = await open_upload(url, alice.token, 5_000_000)
            writer.write(b"%PDF-1.4\n" + os.urandom(2_000_000))
            await writer.drain()
            await asyncio.sleep(0.3)  # the server is reading the body
            writer.transport.abort()  # gone, without finishing it
        await asyncio.sleep(0.5)
        status, _, _ = await health(url)
        assert status == 200
        async with carol.connect() as ws:
            sent = await bob.send_message(recipient_id=carol.user_id, content="still here")
            assert (await ws.next_event("new_message"))["data"]["message_id"] == sent["message_id"]
        async with aiohttp.ClientSession() as http, http.get(url + "/api/v1/metrics") as resp:
            metrics = await resp.text()
    finally:
        for client in (alice, bob, carol):
            await client.aclose()
    assert 'chatd_errors_total{code="internal"}' not in metrics
    log = (chatd_process.data_dir.parent / f"server-{chatd_process.port}.log").read_text()
    assert " ERROR " not in log and "Traceback" not in log, log[-3000:]
    staged = chatd_process.data_dir / "media" / "tmp"
    assert list(staged.rglob("*.part")) == []
