"""Presence across nodes, and the directory the router delivers by.

Each node counts its own sockets and tells each user's *home* (rendezvous
hashing of the user id over the alive nodes) which of its devices are
connected: ``reg`` frames on every socket open and close, ``set`` (the
user's whole picture on this node) when the user's home moves. The home keeps
the directory (user -> node -> device -> sockets), which the router reads to
deliver, and decides when a user goes online or offline anywhere: it calls
the ``watch`` callbacks there (the presence service announces it once, from
the home) and sends the user's new state (its devices and socket counts) to
every alive node.

Why every node gets that state: the ``Presence`` port answers synchronously
(a hot path must not wait on the network), and ``is_online``, ``sockets``
(the per-user socket limit) and ``device_online`` (push) are asked on any
node. So each node mirrors the online users' state, fed only by changes:
one small frame per node per socket opened or closed, never per event.
Memory per node grows with the users online in the whole cluster (about
525 bytes each, measured); see docs/architecture.md, "Cluster routing", for
the limit and the next step (mirrors scoped to the users a node asks about).

Typing timers stay on the node where the typist is connected: the events
reach the chat's members through the router, and the expiry fires there.
When the user's last socket on that node closes, its typing there ends at
once (the home, which decides "offline", holds no timer of it).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from chatd.cluster.node import ClusterNode
from chatd.presence.local import LocalPresence

log = logging.getLogger(__name__)

#: After the alive set changes, a home that gets an event for a user it does not
#: know yet remembers it this long: a registration arriving meanwhile means the
#: user's sockets missed it.
GRACE_S = 3.0

Changed = Callable[[str, bool, int], None]


class ClusterPresence:
    def __init__(self, node: ClusterNode) -> None:
        self._node = node
        self.node_id = node.node_id
        #: This node's sockets: user -> device -> sockets.
        self._here: dict[str, dict[str, int]] = {}
        #: The home this node registered each of its users with.
        self._registered_at: dict[str, str] = {}
        #: The directory of the users homed here: user -> node -> device -> sockets.
        self._directory: dict[str, dict[str, dict[str, int]]] = {}
        #: Online users anywhere: user -> (device -> sockets, home).
        self._mirror: dict[str, tuple[dict[str, int], str]] = {}
        self._mirror_devices: dict[str, int] = {}
        self._last_seen: dict[str, int] = {}
        self._typing = LocalPresence()
        #: The expiry callback of each typing timer here: (chat, user) -> callback.
        self._typing_ends: dict[tuple[str, str], Callable[[], None]] = {}
        self._watchers: list[Changed] = []
        self._missed_handlers: list[Callable[[list[str]], None]] = []
        self._grace_until = 0.0
        self._missed: set[str] = set()
        node.on("reg", self._on_reg)
        node.on("set", self._on_set)
        node.on("pst", self._on_state)
        node.on_change(self._changed)
        node.on_restart(self._restarted)
        node.on("peer_boot", self._forget_node)

    # -- the port: this node's sockets ----------------------------------------------

    def connected(self, user_id: str, device_id: str) -> bool:
        devices = self._here.setdefault(user_id, {})
        devices[device_id] = devices.get(device_id, 0) + 1
        return self._tell_home(user_id, device_id, 1, 0)

    def disconnected(self, user_id: str, device_id: str, at_ms: int) -> bool:
        devices = self._here.get(user_id)
        if devices is None or device_id not in devices:
            return False
        left = devices[device_id] - 1
        if left > 0:
            devices[device_id] = left
        else:
            del devices[device_id]
            if not devices:
                del self._here[user_id]
                self._end_typing(user_id)
        return self._tell_home(user_id, device_id, -1, at_ms)

    def _end_typing(self, user_id: str) -> None:
        """The user's last socket here closed: the typing it started here stops now."""
        for chat_id in self._typing.typing_chats(user_id):
            ended = self._typing_ends.pop((chat_id, user_id), None)
            if self._typing.stop_typing(chat_id, user_id) and ended is not None:
                ended()

    def watch(self, changed: Changed) -> None:
        self._watchers.append(changed)

    # -- the port: answers from the mirror ------------------------------------------

    def is_online(self, user_id: str) -> bool:
        return user_id in self._mirror or user_id in self._here

    def sockets(self, user_id: str) -> int:
        here = sum(self._here.get(user_id, {}).values())
        mirrored = self._mirror.get(user_id)
        return max(here, sum(mirrored[0].values()) if mirrored else 0)

    def online_users(self, user_ids: Iterable[str]) -> list[str]:
        return [u for u in user_ids if self.is_online(u)]

    def device_online(self, device_id: str) -> bool:
        return device_id in self._mirror_devices or any(
            device_id in devices for devices in self._here.values()
        )

    def last_seen(self, user_id: str) -> int | None:
        return self._last_seen.get(user_id)

    def start_typing(
        self, chat_id: str, user_id: str, ttl_s: float, expired: Callable[[], None]
    ) -> bool:
        key = (chat_id, user_id)

        def ended() -> None:
            self._typing_ends.pop(key, None)
            expired()

        self._typing_ends[key] = expired
        return self._typing.start_typing(chat_id, user_id, ttl_s, ended)

    def stop_typing(self, chat_id: str, user_id: str) -> bool:
        self._typing_ends.pop((chat_id, user_id), None)
        return self._typing.stop_typing(chat_id, user_id)

    def typing_chats(self, user_id: str) -> list[str]:
        return self._typing.typing_chats(user_id)

    def close(self) -> None:
        self._typing_ends.clear()
        self._typing.close()

    # -- for the router ---------------------------------------------------------------

    def on_missed(self, handler: Callable[[list[str]], None]) -> None:
        self._missed_handlers.append(handler)

    def locate(self, users: Iterable[str], hops: int) -> tuple[dict[str, list[str]], list[str]]:
        """Users homed here grouped by the nodes holding their sockets, and the users
        homed elsewhere by now (passed on once: ``hops`` counts how often already)."""
        per_node: dict[str, list[str]] = {}
        moved: list[str] = []
        ring, me, directory = self._node.ring, self.node_id, self._directory
        in_grace = time.monotonic() < self._grace_until
        for user_id in users:
            nodes = directory.get(user_id)
            if nodes is None:
                if hops == 0 and ring(user_id) != me:
                    moved.append(user_id)
                elif in_grace:
                    self._missed.add(user_id)
                continue
            for node_id in nodes:
                found = per_node.get(node_id)
                if found is None:
                    per_node[node_id] = [user_id]
                else:
                    found.append(user_id)
        return per_node, moved

    # -- registrations -------------------------------------------------------------------

    def _tell_home(self, user_id: str, device_id: str, delta: int, at_ms: int) -> bool:
        """Register with the user's home; True when it is this node and the user just
        went online or offline (the caller announces it; a remote home does, there)."""
        home = self._node.ring(user_id)
        if delta > 0:
            self._registered_at[user_id] = home
        elif user_id not in self._here:
            self._registered_at.pop(user_id, None)
        if home == self.node_id:
            return self._register(self.node_id, user_id, device_id, delta, at_ms, notify=False)
        self._node.send(home, ["reg", user_id, device_id, delta, at_ms], force=True)
        return False

    def _on_reg(self, peer: str, frame: list[Any]) -> None:
        _, user_id, device_id, delta, at_ms = frame
        self._register(peer, user_id, device_id, delta, at_ms)

    def _register(
        self,
        node_id: str,
        user_id: str,
        device_id: str,
        delta: int,
        at_ms: int,
        *,
        notify: bool = True,
    ) -> bool:
        if delta < 0 and device_id not in self._directory.get(user_id, {}).get(node_id, {}):
            return False  # a close without an open
        was_online = user_id in self._directory
        nodes = self._directory.setdefault(user_id, {})
        devices = nodes.setdefault(node_id, {})
        count = devices.get(device_id, 0) + delta
        if count > 0:
            devices[device_id] = count
        else:
            devices.pop(device_id, None)
        return self._settle(user_id, node_id, was_online, at_ms or _now_ms(), notify=notify)

    def _on_set(self, peer: str, frame: list[Any]) -> None:
        _, user_id, devices = frame
        self._replace(peer, user_id, devices)

    def _replace(self, node_id: str, user_id: str, devices: dict[str, int]) -> None:
        was_online = user_id in self._directory
        self._directory.setdefault(user_id, {})[node_id] = dict(devices)
        # A user whose home moved was online already: nothing to announce.
        self._settle(user_id, node_id, was_online, _now_ms(), notify=False)
        if user_id in self._missed:  # an event for it came before this registration
            self._missed.discard(user_id)
            for handler in self._missed_handlers:
                handler([user_id])

    def _settle(
        self, user_id: str, node_id: str, was_online: bool, at_ms: int, *, notify: bool = True
    ) -> bool:
        """Apply a directory change: mirror it everywhere; True if the user went on- or
        offline (and ``notify``: tell the watchers here)."""
        nodes = self._directory[user_id]
        if not nodes.get(node_id):
            nodes.pop(node_id, None)
        if not nodes:
            del self._directory[user_id]
        online = user_id in self._directory
        total: dict[str, int] = {}
        for devices in nodes.values():
            for device_id, count in devices.items():
                total[device_id] = total.get(device_id, 0) + count
        state = ["pst", user_id, total, at_ms]
        self._apply_state(self.node_id, state)
        self._node.broadcast(state)
        if online == was_online:
            return False
        if notify:
            for changed in self._watchers:
                try:
                    changed(user_id, online, at_ms)
                except Exception:
                    log.exception("a presence watcher failed")
        return True

    # -- the mirror ---------------------------------------------------------------------

    def _on_state(self, peer: str, frame: list[Any]) -> None:
        self._apply_state(peer, frame)

    def _apply_state(self, home: str, frame: list[Any]) -> None:
        _, user_id, devices, at_ms = frame
        old = self._mirror.pop(user_id, None)
        if old is not None:
            for device_id in old[0]:
                self._forget_device(device_id)
        if devices:
            self._mirror[user_id] = (devices, home)
            for device_id in devices:
                self._mirror_devices[device_id] = self._mirror_devices.get(device_id, 0) + 1
        else:
            self._last_seen[user_id] = at_ms
            if len(self._last_seen) > 100_000:
                self._last_seen.clear()  # storage has it (``users.last_seen``)

    def _forget_device(self, device_id: str) -> None:
        left = self._mirror_devices.get(device_id, 0) - 1
        if left > 0:
            self._mirror_devices[device_id] = left
        else:
            self._mirror_devices.pop(device_id, None)

    # -- the alive set changed -----------------------------------------------------------

    def _changed(self, gone: set[str], lost: dict[str, set[str]]) -> None:
        ring, me = self._node.ring, self.node_id
        self._grace_until = time.monotonic() + GRACE_S
        self._missed.clear()
        # Mirror entries kept by a gone home: the new home sends them again.
        for user_id, (devices, home) in list(self._mirror.items()):
            if home in gone:
                del self._mirror[user_id]
                for device_id in devices:
                    self._forget_device(device_id)
        # The directory: sockets on gone nodes are closed; users homed elsewhere now
        # are the new home's (every node sends it their picture).
        now = _now_ms()
        for user_id in list(self._directory):
            nodes = self._directory[user_id]
            for node_id in gone & nodes.keys():
                nodes[node_id] = {}
                self._settle(user_id, node_id, True, now)
            if user_id in self._directory and ring(user_id) != me:
                del self._directory[user_id]
        # Our own sockets: register with each user's new home.
        for user_id, devices in self._here.items():
            home = ring(user_id)
            if self._registered_at.get(user_id) == home:
                continue
            self._registered_at[user_id] = home
            if home == me:
                self._replace(me, user_id, devices)
            else:
                self._node.send(home, ["set", user_id, dict(devices)], force=True)

    def _forget_node(self, peer: str, _frame: list[Any]) -> None:
        """``peer`` restarted: the sockets it had registered here are closed."""
        now = _now_ms()
        for user_id in list(self._directory):
            nodes = self._directory[user_id]
            if peer in nodes:
                nodes[peer] = {}
                self._settle(user_id, peer, True, now)

    def _restarted(self, peer: str, lost: set[str]) -> None:
        """``peer`` came back empty: tell it again where our users are connected
        (those it is home of) and the state of the users homed here (its mirror)."""
        ring = self._node.ring
        for user_id, devices in self._here.items():
            if ring(user_id) == peer:
                self._node.send(peer, ["set", user_id, dict(devices)], force=True)
        for user_id, nodes in self._directory.items():
            total: dict[str, int] = {}
            for devices in nodes.values():
                for device_id, count in devices.items():
                    total[device_id] = total.get(device_id, 0) + count
            self._node.send(peer, ["pst", user_id, total, 0], force=True)

    def stats(self) -> dict[str, int]:
        return {"homed_users": len(self._directory), "mirrored_users": len(self._mirror)}


def _now_ms() -> int:
    return int(time.time() * 1000)
