"""One device's end-to-end encryption, without the network: keys, sealing, opening.

``E2EDevice`` owns the device's store: its own keys (what ``PUT /keys`` uploads),
its sessions and known identities (``SessionBook``), and the messages it has
decrypted. ``seal`` makes the ``ciphertexts`` map of a message for a list of
devices; ``open`` turns a received message object into a ``Received``, exactly
once per message_id: a second delivery returns the kept result marked
``duplicate`` instead of decrypting again (the ratchet would refuse, and the
text would be lost if the first delivery was never acknowledged). The network
side (``E2EClient``) only moves these dicts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from chatd.client.e2e import protocol, trust, wire
from chatd.client.e2e.errors import E2EError, IdentityChanged, MalformedMessage, StoreMismatch
from chatd.client.e2e.sessions import Duplicate, Peer, SessionBook, bundle_of
from chatd.client.e2e.store import E2EStore


@dataclass(frozen=True, slots=True)
class Received:
    """A message as the app sees it, decrypted (``text``) or with an ``error``.

    ``duplicate``: this message_id was opened before (the result is the kept one).
    ``identity_changed``: the sending device presented a new identity key; see
    ``E2EDevice.accept_identity``. ``error``: why there is no text
    (``"no_ciphertext"``, ``"undecryptable"``, ``"malformed"``, ``"mismatch"``).
    """

    message_id: str
    chat_id: str
    seq: int
    sender_id: str
    sender_device: str | None
    type: str
    text: str | None
    client_msg_id: str | None
    timestamp: str | None
    encrypted: bool
    duplicate: bool = False
    identity_changed: bool = False
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class E2EDevice:
    """The end-to-end state of device ``device_id`` of ``user_id``, kept in ``store``.

    Every public coroutine runs under one lock, so a send and a receive never
    interleave their ratchet updates.
    """

    def __init__(self, store: E2EStore, user_id: str, device_id: str) -> None:
        account = store.get("self", "account")
        if account is None:
            account = {"user_id": user_id, "device_id": device_id}
            store.put("self", "account", account)
        elif (account["user_id"], account["device_id"]) != (user_id, device_id):
            raise StoreMismatch(
                f"this store belongs to {account['user_id']}/{account['device_id']}, "
                f"not {user_id}/{device_id}"
            )
        self.store = store
        self.user_id = user_id
        self.device_id = device_id
        self.lock = asyncio.Lock()
        with store.transaction():
            state = store.get("self", "keys")
            if state is None:
                keys = protocol.new_device_keys()
                state = {"next_key_id": 1, "spk_id": 1, "unpublished": [], "spk_published": False}
                self._state = state
                self._keys = keys
                self._add_prekeys(protocol.PREKEY_TARGET)
            else:
                self._state = state
                self._keys = protocol.load_device_keys(state["x3dh"])
        self.sessions = SessionBook(store, (user_id, device_id), self._keys)

    # -- own keys ------------------------------------------------------------------

    def _save_keys(self) -> None:
        self._state["x3dh"] = self._keys.json
        self.store.put("self", "keys", self._state)

    def _add_prekeys(self, count: int) -> None:
        before = self._keys.bundle.pre_keys
        self._keys.generate_pre_keys(count)
        fresh = sorted(self._keys.bundle.pre_keys - before)
        first = self._state["next_key_id"]
        self._state["unpublished"] += [[first + i, wire.b64(k)] for i, k in enumerate(fresh)]
        self._state["next_key_id"] = first + len(fresh)
        self._save_keys()

    @property
    def published(self) -> bool:
        """Whether this store's identity key ever reached the server."""
        return bool(self._state.get("published"))

    @property
    def identity_key(self) -> bytes:
        return self._keys.bundle.identity_key

    def add_prekeys(self, count: int) -> None:
        """Make ``count`` one-time prekeys more; they go out with the next ``upload_body``."""
        if count > 0:
            with self.store.transaction():
                self._add_prekeys(count)

    def rotate_signed_prekey_if_due(
        self, period_s: float = protocol.SIGNED_PREKEY_PERIOD_S
    ) -> bool:
        """Replace the signed prekey once it is older than ``period_s``; True if replaced."""
        if self._keys.signed_pre_key_age() <= period_s:
            return False
        with self.store.transaction():
            self._keys.rotate_signed_pre_key()
            self._state["spk_id"] += 1
            self._state["spk_published"] = False
            self._save_keys()
        return True

    def upload_body(self) -> dict[str, Any] | None:
        """The ``PUT /keys`` body for whatever the server does not have yet, or None."""
        if self._state["spk_published"] and not self._state["unpublished"]:
            return None
        bundle = self._keys.bundle
        return {
            "identity_key": wire.b64(bundle.identity_key),
            "signed_prekey": {
                "key_id": self._state["spk_id"],
                "public_key": wire.b64(bundle.signed_pre_key),
                "signature": wire.b64(bundle.signed_pre_key_sig),
            },
            "one_time_prekeys": [
                {"key_id": key_id, "public_key": pub} for key_id, pub in self._state["unpublished"]
            ],
        }

    def uploaded(self, body: dict[str, Any]) -> None:
        """The server accepted ``body`` (from ``upload_body``): do not send it again."""
        sent = {p["key_id"] for p in body["one_time_prekeys"]}
        with self.store.transaction():
            self._state["unpublished"] = [p for p in self._state["unpublished"] if p[0] not in sent]
            if body["signed_prekey"]["key_id"] == self._state["spk_id"]:
                self._state["spk_published"] = True
            self._state["published"] = True
            self._save_keys()

    # -- sessions and trust ----------------------------------------------------------

    async def start_session(self, user_id: str, bundle: dict[str, Any]) -> None:
        """Start a session with one device of ``GET /keys/{user_id}`` (its ``devices`` entry).

        Raises IdentityChanged when a known device presents a new identity key (the
        new key is recorded as offered, see ``accept_identity``).
        """
        peer = (user_id, bundle["device_id"])
        async with self.lock:
            with self.store.transaction():
                started = await self.sessions.start(peer, bundle_of(bundle))
        if not started:
            raise IdentityChanged([peer])

    async def meet(self, user_id: str, bundle: dict[str, Any]) -> None:
        """Take one device of ``GET /keys/{user_id}``: start a session unless one exists.

        Raises IdentityChanged when the bundle's identity key is not the trusted one.
        """
        peer = (user_id, bundle["device_id"])
        if not self.has_session(*peer):
            await self.start_session(user_id, bundle)
            return
        with self.store.transaction():
            changed = self.sessions.see_identity(peer, bundle_of(bundle).identity_key)
        if changed:
            raise IdentityChanged([peer])

    def has_session(self, user_id: str, device_id: str) -> bool:
        return self.sessions.has_session((user_id, device_id))

    def accept_identity(self, user_id: str, device_id: str) -> None:
        """Trust the new identity key a device presents (after the user checked it)."""
        with self.store.transaction():
            self.sessions.accept_identity((user_id, device_id))

    def identity_changed(self, user_id: str, device_id: str) -> bool:
        return self.sessions.changed((user_id, device_id))

    def safety_number(self, user_id: str) -> str:
        """The 60-digit safety number of this user and ``user_id``, over every device
        identity key known on each side (this device's own included)."""
        mine = [self.identity_key, *self.sessions.identities(self.user_id).values()]
        theirs = self.sessions.identities(user_id).values()
        return trust.safety_number(self.user_id, mine, user_id, theirs)

    # -- messages --------------------------------------------------------------------

    async def seal(
        self,
        recipients: Iterable[Peer],
        *,
        chat_id: str,
        client_msg_id: str,
        content: str,
        type: str = "text",
    ) -> dict[str, dict[str, str]]:
        """The ``ciphertexts`` map (device_id -> ``{type, body}``) of one message.

        Every recipient needs a session (``start_session``); the ratchet states are
        saved advanced before this returns, so a key is never used twice.
        """
        payload = wire.pad(
            {
                "v": 1,
                "chat_id": chat_id,
                "client_msg_id": client_msg_id,
                "type": type,
                "content": content,
                "from": self.user_id,
                "dev": self.device_id,
            }
        )
        out: dict[str, dict[str, str]] = {}
        async with self.lock:
            with self.store.transaction():
                for peer in recipients:
                    out[peer[1]] = await self.sessions.encrypt(peer, payload)
        return out

    def record_sent(
        self, ack: dict[str, Any], *, content: str, type: str, client_msg_id: str
    ) -> None:
        """Keep a message this device sent (the server holds no readable copy of it)."""
        with self.store.transaction():
            self.store.put_message(
                Received(
                    message_id=ack["message_id"],
                    chat_id=ack["chat_id"],
                    seq=int(ack["seq"]),
                    sender_id=self.user_id,
                    sender_device=self.device_id,
                    type=type,
                    text=content,
                    client_msg_id=client_msg_id,
                    timestamp=ack.get("timestamp"),
                    encrypted=True,
                ).as_dict()
            )

    async def open(self, message: dict[str, Any]) -> Received:
        """Decrypt a received message object (``new_message`` data or a history entry).

        Never raises for what a peer or the server sent: the result carries
        ``error`` instead, and is kept, so a replay of it is a ``duplicate``.
        """
        async with self.lock:
            kept = self.store.get_message(message["message_id"])
            if kept is not None:
                return Received(**{**kept, "duplicate": True})
            with self.store.transaction():
                received = await self._open(message)
                self.store.put_message(received.as_dict())
                if (message.get("ciphertext") or {}).get("type") == "prekey":
                    self._save_keys()  # a one-time prekey may be used up
            return received

    async def _open(self, message: dict[str, Any]) -> Received:
        base = {
            "message_id": message["message_id"],
            "chat_id": message["chat_id"],
            "seq": int(message.get("seq") or 0),
            "sender_id": message.get("sender_id") or "",
            "type": message.get("type") or "text",
            "client_msg_id": message.get("client_msg_id"),
            "timestamp": message.get("timestamp"),
        }
        if not message.get("encrypted"):
            return Received(
                **base, sender_device=None, text=message.get("content"), encrypted=False
            )
        entry = message.get("ciphertext")
        if entry is None:
            return Received(
                **base, sender_device=None, text=None, encrypted=True, error="no_ciphertext"
            )
        try:
            envelope = wire.decode(entry)
        except MalformedMessage:
            return Received(
                **base, sender_device=None, text=None, encrypted=True, error="malformed"
            )
        fail = {**base, "sender_device": envelope.sender_device, "text": None, "encrypted": True}
        try:
            opened = await self.sessions.decrypt(base["sender_id"], envelope)
            payload = wire.unpad(opened.plaintext)
        except Duplicate:
            return Received(**fail, duplicate=True, error="undecryptable")
        except MalformedMessage:
            return Received(**fail, error="malformed")
        except E2EError:
            return Received(**fail, error="undecryptable")
        if payload.get("chat_id") != base["chat_id"] or payload.get("from") != base["sender_id"]:
            # A ciphertext the server moved to another chat or attributed to another sender.
            return Received(**fail, identity_changed=opened.identity_changed, error="mismatch")
        return Received(
            **{**base, "type": str(payload.get("type") or base["type"])},
            sender_device=envelope.sender_device,
            text=str(payload.get("content", "")),
            encrypted=True,
            identity_changed=opened.identity_changed,
        )

    def history(self, chat_id: str, *, limit: int = 100) -> list[Received]:
        """The kept messages of a chat (sent and received), oldest first."""
        return [Received(**m) for m in self.store.history(chat_id, limit=limit)]
