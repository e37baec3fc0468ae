"""This node's place in the cluster: its links, who owns what, and calls to peers.

``ClusterNode`` follows the membership (``Membership.alive()``): it keeps one
``Link`` to each other alive node, a ``Rendezvous`` over the alive ids for
chat owners and user homes, and dispatches the frames that arrive to the
handlers the router and presence register (``on``). Frames are msgpack lists
whose first item names their kind. ``call`` sends a request to a peer and
waits for its answer (forwarded writes); a peer that dies or does not answer
in time fails the call with ``unavailable``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

import msgpack

from chatd.cluster import links
from chatd.cluster.hrw import Rendezvous
from chatd.cluster.membership import Member, Membership
from chatd.cluster.seal import Sealer
from chatd.cluster.streams import StreamServer
from chatd.core.errors import ChatdError
from chatd.core.tasks import limited

log = logging.getLogger(__name__)

FrameHandler = Callable[[str, list[Any]], None]
CallHandler = Callable[[str, dict[str, Any]], "asyncio.Future[Any] | Any"]
#: How long a forwarded write may take on its owner before ``unavailable``.
CALL_TIMEOUT_S = 10.0
#: Membership changes remembered for ``owner_lost``.
RECENT_CHANGES = 32


class ClusterNode:
    def __init__(
        self,
        membership: Membership,
        sealer: Sealer,
        server: StreamServer,
        *,
        limits: links.LinkLimits | None = None,
        call_timeout_s: float = CALL_TIMEOUT_S,
    ) -> None:
        self.node_id = membership.node_id
        self.membership = membership
        self._sealer = sealer
        self._server = server
        self._limits = limits or links.LinkLimits()
        self._call_timeout = call_timeout_s
        self._session = links.new_session()
        self._links: dict[str, links.Link] = {}
        self._inbound = links.Inbound(self._frame, self._new_boot)
        self._handlers: dict[str, FrameHandler] = {}
        self._call_handlers: dict[str, CallHandler] = {}
        self._calls: dict[int, tuple[str, asyncio.Future[Any]]] = {}
        self._call_ids = itertools.count(1)
        self._change_listeners: list[Callable[[set[str], dict[str, set[str]]], None]] = []
        self._restart_listeners: list[Callable[[str, set[str]], None]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self.ring = Rendezvous([self.node_id])
        #: (when, the ring before) of the recent changes, newest last: the last one
        #: fences hand-overs; an owner lost two changes ago (b dies, then a) is
        #: still a lost owner.
        self._recent: deque[tuple[float, Rendezvous]] = deque(maxlen=RECENT_CHANGES)
        self._started = False
        server.register(links.KIND, self._inbound.accept, node_id=self.node_id)
        self.on("call", self._on_call)
        self.on("ret", self._on_return)

    # -- wiring ---------------------------------------------------------------

    def on(self, kind: str, handler: FrameHandler) -> None:
        self._handlers[kind] = handler

    def on_call(self, op: str, handler: CallHandler) -> None:
        self._call_handlers[op] = handler

    def on_change(self, listener: Callable[[set[str], dict[str, set[str]]], None]) -> None:
        """``listener(gone, lost)`` after the alive set changed: ``gone`` the node ids
        no longer alive, ``lost`` the users of frames that will never reach them."""
        self._change_listeners.append(listener)

    def on_restart(self, listener: Callable[[str, set[str]], None]) -> None:
        """``listener(peer, lost)`` when a peer restarted (its state is gone): ``lost``
        the users of frames it took lately and may not have passed on."""
        self._restart_listeners.append(listener)

    def start(self) -> None:
        """Begin following the membership; outside a running loop, nothing yet (the
        app's start-up calls it again)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._started:
            return
        self._started = True
        self.membership.subscribe(lambda _member: self.refresh())
        self.refresh()

    async def close(self, within: float = 5.0) -> None:
        """Finish serving forwarded calls and flush the links (bounded), then stop."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=within)
        while any(link.depth and link.state == "up" for link in self._links.values()):
            if loop.time() > deadline:
                break
            await asyncio.sleep(0.01)
        self._started = False
        for link in list(self._links.values()):
            await link.close()
        self._links.clear()
        for _, future in self._calls.values():
            if not future.done():
                future.set_exception(ChatdError("unavailable", "this node is stopping"))
        self._calls.clear()
        for task in list(self._tasks):
            task.cancel()

    # -- membership -----------------------------------------------------------

    def alive_ids(self) -> tuple[str, ...]:
        return self.ring.nodes

    def refresh(self) -> None:
        """Follow ``membership.alive()``: links to new peers, none to gone ones."""
        if not self._started:
            return
        alive: dict[str, Member] = {m.node_id: m for m in self.membership.alive()}
        alive.setdefault(self.node_id, Member(self.node_id, "", "alive", 0, 0))
        if set(alive) == set(self.ring.nodes) and all(
            link.address == alive[peer].address for peer, link in self._links.items()
        ):
            return
        gone = set(self.ring.nodes) - set(alive)
        lost: dict[str, set[str]] = {}
        moved: dict[str, set[str]] = {}
        for peer in list(self._links):
            member = alive.get(peer)
            if member is None or member.address != self._links[peer].address:
                link = self._links.pop(peer)
                if member is None:
                    lost[peer] = link.pending_users()
                    self._inbound.forget(peer)
                else:  # a new address: a restarted node (what it held is gone)
                    moved[peer] = link.recent_users()
                self._spawn(link.close())
        for peer, member in alive.items():
            if peer != self.node_id and peer not in self._links:
                link = links.Link(
                    self.node_id,
                    self._session,
                    peer,
                    member.address,
                    self._sealer,
                    self._limits,
                    self._lost_on_link,
                    self._restarted_link,
                )
                self._links[peer] = link
                link.start()
        for call_id, (peer, future) in list(self._calls.items()):
            if peer in gone:
                del self._calls[call_id]
                if not future.done():
                    future.set_exception(
                        ChatdError("unavailable", "the node handling this left; retry")
                    )
        previous = self.ring
        if previous.nodes == (self.node_id,):  # joining: the others owned everything
            previous = Rendezvous([n for n in alive if n != self.node_id] or [self.node_id])
        self.ring = Rendezvous(list(alive))
        self._recent.append((asyncio.get_running_loop().time(), previous))
        log.info("cluster: %d alive nodes", len(alive))
        for listener in self._change_listeners:
            try:
                listener(gone, lost)
            except Exception:
                log.exception("a cluster change listener failed")
        for peer, users in moved.items():
            self._restarted(peer, users)

    def _new_boot(self, peer: str) -> None:
        """``peer`` dials in from a new boot: what it had registered here is gone."""
        handler = self._handlers.get("peer_boot")
        if handler is not None:
            handler(peer, [])

    def _restarted_link(self, peer: str) -> None:
        link = self._links.get(peer)
        self._restarted(peer, link.recent_users() if link is not None else set())

    def _restarted(self, peer: str, lost: set[str]) -> None:
        log.info("cluster: %s restarted", peer)
        for listener in self._restart_listeners:
            try:
                listener(peer, lost)
            except Exception:
                log.exception("a cluster restart listener failed")

    def previous_owner(self, key: str, window_s: float) -> str | None:
        """Who owned ``key`` before the last change, if that was less than ``window_s``
        ago and it is another node still alive (it may still be writing it)."""
        if not self._recent:
            return None
        changed_at, before_ring = self._recent[-1]
        if asyncio.get_running_loop().time() - changed_at > window_s:
            return None
        before = before_ring(key)
        if before == self.node_id or before not in self.ring.nodes:
            return None
        return before

    def owner_lost(self, key: str, window_s: float) -> bool:
        """Whether an owner of ``key`` before any change of the last ``window_s`` is
        gone without leaving (dead or cut off): what it stored last may not have
        reached us. Every recent change counts, not only the last: when b dies and
        then a, a chat b owned passed through a, which owned it too briefly to
        route anything."""
        now = asyncio.get_running_loop().time()
        gone: set[str] = set()
        for changed_at, before_ring in reversed(self._recent):
            if now - changed_at > window_s:
                break
            before = before_ring(key)
            if before not in self.ring.nodes:
                gone.add(before)
        if not gone:
            return False
        # A node that left on purpose flushed what it held first (its drain).
        left = {m.node_id for m in self.membership.members() if m.status == "left"}
        return not gone <= left

    async def flushed(self, within: float = 3.0) -> bool:
        """Wait (bounded) until every peer acknowledged every frame queued so far."""
        targets = [(link, link.last_number) for link in self._links.values()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while any(link.acked_upto < target for link, target in targets):
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.002)
        return True

    # -- frames ----------------------------------------------------------------

    def send(
        self, peer: str, frame: list[Any], users: Iterable[str] = (), *, force: bool = False
    ) -> bool:
        """Queue ``frame`` for ``peer``; False if it was dropped (or the peer is unknown)."""
        link = self._links.get(peer)
        if link is None:
            return False
        return link.send(msgpack.packb(frame), users, force=force)

    def broadcast(self, frame: list[Any]) -> None:
        """``frame`` to every other alive node (never dropped: control frames only)."""
        body = msgpack.packb(frame)
        for link in self._links.values():
            link.send(body, force=True)

    def _frame(self, peer: str, body: bytes) -> None:
        frame = msgpack.unpackb(body)
        handler = self._handlers.get(frame[0])
        if handler is None:
            log.warning("unknown cluster frame %r from %s", frame[0], peer)
            return
        handler(peer, frame)

    def _lost_on_link(self, peer: str, users: set[str]) -> None:
        handler = self._handlers.get("lost_link")
        if handler is not None:
            handler(peer, [users])

    # -- calls -----------------------------------------------------------------

    async def call(self, peer: str, op: str, payload: dict[str, Any]) -> Any:
        """Run ``op`` on ``peer`` and return its answer; its refusal is raised here."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        call_id = next(self._call_ids)
        self._calls[call_id] = (peer, future)
        if not self.send(peer, ["call", call_id, op, payload], force=True):
            self._calls.pop(call_id, None)
            raise ChatdError("unavailable", "no link to the node handling this; retry")
        try:
            return await limited(self._call_timeout, asyncio.shield(future))
        except TimeoutError:
            raise ChatdError(
                "unavailable", "the node handling this did not answer; retry"
            ) from None
        finally:
            self._calls.pop(call_id, None)

    def _on_call(self, peer: str, frame: list[Any]) -> None:
        _, call_id, op, payload = frame
        handler = self._call_handlers.get(op)
        if handler is None:
            self.send(
                peer, ["ret", call_id, False, ["bad_request", f"unknown call {op}"]], force=True
            )
            return
        self._spawn(self._answer(peer, call_id, handler, payload))

    async def _answer(self, peer: str, call_id: int, handler: CallHandler, payload: Any) -> None:
        try:
            result = handler(peer, payload)
            if asyncio.isfuture(result) or asyncio.iscoroutine(result):
                result = await result
            reply = ["ret", call_id, True, result]
        except ChatdError as exc:
            reply = ["ret", call_id, False, [exc.code, exc.message, exc.retry_after]]
        except Exception as exc:
            log.exception("call %r from %s failed", payload, peer)
            reply = ["ret", call_id, False, ["unavailable", f"failed on its node: {exc}"]]
        self.send(peer, reply, force=True)

    def _on_return(self, peer: str, frame: list[Any]) -> None:
        _, call_id, ok, result = frame
        entry = self._calls.get(call_id)
        if entry is None or entry[1].done():
            return
        if ok:
            entry[1].set_result(result)
        else:
            code, message, *rest = result
            retry = rest[0] if rest else None
            entry[1].set_exception(ChatdError(code, message, retry_after=retry))

    # -- metrics ----------------------------------------------------------------

    def peers(self) -> list[dict[str, Any]]:
        """Per-peer state for metrics and ``GET /cluster``: rtt, queue depth, drops, state."""
        return [
            {
                "node_id": peer,
                "address": link.address,
                "state": link.state,
                "rtt_ms": None if link.rtt_s is None else round(link.rtt_s * 1000, 3),
                "queue": link.depth,
                "dropped": link.dropped,
                "sent": link.sent,
            }
            for peer, link in sorted(self._links.items())
        ]

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
