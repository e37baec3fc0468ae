"""Presence held in this process: the default, and a cluster of one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable


class LocalPresence:
    """``Presence`` for one process (several app instances in one process may share it)."""

    def __init__(self) -> None:
        self._sockets: dict[str, int] = {}  # user -> open sockets
        self._devices: dict[str, int] = {}  # device -> open sockets
        self._last_seen: dict[str, int] = {}
        self._typing: dict[tuple[str, str], asyncio.TimerHandle] = {}

    def connected(self, user_id: str, device_id: str) -> bool:
        self._devices[device_id] = self._devices.get(device_id, 0) + 1
        count = self._sockets.get(user_id, 0) + 1
        self._sockets[user_id] = count
        return count == 1

    def disconnected(self, user_id: str, device_id: str, at_ms: int) -> bool:
        left = self._devices.get(device_id, 0) - 1
        if left > 0:
            self._devices[device_id] = left
        else:
            self._devices.pop(device_id, None)
        count = self._sockets.get(user_id, 0) - 1
        if count > 0:
            self._sockets[user_id] = count
            return False
        if self._sockets.pop(user_id, None) is None:
            return False  # was not connected: nothing changes
        self._last_seen[user_id] = at_ms
        return True

    def is_online(self, user_id: str) -> bool:
        return user_id in self._sockets

    def sockets(self, user_id: str) -> int:
        return self._sockets.get(user_id, 0)

    def online_users(self, user_ids: Iterable[str]) -> list[str]:
        sockets = self._sockets
        return [u for u in user_ids if u in sockets]

    def device_online(self, device_id: str) -> bool:
        return device_id in self._devices

    def last_seen(self, user_id: str) -> int | None:
        return self._last_seen.get(user_id)

    def start_typing(
        self, chat_id: str, user_id: str, ttl_s: float, expired: Callable[[], None]
    ) -> bool:
        key = (chat_id, user_id)
        shown = self._typing.pop(key, None)
        if shown is not None:
            shown.cancel()

        def expire() -> None:
            if self._typing.get(key) is handle:
                del self._typing[key]
                expired()

        handle = asyncio.get_running_loop().call_later(ttl_s, expire)
        self._typing[key] = handle
        return shown is None

    def stop_typing(self, chat_id: str, user_id: str) -> bool:
        shown = self._typing.pop((chat_id, user_id), None)
        if shown is None:
            return False
        shown.cancel()
        return True

    def typing_chats(self, user_id: str) -> list[str]:
        return [chat_id for chat_id, typist in self._typing if typist == user_id]

    def watch(self, changed: Callable[[str, bool, int], None]) -> None:
        """Nothing to watch: every change here is reported by ``connected``/``disconnected``."""

    def close(self) -> None:
        for handle in self._typing.values():
            handle.cancel()
        self._typing.clear()
