"""Local stand-ins for push services, and what the provider tests build on.

``FakeService`` is a real HTTP server (aiohttp) that records each request and
answers from a script; ``H2Service`` is a real HTTP/2 server (h2, cleartext with
prior knowledge) for APNs. The tests check requests the way the real service
would: decrypting bodies, verifying JWTs.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from chatd.core.ports.push import Notification, PushTarget
from chatd.push.context import PushContext

PAYLOAD: dict[str, Any] = {
    "type": "new_message",
    "chat_id": "chat-1",
    "message_id": "msg-1",
    "seq": 7,
    "sender_id": "user-2",
    "sender_name": "Bob",
    "chat_title": None,
    "unread_count": 3,
    "timestamp": "2026-01-02T03:04:05Z",
}


def context(tmp_path: Path, name: str, *, allow_private: bool = True, timeout_s: float = 2.0):
    return PushContext(
        section=f"push.{name}",
        data_dir=tmp_path,
        node_id="node-1",
        allow_private_endpoints=allow_private,
        timeout_s=timeout_s,
    )


def notification(target: PushTarget, **changes: Any) -> Notification:
    values: dict[str, Any] = {
        "delivery_id": "0b7c6f2e-8f4a-4c55-9a51-3d1f2f0e7a10",
        "target": target,
        "payload": PAYLOAD,
        "collapse_key": "chat-1",
    }
    return Notification(**{**values, **changes})


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Subscription:
    """A browser's (or UnifiedPush connector's) key pair and auth secret."""

    private_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    auth_secret: bytes = field(default_factory=lambda: os.urandom(16))

    @property
    def p256dh(self) -> str:
        raw = self.private_key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
        return b64url(raw)

    @property
    def auth(self) -> str:
        return b64url(self.auth_secret)


def write_ec_key(path: Path, *, pkcs8: bool = False) -> ec.EllipticCurvePrivateKey:
    """A P-256 key in PEM: SEC1 like ``openssl ecparam -genkey -noout``, or PKCS#8 like a .p8."""
    key = ec.generate_private_key(ec.SECP256R1())
    fmt = (
        serialization.PrivateFormat.PKCS8
        if pkcs8
        else serialization.PrivateFormat.TraditionalOpenSSL
    )
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
    )
    return key


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes


#: What a fake answers: status, headers, body; or a number of seconds to hang.
Answer = tuple[int, dict[str, str], bytes] | float


@dataclass
class Script:
    """Answers given in order, then ``default`` for every later request."""

    answers: list[Answer] = field(default_factory=list)
    default: Answer = (201, {}, b"")
    requests: list[Request] = field(default_factory=list)

    def next(self) -> Answer:
        return self.answers.pop(0) if self.answers else self.default


class FakeService:
    """An HTTP/1.1 server on 127.0.0.1: every request is recorded, and answered by
    ``route(request)`` if it returns an answer, else from the script."""

    def __init__(self, route: Callable[[Request], Answer | None] | None = None) -> None:
        self.script = Script()
        self._route = route
        self.url = ""

    @property
    def requests(self) -> list[Request]:
        return self.script.requests

    async def _handle(self, http: web.Request) -> web.Response:
        request = Request(
            http.path_qs, {k.lower(): v for k, v in http.headers.items()}, await http.read()
        )
        self.requests.append(request)
        answer = (self._route(request) if self._route else None) or self.script.next()
        if isinstance(answer, float):
            await asyncio.sleep(answer)
            return web.Response(status=201)
        status, headers, body = answer
        return web.Response(status=status, headers=headers, body=body)

    @contextlib.asynccontextmanager
    async def running(self, aiohttp_server: Any) -> AsyncIterator[FakeService]:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        server = await aiohttp_server(app)
        self.url = str(server.make_url("")).rstrip("/")
        yield self


class H2Service:
    """An HTTP/2 server speaking h2c with prior knowledge, as APNs speaks h2 over TLS."""

    def __init__(self) -> None:
        self.script = Script(default=(200, {}, b""))
        self.url = ""
        self.connections = 0

    @property
    def requests(self) -> list[Request]:
        return self.script.requests

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        conn.initiate_connection()
        writer.write(conn.data_to_send())
        streams: dict[int, tuple[dict[str, str], bytearray]] = {}
        tasks: set[asyncio.Task[None]] = set()

        async def answer(stream_id: int, headers: dict[str, str], body: bytes) -> None:
            self.requests.append(Request(headers.get(":path", ""), headers, body))
            reply = self.script.next()
            if isinstance(reply, float):
                await asyncio.sleep(reply)
                reply = (200, {}, b"")
            status, extra, data = reply
            response = [(":status", str(status)), *((k.lower(), v) for k, v in extra.items())]
            conn.send_headers(stream_id, response, end_stream=not data)
            if data:
                conn.send_data(stream_id, data, end_stream=True)
            writer.write(conn.data_to_send())

        try:
            while data := await reader.read(65536):
                for event in conn.receive_data(data):
                    if isinstance(event, h2.events.RequestReceived):
                        headers = {
                            (k.decode() if isinstance(k, bytes) else k): (
                                v.decode() if isinstance(v, bytes) else v
                            )
                            for k, v in event.headers
                        }
                        streams[event.stream_id] = (headers, bytearray())
                    elif isinstance(event, h2.events.DataReceived):
                        streams[event.stream_id][1].extend(event.data)
                        conn.acknowledge_received_data(
                            event.flow_controlled_length, event.stream_id
                        )
                    elif isinstance(event, h2.events.StreamEnded):
                        headers, body = streams.pop(event.stream_id)
                        task = asyncio.create_task(answer(event.stream_id, headers, bytes(body)))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                writer.write(conn.data_to_send())
        except (ConnectionError, h2.exceptions.ProtocolError):
            pass
        finally:
            for task in tasks:
                task.cancel()
            writer.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[H2Service]:
        server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        try:
            yield self
        finally:
            server.close()
            await server.wait_closed()
