"""Small helpers shared by the REST handlers."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from chatd.core.auth import Caller
from chatd.core.errors import ChatdError, bad_request
from chatd.gateway.context import services


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def no_content() -> web.Response:
    return web.Response(status=204)


async def read_json(request: web.Request, *, optional: bool = False) -> Any:
    """The request body as JSON; a malformed or oversized body is a contract error."""
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ChatdError("payload_too_large", "the body is over the configured limit") from None
    if not raw:
        if optional:
            return None
        raise bad_request("a JSON body is required")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise bad_request("the body is not valid JSON") from None


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


async def caller(request: web.Request) -> Caller:
    return await services(request).accounts.authenticate(bearer_token(request))
