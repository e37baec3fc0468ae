"""The one-time prekey cap: the arithmetic every key store applies inside its write."""

from __future__ import annotations

from collections.abc import Sequence, Set

from chatd.core.errors import TooManyPrekeys
from chatd.core.models import Prekey


def prekeys_to_add(held: Set[int], sent: Sequence[Prekey], limit: int) -> list[Prekey]:
    """The prekeys of ``sent`` that an upload adds to a device holding the ids ``held``.

    A key id already held (or sent twice) is neither added nor counted again (a
    retried upload changes nothing). Raises ``TooManyPrekeys`` when the device
    would then hold more than ``limit``; the store then writes nothing. ``held``
    is empty for a device whose identity key changes: its old prekeys go.
    """
    seen = set(held)
    fresh: list[Prekey] = []
    for prekey in sent:
        if prekey.key_id not in seen:
            seen.add(prekey.key_id)
            fresh.append(prekey)
    if len(held) + len(fresh) > limit:
        raise TooManyPrekeys(len(held), len(fresh), limit)
    return fresh
