"""Gossip messages and their wire form: msgpack, validated after decoding.

A datagram is a msgpack array of messages, each a map with a type ``t``. The
array is built by concatenating messages packed one by one (an array header
followed by its items is valid msgpack), so the sender knows each message's
size and fills a datagram up to its budget exactly. Nothing decoded is trusted:
``decode_packet`` and ``decode_push_pull`` check every field's type and bound
and raise ``Malformed`` (a metrics reason) on anything else. Never pickle.

Every datagram starts with the id of the node it is meant for (the array's
first item), and every push-pull names its receiver (``to``) and sender: the
seal's replay window is the receiver's, so this is what stops a packet
captured on its way to one node from being played to another.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack

#: A datagram's payload is at most this (the sealed packet adds ``seal.OVERHEAD``).
MAX_DATAGRAM = 1400
#: The full state exchanged over TCP; 10,000 nodes of small meta fit.
MAX_PUSH_PULL = 4 * 1024 * 1024
#: A node's own meta, packed, so that its ``alive`` fits a datagram with room to spare.
MAX_META = 512
MAX_ID = 64
MAX_ADDRESS = 261  # a DNS name (253) and ":65535"
MAX_INC = 2**63 - 1
STATUSES = ("alive", "suspect", "dead", "left")


class Malformed(ValueError):
    """A payload that is not a valid gossip message; ``reason`` is a metrics label."""

    def __init__(self, reason: str = "malformed") -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Ping:
    seq: int
    #: The node the sender means to reach: a node that is someone else now ignores it.
    target: str
    source: str
    source_address: str


@dataclass(frozen=True, slots=True)
class IndirectPing:
    """Ask the receiver to ping ``target`` and relay the answer (SWIM's ping-req)."""

    seq: int
    target: str
    target_address: str
    source: str
    source_address: str
    #: Ask for a nack when the target stays silent (Lifeguard: the asker's own health).
    nack: bool = True


@dataclass(frozen=True, slots=True)
class Ack:
    seq: int


@dataclass(frozen=True, slots=True)
class Nack:
    seq: int


@dataclass(frozen=True, slots=True)
class Alive:
    node: str
    address: str
    incarnation: int
    joined_at_ms: int
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Suspect:
    node: str
    incarnation: int
    #: Who suspects it (each distinct one is a Lifeguard confirmation).
    source: str


@dataclass(frozen=True, slots=True)
class Dead:
    node: str
    incarnation: int
    #: ``source == node``: the node left on purpose.
    source: str


@dataclass(frozen=True, slots=True)
class NodeState:
    """One node's entry in a push-pull exchange."""

    node: str
    address: str
    incarnation: int
    status: str
    joined_at_ms: int
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PushPull:
    nodes: tuple[NodeState, ...]
    #: Sent by a node joining through a seed (the seed answers with its state).
    join: bool = False
    #: The node it is meant for; empty only in a join to a seed (its id unknown yet).
    to: str = ""
    #: The sender's node id (the answer is meant for it).
    source: str = ""


Message = Ping | IndirectPing | Ack | Nack | Alive | Suspect | Dead


# -- encoding ---------------------------------------------------------------


def encode(message: Message) -> bytes:
    """One message, packed; ``packet`` joins several into a datagram."""
    return _pack(_to_wire(message))


def _to_wire(m: Message | NodeState) -> dict[str, Any]:
    match m:
        case Ping():
            return {
                "t": "ping",
                "seq": m.seq,
                "to": m.target,
                "fr": m.source,
                "fa": m.source_address,
            }
        case IndirectPing():
            return {
                "t": "iping",
                "seq": m.seq,
                "to": m.target,
                "ta": m.target_address,
                "fr": m.source,
                "fa": m.source_address,
                "nack": m.nack,
            }
        case Ack():
            return {"t": "ack", "seq": m.seq}
        case Nack():
            return {"t": "nack", "seq": m.seq}
        case Alive():
            return {
                "t": "alive",
                "n": m.node,
                "a": m.address,
                "i": m.incarnation,
                "j": m.joined_at_ms,
                "m": dict(m.meta),
            }
        case Suspect():
            return {"t": "suspect", "n": m.node, "i": m.incarnation, "fr": m.source}
        case Dead():
            return {"t": "dead", "n": m.node, "i": m.incarnation, "fr": m.source}
        case NodeState():
            return {
                "n": m.node,
                "a": m.address,
                "i": m.incarnation,
                "s": m.status,
                "j": m.joined_at_ms,
                "m": dict(m.meta),
            }
    raise TypeError(f"not a gossip message: {m!r}")


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def array_header(count: int) -> bytes:
    """The msgpack header of an array of ``count`` items (what ``packet`` prepends)."""
    if count < 16:
        return bytes([0x90 | count])
    return b"\xdc" + count.to_bytes(2, "big")


def destination(to: str) -> bytes:
    """The packed first item of a datagram meant for node ``to`` (its size counts)."""
    return _pack(to)


def packet(to: str, encoded: list[bytes]) -> bytes:
    """A datagram payload for node ``to`` from messages packed by ``encode``."""
    return array_header(len(encoded) + 1) + destination(to) + b"".join(encoded)


def encode_push_pull(message: PushPull) -> bytes:
    return _pack(
        {
            "t": "pp",
            "join": message.join,
            "to": message.to,
            "fr": message.source,
            "nodes": [_to_wire(n) for n in message.nodes],
        }
    )


def meta_size(meta: Mapping[str, Any]) -> int:
    return len(_pack(dict(meta)))


# -- decoding ---------------------------------------------------------------


def _unpack(data: bytes, limit: int) -> Any:
    if len(data) > limit:
        raise Malformed("too_large")
    unpacker = msgpack.Unpacker(
        raw=False, strict_map_key=True, max_buffer_size=limit, use_list=True
    )
    try:
        unpacker.feed(data)
        obj = unpacker.unpack()
    except msgpack.OutOfData:
        raise Malformed("malformed") from None
    except (ValueError, TypeError, msgpack.UnpackException, msgpack.ExtraData):
        raise Malformed("malformed") from None
    try:
        unpacker.unpack()
    except msgpack.OutOfData:
        return obj
    except Exception:
        pass
    raise Malformed("malformed")  # trailing bytes


def decode_packet(data: bytes) -> tuple[str, list[Message]]:
    """The node a datagram payload is meant for, and its messages, each validated."""
    obj = _unpack(data, MAX_DATAGRAM)
    if not isinstance(obj, list) or len(obj) < 2:
        raise Malformed("malformed")
    return _id({"to": obj[0]}, "to"), [_message(item) for item in obj[1:]]


def decode_push_pull(data: bytes) -> PushPull:
    obj = _unpack(data, MAX_PUSH_PULL)
    if not isinstance(obj, dict) or obj.get("t") != "pp":
        raise Malformed("malformed")
    nodes = obj.get("nodes")
    if not isinstance(nodes, list):
        raise Malformed("malformed")
    to = "" if obj.get("to") == "" else _id(obj, "to")
    return PushPull(
        tuple(_node_state(n) for n in nodes), _bool(obj.get("join")), to, _id(obj, "fr")
    )


def _message(obj: Any) -> Message:
    if not isinstance(obj, dict):
        raise Malformed("malformed")
    kind = obj.get("t")
    if kind == "ping":
        return Ping(_seq(obj, "seq"), _id(obj, "to"), _id(obj, "fr"), _address(obj, "fa"))
    if kind == "iping":
        return IndirectPing(
            _seq(obj, "seq"),
            _id(obj, "to"),
            _address(obj, "ta"),
            _id(obj, "fr"),
            _address(obj, "fa"),
            _bool(obj.get("nack")),
        )
    if kind == "ack":
        return Ack(_seq(obj, "seq"))
    if kind == "nack":
        return Nack(_seq(obj, "seq"))
    if kind == "alive":
        return Alive(
            _id(obj, "n"), _address(obj, "a"), _inc(obj, "i"), _inc(obj, "j"), _meta(obj, "m")
        )
    if kind == "suspect":
        return Suspect(_id(obj, "n"), _inc(obj, "i"), _id(obj, "fr"))
    if kind == "dead":
        return Dead(_id(obj, "n"), _inc(obj, "i"), _id(obj, "fr"))
    raise Malformed("unknown_type")


def _node_state(obj: Any) -> NodeState:
    if not isinstance(obj, dict):
        raise Malformed("malformed")
    status = obj.get("s")
    if status not in STATUSES:
        raise Malformed("malformed")
    return NodeState(
        _id(obj, "n"),
        _address(obj, "a"),
        _inc(obj, "i"),
        status,
        _inc(obj, "j"),
        _meta(obj, "m"),
    )


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Malformed("malformed")
    return value


def _int(obj: dict[str, Any], key: str, top: int) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= top:
        raise Malformed("malformed")
    return value


def _seq(obj: dict[str, Any], key: str) -> int:
    return _int(obj, key, 2**32 - 1)


def _inc(obj: dict[str, Any], key: str) -> int:
    return _int(obj, key, MAX_INC)


def _text(obj: dict[str, Any], key: str, top: int) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not 0 < len(value) <= top or not value.isprintable():
        raise Malformed("malformed")
    return value


def _id(obj: dict[str, Any], key: str) -> str:
    return _text(obj, key, MAX_ID)


def _address(obj: dict[str, Any], key: str) -> str:
    value = _text(obj, key, MAX_ADDRESS)
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise Malformed("malformed")
    return value


def _meta(obj: dict[str, Any], key: str) -> dict[str, Any]:
    value = obj.get(key)
    if not isinstance(value, dict) or len(value) > 32:
        raise Malformed("malformed")
    for name, item in value.items():
        if len(name) > MAX_ID or not (
            item is None
            or isinstance(item, (bool, int, float))
            or (isinstance(item, str) and len(item) <= 256)
        ):
            raise Malformed("malformed")
    return value
