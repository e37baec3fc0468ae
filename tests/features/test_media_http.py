"""Serving media over HTTP: Range, ETag, Content-Type and a header-safe Content-Disposition."""

from __future__ import annotations

import os

import aiohttp
import pytest

from tests import media_files as mf

SIZE = 1000
DATA = b"%PDF-1.4\n" + os.urandom(SIZE - 9)


async def fetch(client, path: str, headers: dict[str, str] | None = None, method: str = "GET"):
    """(status, headers, body) of a raw request with the client's token."""
    hdrs = {"Authorization": f"Bearer {client.token}", **(headers or {})}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, client.api_url + path, headers=hdrs) as resp,
    ):
        return resp.status, resp.headers, await resp.read()


@pytest.fixture
async def pdf(user):
    alice = await user()
    media = await alice.upload_media(DATA, "application/pdf", filename="doc.pdf")
    return alice, f"/media/{media['media_id']}", media


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=0-99", 0, 99),
        ("bytes=100-", 100, SIZE - 1),
        ("bytes=-10", SIZE - 10, SIZE - 1),  # suffix: the last 10 bytes
        ("bytes=-5000", 0, SIZE - 1),  # a suffix longer than the file: all of it
        (f"bytes={SIZE - 1}-{SIZE + 500}", SIZE - 1, SIZE - 1),  # end clipped
        ("bytes=0-0", 0, 0),
        ("BYTES = 10 - 19", 10, 19),
    ],
)
async def test_a_satisfiable_range_is_206_with_its_content_range(pdf, header, first, last):
    alice, path, _ = pdf
    status, headers, body = await fetch(alice, path, {"Range": header})
    assert status == 206
    assert headers["Content-Range"] == f"bytes {first}-{last}/{SIZE}"
    assert int(headers["Content-Length"]) == last - first + 1
    assert body == DATA[first : last + 1]
    assert await alice.download_media(path.rsplit("/", 1)[1], byte_range=header) == body


@pytest.mark.parametrize("header", [f"bytes={SIZE}-", f"bytes={SIZE + 10}-{SIZE + 20}", "bytes=-0"])
async def test_a_range_past_the_end_is_416(pdf, header):
    alice, path, _ = pdf
    status, headers, body = await fetch(alice, path, {"Range": header})
    assert status == 416
    assert headers["Content-Range"] == f"bytes */{SIZE}"
    assert b"range_not_satisfiable" in body


@pytest.mark.parametrize(
    "header", ["bytes=0-1,5-6", "bytes=9-3", "items=0-5", "bytes=x-y", "bytes=-"]
)
async def test_ranges_that_cannot_be_honoured_get_the_whole_file(pdf, header):
    alice, path, _ = pdf
    status, headers, body = await fetch(alice, path, {"Range": header})
    assert status == 200 and body == DATA and "Content-Range" not in headers


async def test_etag_is_the_sha256_and_if_none_match_answers_304(pdf):
    alice, path, media = pdf
    status, headers, body = await fetch(alice, path)
    assert status == 200 and body == DATA
    etag = headers["ETag"]
    assert etag == f'"{media["sha256"]}"'
    assert headers["Accept-Ranges"] == "bytes"
    for condition in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        status, again, body = await fetch(alice, path, {"If-None-Match": condition})
        assert status == 304 and body == b"" and again["ETag"] == etag
    status, _, body = await fetch(alice, path, {"If-None-Match": '"something-else"'})
    assert status == 200 and body == DATA


async def test_if_range_honours_the_range_only_for_the_current_etag(pdf):
    alice, path, media = pdf
    etag = f'"{media["sha256"]}"'
    status, _, body = await fetch(alice, path, {"Range": "bytes=0-9", "If-Range": etag})
    assert status == 206 and body == DATA[:10]
    status, _, body = await fetch(alice, path, {"Range": "bytes=0-9", "If-Range": '"old"'})
    assert status == 200 and body == DATA


async def test_head_sends_the_headers_only(pdf):
    alice, path, _ = pdf
    status, headers, body = await fetch(alice, path, method="HEAD")
    assert status == 200 and body == b""
    assert int(headers["Content-Length"]) == SIZE


async def test_content_type_disposition_and_safety_headers(user):
    alice = await user()
    png = await alice.upload_media(mf.png(), "text/plain", filename="pic.png")
    text = await alice.upload_media(b"plain words\n", "text/plain", filename="notes.txt")
    _, headers, _ = await fetch(alice, f"/media/{png['media_id']}")
    assert headers["Content-Type"] == "image/png"
    assert headers["Content-Disposition"] == 'inline; filename="pic.png"'
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in headers["Content-Security-Policy"]
    assert "private" in headers["Cache-Control"]
    _, headers, _ = await fetch(alice, f"/media/{text['media_id']}")
    assert headers["Content-Type"] == "text/plain; charset=utf-8"
    assert headers["Content-Disposition"] == 'attachment; filename="notes.txt"'
    _, headers, _ = await fetch(alice, f"/media/{png['media_id']}/thumbnail")
    assert headers["Content-Type"] == "image/jpeg" and headers["Content-Disposition"] == "inline"


async def test_a_hostile_file_name_cannot_inject_headers(user):
    alice = await user()
    name = 'evil"\r\nSet-Cookie: owned=1\r\n\r\n<script>; résumé ✓.pdf'
    media = await alice.upload_media(DATA, "application/pdf", filename=name)  # ?filename=
    assert "\r" not in media["filename"] and "\n" not in media["filename"]
    status, headers, body = await fetch(alice, f"/media/{media['media_id']}")
    assert status == 200 and body == DATA
    assert "Set-Cookie" not in headers
    disposition = headers["Content-Disposition"]
    assert disposition == (
        'attachment; filename="evil_Set-Cookie: owned=1<script>; r_sum_ _.pdf"; '
        "filename*=UTF-8''evil%22Set-Cookie%3A%20owned%3D1%3Cscript%3E%3B%20r%C3%A9sum%C3%A9%20"
        "%E2%9C%93.pdf"
    )
    path_name = await alice.upload_media(DATA, "application/pdf", filename="../../etc/passwd")
    assert path_name["filename"] == "passwd"
    # Browsers escape '"', CR and LF in multipart names as %22, %0D, %0A.
    body = (
        b'--XyZ\r\nContent-Disposition: form-data; name="file"; '
        b'filename="a%0D%0ASet-Cookie: x=1%22.pdf"\r\nContent-Type: application/pdf\r\n\r\n'
        + DATA
        + b"\r\n--XyZ--\r\n"
    )
    multipart = await alice.request(
        "POST", "/media", data=body, headers={"Content-Type": "multipart/form-data; boundary=XyZ"}
    )
    assert multipart["filename"] == 'aSet-Cookie: x=1".pdf'
    _, headers, _ = await fetch(alice, f"/media/{multipart['media_id']}")
    assert headers["Content-Disposition"].startswith('attachment; filename="aSet-Cookie: x=1_.pdf"')


async def test_ranges_work_on_thumbnails_too(user):
    alice = await user()
    media = await alice.upload_media(mf.jpeg(800, 600), "image/jpeg")
    path = f"/media/{media['media_id']}/thumbnail"
    status, headers, whole = await fetch(alice, path)
    assert status == 200
    status, headers, tail = await fetch(alice, path, {"Range": "bytes=-100"})
    assert status == 206 and tail == whole[-100:]
    assert headers["Content-Range"] == f"bytes {len(whole) - 100}-{len(whole) - 1}/{len(whole)}"
