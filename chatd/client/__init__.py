"""Async client for the chatd v1 wire contract (REST + WebSocket).

``ChatdClient`` is one logged-in device over REST; ``client.connect()`` gives a
``WsSession`` for its WebSocket; every refusal is an ``ApiError`` carrying the
contract's error code. Depends only on aiohttp and orjson, never on the server.
"""

from chatd.client.errors import ApiError, code_for_status
from chatd.client.rest import ChatdClient
from chatd.client.ws import WsSession

__all__ = ["ApiError", "ChatdClient", "WsSession", "code_for_status"]
