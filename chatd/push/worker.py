"""The outbox worker: claims due notifications and sends them through their providers.

Each provider has its own bounded queue and ``concurrency`` sender tasks, so a
slow or failing service holds at most ``queue_size`` notifications and its own
senders, never the message path or another provider. A claim is a lease of
``lease_ms`` in the shared store: no other worker (on this node or another)
takes the item meanwhile. A sender drops an item whose lease is about to end
instead of sending it late (it is claimed again, by anyone, once the lease ends).

Outcomes (``Outcome``): delivered -> the item is deleted; gone -> the device's
target and waiting items are deleted; retry -> tried again after an exponential
backoff with jitter from ``retry_base_ms`` (at least the service's Retry-After),
until ``max_attempts`` attempts in all, then dead; failed -> dead at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from chatd.core.errors import ChatdError
from chatd.core.ids import now_ms
from chatd.core.ports.presence import Presence
from chatd.core.ports.push import (
    Notification,
    OutboxItem,
    Outcome,
    PushProvider,
    PushResult,
    PushTarget,
)
from chatd.core.ports.storage import Storage
from chatd.core.tasks import limited

log = logging.getLogger(__name__)
#: Backoff never grows past an hour.
MAX_DELAY_MS = 3_600_000
#: How long ``stop`` waits for its tasks to end.
STOP_TIMEOUT_S = 5.0
#: How often the outbox depth gauge is refreshed.
DEPTH_INTERVAL_S = 10.0


@dataclass(frozen=True)
class WorkerSettings:
    retry_base_ms: int = 1000
    max_attempts: int = 8
    timeout_s: float = 10.0
    concurrency: int = 8
    queue_size: int = 1000
    batch_size: int = 100
    poll_interval_s: float = 1.0

    @property
    def lease_ms(self) -> int:
        """Long enough for a queued item to be sent (several timeouts), then free again."""
        return max(30_000, int(self.timeout_s * 4000))


@dataclass
class PushMetrics:
    """Callbacks into chatd's metrics (``chatd/metrics.py``)."""

    sent: Callable[[str], None] = lambda provider: None
    failed: Callable[[str, str], None] = lambda provider, reason: None
    dead: Callable[[str], None] = lambda provider: None
    depth: Callable[[int], None] = lambda depth: None


def backoff_ms(
    attempts: int, base_ms: int, retry_after_s: float | None, rand: Callable[[], float]
) -> int:
    """Delay before the next attempt after ``attempts`` failed ones: base x 2^(n-1),
    capped at an hour, with "equal jitter" (half fixed, half random), and never
    shorter than the service's Retry-After."""
    delay = min(MAX_DELAY_MS, base_ms * 2 ** max(0, attempts - 1))
    delay = delay // 2 + int(rand() * (delay - delay // 2))
    if retry_after_s is not None:
        delay = max(delay, int(retry_after_s * 1000))
    return delay


_Claimed = tuple[OutboxItem, PushTarget, int]  # the item, its target, when its lease ends


class PushWorker:
    def __init__(
        self,
        storage: Storage,
        presence: Presence,
        providers: Mapping[str, PushProvider],
        settings: WorkerSettings,
        *,
        metrics: PushMetrics | None = None,
        forget_targets: Callable[[str], None] = lambda user_id: None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._storage = storage
        self._presence = presence
        self._providers = providers
        self._settings = settings
        self._metrics = metrics or PushMetrics()
        self._forget_targets = forget_targets
        self._rand = rand
        self._queues: dict[str, asyncio.Queue[_Claimed]] = {
            name: asyncio.Queue(settings.queue_size) for name in providers
        }
        self._kicked: dict[str, None] = {}
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        #: Notifications waiting in the outbox at the last count (every ``DEPTH_INTERVAL_S``):
        #: what the gauge, ``/admin/stats`` and ``/admin/push`` show, without a scan each.
        self.depth = 0

    # -- lifetime --------------------------------------------------------------------

    def start(self) -> None:
        if not self._providers:
            return
        self._tasks.append(asyncio.create_task(self._claim_loop(), name="push-claims"))
        self._tasks.append(asyncio.create_task(self._depth_loop(), name="push-depth"))
        for name, provider in self._providers.items():
            for n in range(self._settings.concurrency):
                task = asyncio.create_task(self._sender(name, provider), name=f"push-{name}-{n}")
                self._tasks.append(task)

    async def stop(self) -> None:
        """Stop claiming and sending; claimed items are taken again when their leases end.

        Bounded: a provider that ignores cancellation cannot hold up shutdown."""
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            _, stuck = await asyncio.wait(self._tasks, timeout=STOP_TIMEOUT_S)
            for task in stuck:
                log.warning("push task %s did not stop in %.0f s", task.get_name(), STOP_TIMEOUT_S)
        self._tasks.clear()

    def kick(self, device_ids: Sequence[str]) -> None:
        """New notifications for these devices: claim them now, not at the next poll."""
        if self._providers:
            self._kicked.update(dict.fromkeys(device_ids))
            self._wake.set()

    # -- claiming ----------------------------------------------------------------------

    def _room(self) -> int:
        return min(
            self._settings.batch_size, sum(q.maxsize - q.qsize() for q in self._queues.values())
        )

    async def _claim_loop(self) -> None:
        poll = self._settings.poll_interval_s
        next_scan = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await limited(max(0.0, next_scan - time.monotonic()), self._wake.wait())
            self._wake.clear()
            try:
                if self._kicked:
                    devices, self._kicked = list(self._kicked), {}
                    for start in range(0, len(devices), 500):
                        await self._claim(devices[start : start + 500])
                if time.monotonic() >= next_scan:
                    next_scan = time.monotonic() + poll
                    while await self._claim(None) >= self._settings.batch_size:
                        pass  # more may be due: go on while whole batches come back
            except ChatdError as exc:
                log.warning("push outbox unavailable: %s", exc)
                next_scan = time.monotonic() + poll
            except Exception:
                log.exception("push claim loop failed; trying again")
                next_scan = time.monotonic() + poll

    async def _claim(self, devices: list[str] | None) -> int:
        room = self._room()
        if room <= 0:
            return 0
        now = now_ms()
        lease = self._settings.lease_ms
        items = await self._storage.push.claim(now, lease, room, devices)
        targets = await asyncio.gather(*(self._storage.push.get_target(i.device_id) for i in items))
        for item, registered in zip(items, targets, strict=True):
            if registered is None or self._presence.device_online(item.device_id):
                await self._storage.push.done(item)  # no target, or it is connected: nothing to do
                continue
            target = registered.target
            queue = self._queues.get(target.provider)
            if queue is None:
                await self._finish(
                    item, target.provider, PushResult(Outcome.FAILED, reason="provider_disabled")
                )
                continue
            # A full queue leaves the item claimed: taken again when its lease ends.
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait((item, target, now + lease))
        return len(items)

    async def _depth_loop(self) -> None:
        while True:
            with contextlib.suppress(ChatdError):
                self.depth = await self._storage.push.depth()
                self._metrics.depth(self.depth)
            await asyncio.sleep(DEPTH_INTERVAL_S)

    # -- sending -------------------------------------------------------------------------

    async def _sender(self, name: str, provider: PushProvider) -> None:
        queue = self._queues[name]
        margin_ms = int(self._settings.timeout_s * 1000) + 1000
        while True:
            batch = [await queue.get()]
            while len(batch) < self._settings.batch_size and not queue.empty():
                batch.append(queue.get_nowait())
            now = now_ms()
            batch = [c for c in batch if c[2] - now > margin_ms]  # too late: left to the lease
            if batch:
                try:
                    await self._send(name, provider, batch)
                except ChatdError as exc:
                    log.warning("push results not stored (%s): the items are retried", exc)
                except Exception:
                    log.exception("push sender %s failed", name)

    async def _send(self, name: str, provider: PushProvider, batch: list[_Claimed]) -> None:
        notes = [
            Notification(item.delivery_id, target, item.payload, item.chat_id, item.attempts + 1)
            for item, target, _ in batch
        ]
        try:
            results = await limited(self._settings.timeout_s + 5, provider.send(notes))
            if len(results) != len(notes):
                raise ValueError(f"{len(results)} results for {len(notes)} notifications")
        except TimeoutError:
            results = [PushResult(Outcome.RETRY, reason="timeout")] * len(notes)
        except Exception as exc:  # a provider must not raise; one that does is retried
            log.warning("push provider %s raised %s", name, type(exc).__name__)
            results = [PushResult(Outcome.RETRY, reason="provider_error")] * len(notes)
        for (item, target, _), result in zip(batch, results, strict=True):
            await self._finish(item, target.provider, result, target)

    async def _finish(
        self, item: OutboxItem, provider: str, result: PushResult, target: PushTarget | None = None
    ) -> None:
        push = self._storage.push
        outcome, reason = result.outcome, result.reason or result.outcome.value
        log.debug(
            "push %s to device %s: %s %s", item.delivery_id, item.device_id, outcome.value, reason
        )
        if outcome is Outcome.DELIVERED:
            self._metrics.sent(provider)
            await push.done(item)
            return
        self._metrics.failed(provider, reason)
        attempts = item.attempts + 1
        if outcome is Outcome.GONE:
            await push.delete_target(item.device_id)
            self._forget_targets(item.user_id)
            log.info("push target of device %s is gone (%s): deleted", item.device_id, reason)
        elif outcome is Outcome.RETRY and attempts < self._settings.max_attempts:
            delay = backoff_ms(
                attempts, self._settings.retry_base_ms, result.retry_after_s, self._rand
            )
            await push.retry_later(item, attempts, now_ms() + delay, reason)
        elif await push.bury(item, attempts, reason, now_ms()):
            self._metrics.dead(provider)
            log.info("push %s to device %s is dead after %d attempts: %s",
                     item.delivery_id, item.device_id, attempts, reason)  # fmt: skip
