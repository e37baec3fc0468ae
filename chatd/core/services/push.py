"""Push targets (``/devices/{device_id}/push``), dead notifications for admins, test sends.

Providers and the endpoint check come from the edge (``chatd/app.py``): the
enabled providers by name, and ``check_endpoint`` (``chatd.push.guard``), which
refuses endpoints that point at loopback, private, link-local or multicast
addresses unless private endpoints are allowed.

Every change to a target goes through ``targets_changed`` (the user id), which
the app wires to a ``push_targets`` invalidation: the router carries it to
every node, whose notify step drops the user's cached targets at once.

Dead notifications are kept for admins ``[push] dead_retention_days``, then
deleted by a sweep every node runs (``run_dead_retention``: hourly, or more
often when the retention is shorter than a few hours; sweeps on several nodes
delete the same rows, harmlessly).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from chatd.core import validate
from chatd.core.auth import Caller
from chatd.core.errors import bad_request, forbidden, not_found
from chatd.core.ids import format_ts, new_id, now_ms
from chatd.core.ports.push import (
    InvalidTarget,
    Notification,
    PushProvider,
    PushResult,
    PushTarget,
)
from chatd.core.ports.storage import Storage

log = logging.getLogger(__name__)
FIELDS = frozenset({"provider", "token", "endpoint", "keys"})
DAY_MS = 86_400_000
#: The dead-item sweep runs at least this often (seconds).
SWEEP_INTERVAL_S = 3600.0


class PushService:
    def __init__(
        self,
        storage: Storage,
        targets_changed: Callable[[str], None],
        providers: Mapping[str, PushProvider],
        check_endpoint: Callable[[str], Awaitable[None]],
        *,
        dead_retention_days: float = 30.0,
    ) -> None:
        self._storage = storage
        self._dead_retention_ms = int(dead_retention_days * DAY_MS)
        self._targets_changed = targets_changed
        self.providers = providers
        self._check_endpoint = check_endpoint

    # -- a device's target --------------------------------------------------------

    async def _own(self, caller: Caller, device_id: str) -> None:
        """Only the device itself: another device of the user is ``forbidden``,
        anyone else's (or an unknown) device ``not_found``."""
        if device_id == caller.device_id:
            return
        mine = await self._storage.devices.list_for_user(caller.user_id)
        if any(d.device_id == device_id for d in mine):
            raise forbidden("only the device itself may manage its push target")
        raise not_found("device not found")

    async def set_target(self, caller: Caller, device_id: str, data: Any) -> None:
        await self._own(caller, device_id)
        data = validate.body(data)
        unknown = set(data) - FIELDS
        if unknown:
            raise bad_request(f"unknown field: {sorted(unknown)[0]}")
        name = validate.required_string(data, "provider", max_len=64)
        provider = self.providers.get(name)
        if provider is None:
            raise bad_request(f"push provider {name!r} is unknown or not enabled")
        token = validate.string(data, "token", required=False, min_len=1, max_len=4096)
        endpoint = validate.string(data, "endpoint", required=False, min_len=1, max_len=2048)
        keys = data.get("keys")
        p256dh = auth = None
        if keys is not None:
            keys = validate.body(keys)
            p256dh = validate.required_string(keys, "p256dh", max_len=256)
            auth = validate.required_string(keys, "auth", max_len=256)
        target = PushTarget(caller.user_id, device_id, name, token, endpoint, p256dh, auth)
        try:
            provider.check_target(target)
            if endpoint is not None:
                await self._check_endpoint(endpoint)
        except InvalidTarget as exc:
            raise bad_request(str(exc)) from None
        await self._storage.push.put_target(target, now_ms())
        self._targets_changed(caller.user_id)

    async def get_target(self, caller: Caller, device_id: str) -> dict[str, Any]:
        await self._own(caller, device_id)
        registered = await self._storage.push.get_target(device_id)
        if registered is None:
            raise not_found("this device has no push target")
        return {
            "provider": registered.target.provider,
            "endpoint": registered.target.endpoint,
            "registered_at": format_ts(registered.registered_at),
        }

    async def delete_target(self, caller: Caller, device_id: str) -> None:
        await self._own(caller, device_id)
        await self._storage.push.delete_target(device_id)
        self._targets_changed(caller.user_id)

    async def devices_revoked(self, user_id: str, device_ids: list[str]) -> None:
        """Revoked devices (logout, removal, password change) lose their targets."""
        for device_id in device_ids:
            await self._storage.push.delete_target(device_id)
        self._targets_changed(user_id)

    # -- administration (admin API, CLI) ---------------------------------------------

    async def retry_dead_notification(self, delivery_id: str) -> str:
        """Send a dead notification again with the same ``delivery_id``: ``"requeued"``, or
        ``"superseded"`` when a later notification of that device and chat waits already."""
        outcome = await self._storage.push.revive(delivery_id, now_ms())
        if outcome is None:
            raise not_found("no dead notification with that delivery_id")
        return outcome

    async def expire_dead(self, now: int | None = None) -> int:
        """Delete dead notifications older than the retention at ``now`` (default: the
        current time); how many."""
        cutoff = (now_ms() if now is None else now) - self._dead_retention_ms
        return await self._storage.push.expire_dead(cutoff)

    async def run_dead_retention(self) -> None:
        """Sweep now and then every interval (an hour, or a quarter of a shorter
        retention), until cancelled; failures are logged."""
        interval = min(SWEEP_INTERVAL_S, self._dead_retention_ms / 4000)
        while True:
            try:
                expired = await self.expire_dead()
                if expired:
                    log.info("%d dead push notifications past retention deleted", expired)
            except Exception:
                log.exception("push dead-item sweep failed")
            await asyncio.sleep(interval)

    async def send_test(self, device_id: str) -> tuple[PushTarget, PushResult]:
        """Send a test notification to a device now, outside the outbox; the provider's
        answer. Its payload has the usual keys with ``type: "test"``."""
        registered = await self._storage.push.get_target(device_id)
        if registered is None:
            raise not_found("this device has no push target")
        target = registered.target
        provider = self.providers.get(target.provider)
        if provider is None:
            raise bad_request(f"push provider {target.provider!r} is not enabled")
        payload = {
            "type": "test",
            "chat_id": "",
            "message_id": "",
            "seq": 0,
            "sender_id": "",
            "sender_name": "chatd",
            "chat_title": "Test notification",
            "unread_count": 0,
            "timestamp": format_ts(now_ms()),
        }
        note = Notification(new_id(), target, payload, collapse_key="chatd-test")
        (result,) = await provider.send([note])
        return target, result
