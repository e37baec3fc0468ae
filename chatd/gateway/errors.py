"""The one table from error codes to HTTP statuses, and the middleware that applies it."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from chatd.core.errors import ChatdError

log = logging.getLogger(__name__)

STATUS: dict[str, int] = {
    "bad_request": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "payload_too_large": 413,
    "unsupported_media_type": 415,
    "range_not_satisfiable": 416,
    "rate_limited": 429,
    "unavailable": 503,
    "internal": 500,
}
_CODE_OF_STATUS = {status: code for code, status in STATUS.items()}
_CODE_OF_STATUS[405] = "bad_request"


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {**(details or {}), "code": code, "message": message}}


def error_response(
    code: str,
    message: str,
    retry_after: float | None = None,
    details: dict[str, Any] | None = None,
) -> web.Response:
    headers = {"Retry-After": str(max(1, math.ceil(retry_after)))} if retry_after else None
    return web.Response(
        body=orjson.dumps(error_body(code, message, details)),
        status=STATUS.get(code, 500),
        content_type="application/json",
        headers=headers,
    )


def classify(exc: BaseException, where: str) -> ChatdError:
    """Any exception as a contract error; the ones that are bugs are logged, not shown."""
    if isinstance(exc, ChatdError):
        return exc
    if isinstance(exc, web.HTTPException):
        if exc.status == 413:
            return ChatdError("payload_too_large", "the body is over the configured limit")
        code = _CODE_OF_STATUS.get(exc.status, "bad_request" if exc.status < 500 else "internal")
        message = "no such endpoint" if exc.status == 404 else exc.reason
        return ChatdError(code, message)  # type: ignore[arg-type]
    log.error("unhandled error in %s", where, exc_info=exc)
    return ChatdError("internal", "internal server error")  # type: ignore[arg-type]


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def client_gone(request: web.Request, exc: BaseException) -> bool:
    """Whether ``exc`` only says that the client hung up (mid-upload, say): not our error."""
    transport = request.transport
    return isinstance(exc, ConnectionError) and (transport is None or transport.is_closing())


def make_error_middleware(count: Callable[[str], None]) -> Any:
    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except Exception as exc:
            if client_gone(request, exc):
                # A disconnect: nobody reads the answer, nothing to count or alert on.
                log.debug("client left during %s %s: %s", request.method, request.path, exc)
                return error_response("bad_request", "the client went away")
            error = classify(exc, f"{request.method} {request.path}")
            count(error.code)
            return error_response(error.code, error.message, error.retry_after, error.details)

    return errors
