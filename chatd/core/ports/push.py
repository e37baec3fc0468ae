"""Push: what the core needs from a push provider (webhook, Web Push, FCM, APNs, ...).

A provider is a plugin (entry-point group ``chatd.push``, factory
``create(settings, context)``) that turns notifications into requests to one
push service. It never decides who is notified or when to retry: the notify
service and the outbox do. It only sends a batch and says, per notification,
what happened, so that retries, pruning of dead targets and metrics are the
same for every provider.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class PushTarget:
    """Where one device is reached: what ``PUT /devices/{device_id}/push`` stored."""

    user_id: str
    device_id: str
    #: The provider's entry-point name: ``"webpush"``, ``"fcm"``, ...
    provider: str
    #: An opaque device token (FCM registration token, APNs device token, webhook token).
    token: str | None = None
    #: A URL the provider posts to (Web Push subscription, UnifiedPush endpoint).
    endpoint: str | None = None
    #: Web Push / UnifiedPush message encryption keys (RFC 8291), base64url.
    p256dh: str | None = None
    auth: str | None = None


@dataclass(frozen=True, slots=True)
class Notification:
    """One notification for one device.

    ``delivery_id`` is the same on every attempt, so a receiver can drop duplicates;
    ``collapse_key`` (the chat id) lets services that support it replace an older,
    undelivered notification of the same chat instead of stacking them.
    """

    delivery_id: str
    target: PushTarget
    #: The contract's payload object (``type``, ``chat_id``, ``message_id``, ``seq``, ...).
    payload: Mapping[str, Any]
    collapse_key: str
    #: 1 on the first try; providers may use it in logs, never to decide retries.
    attempt: int = 1


class Outcome(enum.Enum):
    #: The push service accepted it.
    DELIVERED = "delivered"
    #: Try again later (network error, timeout, 5xx, 429); ``retry_after_s`` if told.
    RETRY = "retry"
    #: The target no longer exists (404/410, FCM ``UNREGISTERED``, APNs
    #: ``Unregistered``): the device's target is deleted, nothing is retried.
    GONE = "gone"
    #: Refused for good (a 400, a bad key): not retried; the item is dead at once.
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class PushResult:
    outcome: Outcome
    #: The service's ``Retry-After`` (or equivalent), in seconds, for ``RETRY``.
    retry_after_s: float | None = None
    #: A short reason for metrics and admins (``"http_503"``, ``"timeout"``,
    #: ``"InvalidRegistration"``). Never a token, an endpoint or payload data.
    reason: str = ""


class InvalidTarget(ValueError):
    """A target this provider cannot use; the message is shown to the client."""


class PushProvider(Protocol):
    """One push service. Created unopened by its factory, opened and closed by chatd."""

    #: The entry-point name, as in ``[push.<name>]`` and ``PushTarget.provider``.
    name: str

    def check_target(self, target: PushTarget) -> None:
        """Raise ``InvalidTarget`` if ``target`` lacks what this provider needs
        (an endpoint, a token, keys). Called when a device registers its target;
        no network access (endpoint addresses are checked by chatd itself)."""

    async def open(self) -> None:
        """Acquire clients, keys and tokens; raise to stop start-up with a clear message."""

    async def send(self, batch: Sequence[Notification]) -> Sequence[PushResult]:
        """Send ``batch``; one result per notification, in the same order.

        Must not raise for a failure of one notification or of the service (that
        is a ``RETRY`` or ``FAILED`` result); must give up within its own timeout.
        """

    async def close(self) -> None:
        """Release what ``open`` acquired."""


# -- what the outbox keeps (the storage port's ``PushStore``) ---------------------


@dataclass(frozen=True, slots=True)
class RegisteredTarget:
    """A device's target as stored, with when it was registered (ms)."""

    target: PushTarget
    registered_at: int


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One waiting notification: at most one per (device, chat).

    A later message of the chat replaces it (``seq``, ``payload`` and a new
    ``delivery_id``); retries keep its ``delivery_id``. ``attempts`` counts the
    sends tried so far, ``due_at`` (ms) is when it may be tried next.
    """

    device_id: str
    chat_id: str
    user_id: str
    delivery_id: str
    seq: int
    payload: Mapping[str, Any]
    due_at: int
    attempts: int = 0
    last_error: str = ""


@dataclass(frozen=True, slots=True)
class DeadItem:
    """A notification that failed for good (``max_attempts`` or a ``FAILED`` answer),
    kept for admins with its last error until retried."""

    item: OutboxItem
    dead_at: int
