"""The one way events leave the core: a chat's messages in seq order, then the router.

Appends complete in any order: a text message's SQLite batch may finish before
an image's, a ScyllaDB sequencer numbers drafts in its own time, a member load
may be needed for one message and not the next. Devices must still see each
chat in seq order (contract, Conventions), so every stored message of a chat
passes through that chat's *line* here:

- before its store call starts, a writer takes a ``Ticket`` (numbered in
  issue order, per chat);
- when the store answers, the message joins the line with a *barrier*: the
  number of the last ticket issued by then. Any local append that can get a
  lower seq had its ticket issued before this message's seq was assigned,
  hence at or below the barrier;
- the line releases messages in seq order, each only once every ticket up to
  its barrier is done (stored, refused or repeated), and only with its
  recipients known (the cached member list, loaded if missing, while the line
  waits).

A group change's system message passes through the same line: once it is
released, the chat's cached membership is invalidated on every node (through
the router), so a removed member receives nothing numbered after its removal.
Receipts, typing and presence have no seq; they go to the router directly.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from itertools import count

from chatd.core.e2e import ciphertext_view
from chatd.core.events import Event, Invalidation
from chatd.core.models import Ciphertext, Media, Message
from chatd.core.ports.router import Router
from chatd.core.services.chats import ChatService
from chatd.core.tasks import Background
from chatd.core.views import message_view

log = logging.getLogger(__name__)


class Ticket:
    """A place in a chat's line, taken before the store call that numbers a message."""

    __slots__ = ("done", "line", "number")

    def __init__(self, line: _Line, number: int) -> None:
        self.line = line
        self.number = number
        self.done = False


class _Entry:
    """A stored message waiting for its turn."""

    __slots__ = ("barrier", "event", "membership_changed", "recipients", "skip_device")

    def __init__(
        self,
        barrier: int,
        event: Event,
        skip_device: str | None,
        recipients: Iterable[str] | None,
        membership_changed: bool,
    ) -> None:
        self.barrier = barrier
        self.event = event
        self.skip_device = skip_device
        self.recipients = recipients
        self.membership_changed = membership_changed


class _Line:
    __slots__ = ("chat_id", "held", "issued", "loading", "open")

    def __init__(self, chat_id: str) -> None:
        self.chat_id = chat_id
        self.issued = 0
        self.open: deque[Ticket] = deque()  # tickets in issue order, done ones popped from the left
        self.held: list[tuple[int, int, _Entry]] = []  # heap by seq
        self.loading = False


def message_event(
    message: Message,
    media: Media | None = None,
    ciphertexts: Mapping[str, Ciphertext] | None = None,
) -> Event:
    """The ``new_message`` event of a stored message; an encrypted one carries each
    recipient device's ciphertext for that device alone."""
    per_device = None
    if ciphertexts:
        per_device = {d: {"ciphertext": ciphertext_view(c)} for d, c in ciphertexts.items()}
    return Event(
        "new_message",
        message_view(message, media=media),
        chat_id=message.chat_id,
        seq=message.seq,
        created_at=message.created_at,
        per_device=per_device,
    )


class FanOut:
    def __init__(self, router: Router, chats: ChatService) -> None:
        self._router = router
        self._chats = chats
        self._lines: dict[str, _Line] = {}
        self._order = count()  # tie-breaker in the heap (a seq is never held twice)
        self._background = Background()
        #: Told of each released message and its recipients (the push notify step).
        self.on_release: Callable[[Event, Iterable[str], str | None], None] | None = None

    # -- messages, in seq order per chat -------------------------------------

    def begin(self, chat_id: str) -> Ticket:
        """Take a place in the chat's line; call before the store call starts."""
        line = self._lines.get(chat_id)
        if line is None:
            line = self._lines[chat_id] = _Line(chat_id)
        line.issued += 1
        ticket = Ticket(line, line.issued)
        line.open.append(ticket)
        return ticket

    def message(
        self,
        ticket: Ticket,
        message: Message,
        media: Media | None = None,
        *,
        skip_device: str | None = None,
        recipients: Iterable[str] | None = None,
        membership_changed: bool = False,
        ciphertexts: Mapping[str, Ciphertext] | None = None,
    ) -> None:
        """The ticket's store call stored ``message``: deliver it in its turn.

        ``recipients`` defaults to the chat's members when it is released;
        ``membership_changed`` (a group change) invalidates the chat's cached
        members everywhere once it is released.
        """
        line = ticket.line
        event = message_event(message, media, ciphertexts)
        entry = _Entry(line.issued, event, skip_device, recipients, membership_changed)
        heapq.heappush(line.held, (message.seq, next(self._order), entry))
        self._close(ticket)

    def abandon(self, ticket: Ticket) -> None:
        """The ticket's store call stored nothing new (refused, failed, a repeat)."""
        self._close(ticket)

    def _close(self, ticket: Ticket) -> None:
        if ticket.done:
            return
        ticket.done = True
        line = ticket.line
        open_ = line.open
        while open_ and open_[0].done:
            open_.popleft()
        self._release(line)

    def _release(self, line: _Line) -> None:
        held = line.held
        while held and not line.loading:
            entry = held[0][2]
            if line.open and line.open[0].number <= entry.barrier:
                return  # an append issued before it may still take a lower seq
            recipients = entry.recipients
            if recipients is None:
                recipients = self._chats.cached_member_ids(line.chat_id)
                if recipients is None:
                    line.loading = True
                    self._background.spawn(self._load_members(line), "loading chat members")
                    return
            heapq.heappop(held)
            try:
                self._router.publish(recipients, entry.event, skip_device=entry.skip_device)
            except Exception:  # the message is stored: its devices get it on replay
                log.exception("publishing seq %s of chat %s failed", entry.event.seq, line.chat_id)
            if self.on_release is not None:
                try:
                    self.on_release(entry.event, recipients, entry.skip_device)
                except Exception:  # push is best effort: never stall the line
                    log.exception("push notify step failed for chat %s", line.chat_id)
            if entry.membership_changed:
                self.invalidate(Invalidation.membership(line.chat_id))
        if not held and not line.open and not line.loading:
            self._lines.pop(line.chat_id, None)

    async def _load_members(self, line: _Line) -> None:
        try:
            members = await self._chats.member_ids(line.chat_id)
        except Exception as exc:
            # Publish to nobody rather than stall the line: every device replays it.
            log.warning(
                "members of chat %s unavailable (%s): its devices get it on replay",
                line.chat_id,
                exc,
            )
            members = frozenset()
        line.loading = False
        if line.held and line.held[0][2].recipients is None:
            line.held[0][2].recipients = members
        self._release(line)

    # -- everything else ------------------------------------------------------

    def publish(
        self, user_ids: Iterable[str], event: Event, *, skip_device: str | None = None
    ) -> None:
        """An event without a seq (receipt, typing, presence): straight to the router."""
        self._router.publish(user_ids, event, skip_device=skip_device)

    def invalidate(self, invalidation: Invalidation) -> None:
        """Tell every node (this one first) to drop caches or close sockets."""
        self._router.invalidate(invalidation)

    async def settled(self, chat_id: str, within: float = 5.0) -> bool:
        """Wait (bounded) until the chat's line is empty: every write started here
        stored or refused, and every stored message published. A cluster's new
        owner of the chat waits for this on the old owner before it writes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while chat_id in self._lines:
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.002)
        return True

    def waiting(self) -> int:
        """Messages stored and not yet released (for tests and metrics)."""
        return sum(len(line.held) for line in self._lines.values())

    async def wait_idle(self, within: float) -> None:
        await self._background.wait(within)


def invalidation_handler(
    chats: ChatService,
    disconnect: Callable[[Iterable[str], str], None],
    disconnect_users: Callable[[Iterable[str], str], None] | None = None,
    forget_push_targets: Callable[[str], None] | None = None,
) -> Callable[[Invalidation], None]:
    """What one node does with an invalidation: forget cached members or push
    targets, close sockets.

    ``users`` (a cluster router's): these users' sockets here missed live events;
    close them so their clients reconnect and replay from storage.
    """

    def apply(invalidation: Invalidation) -> None:
        if invalidation.kind == "membership":
            for chat_id in invalidation.ids:
                chats.forget(chat_id)
        elif invalidation.kind == "devices":
            disconnect(invalidation.ids, invalidation.reason)
        elif invalidation.kind == "users" and disconnect_users is not None:
            disconnect_users(invalidation.ids, invalidation.reason)
        elif invalidation.kind == "push_targets" and forget_push_targets is not None:
            for user_id in invalidation.ids:
                forget_push_targets(user_id)
        else:
            log.warning("unknown invalidation %r ignored", invalidation)

    return apply
