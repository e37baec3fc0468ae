"""Pairwise Signal sessions of one device with other devices, without any network.

``SessionBook`` keeps, per peer (user_id, device_id), a short list of session
states, the current one first: X3DH makes a new one, the Double Ratchet runs
it. Several states per peer because two devices may start a session with each
other at the same moment; each side then decrypts with whichever state works
and sends with the last one that decrypted, so they converge. The initiator
repeats the X3DH header on every message until the peer's first reply, and the
responder recognises a repeated header (same ephemeral key) and keeps its state
instead of agreeing again, since the one-time prekey is gone by then.

Identity keys follow trust on first use: the first key seen for a device is
trusted; a different one later is recorded as offered, flagged to the app, and
nothing more is encrypted to that device until ``accept_identity``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import x3dh
from doubleratchet import DuplicateMessageException

from chatd.client.e2e import protocol
from chatd.client.e2e.errors import DecryptionFailed, IdentityChanged, MalformedMessage
from chatd.client.e2e.store import E2EStore
from chatd.client.e2e.wire import Envelope, b64, encode, unb64

#: Session states kept per peer device (the current one and older ones).
MAX_STATES = 5

Peer = tuple[str, str]  # (user_id, device_id)
SEP = "\x1f"  # between user_id and device_id in store keys (sqlite text stops at NUL)


class Duplicate(Exception):
    """The ratchet has already decrypted this very message."""


@dataclass(frozen=True, slots=True)
class Opened:
    plaintext: bytes
    sender_device: str
    identity_changed: bool


def _key(peer: Peer) -> str:
    return f"{peer[0]}{SEP}{peer[1]}"


def _header_json(h: x3dh.Header) -> dict[str, Any]:
    return {
        "ik": b64(h.identity_key),
        "ek": b64(h.ephemeral_key),
        "spk": b64(h.signed_pre_key),
        "opk": b64(h.pre_key) if h.pre_key is not None else None,
    }


def _header_of(d: dict[str, Any]) -> x3dh.Header:
    opk = d.get("opk")
    return x3dh.Header(unb64(d["ik"]), unb64(d["ek"]), unb64(d["spk"]), unb64(opk) if opk else None)


def bundle_of(entry: dict[str, Any]) -> x3dh.Bundle:
    """An x3dh Bundle from one device of ``GET /keys/{user_id}``."""
    try:
        spk = entry["signed_prekey"]
        opk = entry.get("one_time_prekey")
        return x3dh.Bundle(
            unb64(entry["identity_key"], "identity_key"),
            unb64(spk["public_key"], "signed_prekey"),
            unb64(spk["signature"], "signature"),
            frozenset([unb64(opk["public_key"], "one_time_prekey")]) if opk else frozenset(),
        )
    except (KeyError, TypeError):
        raise MalformedMessage("a key bundle misses a field") from None


class SessionBook:
    """The sessions and peer identities of ``me`` = (user_id, device_id), kept in ``store``.

    Callers serialise access (one operation at a time) and wrap each operation
    in ``store.transaction()`` with whatever else must commit with it.
    """

    def __init__(self, store: E2EStore, me: Peer, keys: protocol.DeviceKeys) -> None:
        self._store = store
        self._me = me
        self._keys = keys

    # -- identities ------------------------------------------------------------------

    def identity(self, peer: Peer) -> dict[str, Any] | None:
        """``{ik, status: "trusted"|"changed", offered, since}`` of a known device, else None."""
        return self._store.get("identity", _key(peer))

    def identities(self, user_id: str) -> dict[str, bytes]:
        """device_id -> trusted identity key, for every known device of ``user_id``."""
        out: dict[str, bytes] = {}
        for key in self._store.keys("identity", user_id + SEP):
            record = self._store.get("identity", key)
            out[key.split(SEP, 1)[1]] = unb64(record["ik"])
        return out

    def see_identity(self, peer: Peer, ik: bytes) -> bool:
        """Record ``ik`` for ``peer`` (trust on first use); True if not the trusted one."""
        record = self.identity(peer)
        if record is None:
            self._store.put(
                "identity",
                _key(peer),
                {"ik": b64(ik), "status": "trusted", "offered": None, "since": int(time.time())},
            )
            return False
        if unb64(record["ik"]) == ik:
            return False
        record.update(status="changed", offered=b64(ik))
        self._store.put("identity", _key(peer), record)
        return True

    def accept_identity(self, peer: Peer) -> None:
        """Trust the key ``peer`` now offers; sessions built on its old key are dropped."""
        record = self.identity(peer)
        if record is None or record["status"] != "changed":
            return
        new_ik = record["offered"]
        record.update(ik=new_ik, status="trusted", offered=None, since=int(time.time()))
        self._store.put("identity", _key(peer), record)
        states = [s for s in self._states(peer) if s["peer_ik"] == new_ik]
        self._save(peer, states)

    def changed(self, peer: Peer) -> bool:
        record = self.identity(peer)
        return record is not None and record["status"] == "changed"

    # -- sessions --------------------------------------------------------------------

    def _states(self, peer: Peer) -> list[dict[str, Any]]:
        record = self._store.get("session", _key(peer))
        return record["states"] if record else []

    def _save(self, peer: Peer, states: list[dict[str, Any]]) -> None:
        if states:
            self._store.put("session", _key(peer), {"states": states[:MAX_STATES]})
        else:
            self._store.delete("session", _key(peer))

    def has_session(self, peer: Peer) -> bool:
        return bool(self._states(peer))

    def forget(self, peer: Peer) -> None:
        self._store.delete("session", _key(peer))

    async def start(self, peer: Peer, bundle: x3dh.Bundle) -> bool:
        """Agree a new session with ``peer`` from its bundle (X3DH, active side).

        False (and no session) if the bundle's identity key is not the trusted one;
        raises x3dh.KeyAgreementException if its signed prekey's signature is wrong.
        """
        if self.see_identity(peer, bundle.identity_key):
            return False
        sk, ad, header = await self._keys.get_shared_secret_active(
            bundle, protocol.binding(self._me, peer), require_pre_key=False
        )
        state = {
            "dr": None,
            "init": {"sk": b64(sk), "spk": b64(bundle.signed_pre_key)},
            "ad": b64(ad),
            "ek": b64(header.ephemeral_key),
            "pending": _header_json(header),
            "peer_ik": b64(bundle.identity_key),
        }
        self._save(peer, [state, *self._states(peer)])
        return True

    async def encrypt(self, peer: Peer, plaintext: bytes) -> dict[str, str]:
        """The ``{type, body}`` entry for ``peer``; its ratchet state is saved advanced."""
        if self.changed(peer):
            raise IdentityChanged([peer])
        states = self._states(peer)
        if not states:
            raise DecryptionFailed(f"no session with {peer[0]}/{peer[1]}")
        state = states[0]
        ad = unb64(state["ad"])
        if state["dr"] is None:
            init = state.pop("init")
            ratchet, message = await protocol.Ratchet.encrypt_initial_message(
                shared_secret=unb64(init["sk"]),
                recipient_ratchet_pub=unb64(init["spk"]),
                message=plaintext,
                associated_data=ad,
                **protocol.RATCHET_CONFIG,
            )
        else:
            ratchet = protocol.load_ratchet(state["dr"])
            message = await ratchet.encrypt_message(plaintext, ad)
        state["dr"] = ratchet.json
        pending = state.get("pending")
        self._save(peer, states)
        xh = _header_of(pending) if pending else None
        return encode(Envelope(self._me[1], message, xh))

    async def decrypt(self, sender_user: str, envelope: Envelope) -> Opened:
        """Decrypt one envelope from ``sender_user``'s ``envelope.sender_device``.

        Raises Duplicate for a message already decrypted, DecryptionFailed when no
        session can read it. The states are saved only on success.
        """
        peer = (sender_user, envelope.sender_device)
        states = self._states(peer)
        xh = envelope.x3dh_header
        duplicate = False
        # A prekey message belongs to the session its X3DH run made, if we have it.
        ek = b64(xh.ephemeral_key) if xh is not None else None
        candidates = [i for i, s in enumerate(states) if ek is None or s["ek"] == ek]
        for i in candidates:
            state = states[i]
            if state["dr"] is None:
                continue
            ratchet = protocol.load_ratchet(state["dr"])
            try:
                plaintext = await ratchet.decrypt_message(envelope.message, unb64(state["ad"]))
            except DuplicateMessageException:
                duplicate = True
                continue
            except Exception:  # authentication failure or skipped too far: try the next state
                continue
            state["dr"] = ratchet.json
            state["pending"] = None  # the peer has this session: stop repeating the header
            self._save(peer, [state, *states[:i], *states[i + 1 :]])
            return Opened(plaintext, envelope.sender_device, self.changed(peer))
        if duplicate:
            raise Duplicate()
        if xh is None or candidates:
            raise DecryptionFailed(f"no session of {peer[0]}/{peer[1]} decrypts this message")
        return await self._accept(peer, envelope, xh, states)

    async def _accept(
        self, peer: Peer, envelope: Envelope, xh: x3dh.Header, states: list[dict[str, Any]]
    ) -> Opened:
        """A new session started by ``peer`` (X3DH, passive side)."""
        try:
            sk, ad, spk = await self._keys.get_shared_secret_passive(
                xh, protocol.binding(peer, self._me), require_pre_key=False
            )
            ratchet, plaintext = await protocol.Ratchet.decrypt_initial_message(
                shared_secret=sk,
                own_ratchet_priv=spk.priv,
                message=envelope.message,
                associated_data=ad,
                **protocol.RATCHET_CONFIG,
            )
        except Exception as exc:
            raise DecryptionFailed(
                f"cannot start a session with {peer[0]}/{peer[1]}: {exc}"
            ) from exc
        changed = self.see_identity(peer, xh.identity_key)
        if xh.pre_key is not None:
            self._keys.delete_pre_key(xh.pre_key)
        state = {
            "dr": ratchet.json,
            "ad": b64(ad),
            "ek": b64(xh.ephemeral_key),
            "pending": None,
            "peer_ik": b64(xh.identity_key),
        }
        self._save(peer, [state, *states])
        return Opened(plaintext, envelope.sender_device, changed or self.changed(peer))
