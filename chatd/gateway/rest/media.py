"""``/media``: uploads (raw body or multipart, streamed) and downloads (ranged)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote

from aiohttp import BodyPartReader, hdrs, web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong

from chatd.core.errors import bad_request
from chatd.core.services.media import Served
from chatd.core.views import upload_view
from chatd.gateway import serving
from chatd.gateway.context import services
from chatd.gateway.errors import error_response
from chatd.gateway.http import caller, json_response

READ_CHUNK = 256 * 1024


async def upload(request: web.Request) -> web.Response:
    svc = services(request)
    who = await caller(request)
    if request.content_type.startswith("multipart/"):
        declared, filename, chunks = await _file_part(request)
        length = None  # the body holds more than the file
    else:
        declared = request.headers.get(hdrs.CONTENT_TYPE)
        filename = request.query.get("filename")
        chunks, length = request.content.iter_any(), request.content_length
    media = await svc.media.upload(
        who, chunks, declared_type=declared, filename=filename, content_length=length
    )
    svc.metrics.media_uploaded_bytes.inc(media.size)
    return json_response(upload_view(media), 201)


async def _file_part(request: web.Request) -> tuple[str | None, str | None, AsyncIterator[bytes]]:
    """The ``file`` part of a multipart body, ready to be streamed (parts before it skipped).

    aiohttp's parser reports a malformed body (no boundary, a boundary never
    found, an endless header) with ValueError or AssertionError: the client's
    mistake, so ``bad_request``, never a 500.
    """
    try:
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                raise bad_request("the multipart body has no part named file")
            if isinstance(part, BodyPartReader) and part.name == "file":
                # Browsers escape only '"', CR and LF in the name; aiohttp escapes more.
                filename = unquote(part.filename) if part.filename else None
                return part.headers.get(hdrs.CONTENT_TYPE), filename, _chunks(part)
            await part.release()
    except MALFORMED as exc:
        raise bad_request(f"the multipart body is malformed ({exc})") from None


#: What aiohttp's multipart parser raises on a body that does not follow RFC 7578.
MALFORMED = (ValueError, AssertionError, LineTooLong, BadHttpMessage)


async def _chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    """The part's bytes; a part whose closing boundary never comes is refused, not kept."""
    try:
        while not part.at_eof():
            if chunk := await part.read_chunk(READ_CHUNK):
                yield chunk
    except MALFORMED:
        raise bad_request("the file part ends without its closing boundary") from None


async def download(request: web.Request) -> web.StreamResponse:
    return await _serve(request, thumbnail=False)


async def thumbnail(request: web.Request) -> web.StreamResponse:
    return await _serve(request, thumbnail=True)


async def _serve(request: web.Request, *, thumbnail: bool) -> web.StreamResponse:
    svc = services(request)
    who = await caller(request)
    served = await svc.media.served(who, request.match_info["media_id"], thumbnail=thumbnail)
    etag = f'"{served.sha256}"'
    headers = _headers(served, etag, thumbnail)
    if serving.etag_matches(request.headers.get(hdrs.IF_NONE_MATCH), etag):
        return web.Response(status=304, headers=headers)
    size = served.size
    range_header = request.headers.get(hdrs.RANGE)
    if not serving.range_applies(request.headers.get(hdrs.IF_RANGE), etag):
        range_header = None
    try:
        span = serving.byte_range(range_header, size)
    except serving.Unsatisfiable:
        response = error_response("range_not_satisfiable", f"the file has {size} bytes")
        response.headers.update(headers)
        response.headers[hdrs.CONTENT_RANGE] = f"bytes */{size}"
        return response
    first, last = span if span is not None else (0, size - 1)
    length = last - first + 1
    chunks = svc.media.read(served.sha256, first, length)
    # The first chunk before the headers: a missing blob is still a clean 404.
    head = await anext(chunks, b"") if length > 0 and request.method != "HEAD" else b""
    response = web.StreamResponse(status=206 if span is not None else 200, headers=headers)
    response.content_length = length
    if span is not None:
        response.headers[hdrs.CONTENT_RANGE] = f"bytes {first}-{last}/{size}"
    sent = 0
    try:
        await response.prepare(request)
        if head:
            await response.write(head)
            sent += len(head)
            async for chunk in chunks:
                await response.write(chunk)
                sent += len(chunk)
        await response.write_eof()
    finally:
        close = getattr(chunks, "aclose", None)
        if close is not None:
            await close()
        svc.metrics.media_served_bytes.labels("thumbnail" if thumbnail else "file").inc(sent)
    return response


def _headers(served: Served, etag: str, thumbnail: bool) -> dict[str, Any]:
    mime = served.mime_type
    content_type = f"{mime}; charset=utf-8" if mime.startswith("text/") else mime
    filename = None if thumbnail else served.media.filename
    return {
        hdrs.CONTENT_TYPE: content_type,
        hdrs.ETAG: etag,
        hdrs.ACCEPT_RANGES: "bytes",
        # Immutable: a media id always names the same bytes. Private: it needs a token.
        hdrs.CACHE_CONTROL: "private, max-age=31536000, immutable",
        hdrs.CONTENT_DISPOSITION: serving.content_disposition(mime, filename),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
    }
