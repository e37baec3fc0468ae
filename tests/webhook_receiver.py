"""A webhook receiver for push tests: a real aiohttp server that checks each request's
signature as a real receiver would, records what it accepted, and answers as told."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from typing import Any

from aiohttp import web

SECRET = "a-test-secret-of-enough-length"


class WebhookReceiver:
    def __init__(self, secret: str = SECRET) -> None:
        self.secret = secret
        #: Bodies of correctly signed requests, in arrival order, with arrival times.
        self.received: list[dict[str, Any]] = []
        self.arrived_at: list[float] = []
        self.bad_signatures = 0
        #: Statuses for the next requests, in order (then 200); (status, Retry-After).
        self.answers: list[tuple[int, str | None]] = []
        self.hang = False
        #: Answer 503 (Retry-After: 0) to the first request of each delivery_id.
        self.fail_first_try = False
        self.url = ""
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._released = asyncio.Event()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/hook", self._handle)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app())
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/hook"

    async def stop(self) -> None:
        self._released.set()  # hung requests end
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        expected = "sha256=" + hmac.new(self.secret.encode(), raw, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("X-Chatd-Signature", ""), expected):
            self.bad_signatures += 1
            return web.Response(status=401)
        async with self._changed:
            self.received.append(json.loads(raw))
            self.arrived_at.append(time.monotonic())
            self._changed.notify_all()
        if self.hang:
            await self._released.wait()
        status, retry_after = self.answers.pop(0) if self.answers else (200, None)
        if self.fail_first_try:
            body = self.received[-1]
            tries = sum(r["delivery_id"] == body["delivery_id"] for r in self.received)
            status, retry_after = (503, "0") if tries == 1 else (200, None)
        headers = {"Retry-After": retry_after} if retry_after else {}
        return web.Response(status=status, headers=headers)

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait until ``count`` signed requests arrived in all; the requests so far."""
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: len(self.received) >= count), timeout
            )
        return list(self.received)

    def for_device(self, device_id: str) -> list[dict[str, Any]]:
        return [r for r in self.received if r["device_id"] == device_id]
