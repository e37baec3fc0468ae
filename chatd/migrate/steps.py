"""The copy's steps: what each reads from the source and writes to the target.

Each step reads one source table in key order, a page at a time, and turns every
record into the target's rows with one function of the importer (the ScyllaDB
adapter's business). Messages also need their chat's sequencer fence per bucket
(``ChatEpochs``), read once per chat and cached while the stream is in it.
Imports the ScyllaDB driver: the runner loads it only when a copy starts.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from chatd.core.models import Message
from chatd.migrate.source import SourceError, SqliteSource
from chatd.storage.scylla.common import BUCKET, bucket_of
from chatd.storage.scylla.importer import records
from chatd.storage.scylla.importer.tables import Put


@dataclass(frozen=True)
class Step:
    name: str  # also the checkpoint row and the progress bar's label
    table: str  # the source table counted for the progress bar
    read: Callable[[SqliteSource, list[Any] | None, int], list[Any]]
    key: Callable[[Any], list[Any]]  # a record's position (where a resumed run starts after)
    puts: Callable[[Any], list[Put]]  # a record's target rows
    #: Rows a page needs beyond its records' own (the messages' bucket fences).
    page_puts: Callable[[Sequence[Any], EpochCache], Awaitable[list[Put]]] | None = None


@dataclass(frozen=True)
class ChatEpochs:
    """What the sequencer's fence looks like in each bucket of a chat.

    Every system message moved the chat's version by one (a creation to 1), so
    the version in force after seq s is ``version`` minus the system messages
    after s; a bucket's epoch is the version after its last seq, and its
    ``epoch_seq`` the seq of the last system message up to there (0: none).
    """

    version: int
    system: list[int]

    def of(self, bucket: int) -> tuple[int, int]:
        end = (bucket + 1) * BUCKET - 1
        upto = bisect.bisect_right(self.system, end)
        epoch = max(0, self.version - (len(self.system) - upto))
        return epoch, self.system[upto - 1] if upto else 0


class EpochCache:
    """Epoch facts of the chats the message stream is in (it reads chat by chat)."""

    def __init__(self, source: SqliteSource) -> None:
        self._source = source
        self._known: OrderedDict[str, ChatEpochs] = OrderedDict()

    async def get(self, chat_id: str) -> ChatEpochs:
        found = self._known.get(chat_id)
        if found is None:
            found = await self._source.run(self._read, chat_id)
            self._known[chat_id] = found
            if len(self._known) > 256:
                self._known.popitem(last=False)
        return found

    def _read(self, chat_id: str) -> ChatEpochs:
        found = self._source.chat(chat_id)
        if found is None:
            raise SourceError(f"messages of chat {chat_id}, which does not exist")
        chat, _ = found
        system = self._source.system_seqs(chat_id) if chat.kind == "group" else []
        return ChatEpochs(chat.version, system)


async def _fences(page: Sequence[Message], epochs: EpochCache) -> list[Put]:
    """The sequencer's fence of every bucket the page's messages are in."""
    out: list[Put] = []
    for chat_id, bucket in dict.fromkeys((m.chat_id, bucket_of(m.seq)) for m in page):
        epoch, epoch_seq = (await epochs.get(chat_id)).of(bucket)
        out += records.epoch_puts(chat_id, bucket, epoch, epoch_seq)
    return out


def _spread(puts: Callable[..., list[Put]]) -> Callable[[tuple[Any, ...]], list[Put]]:
    """For sources that read a record as a tuple of parts."""
    return lambda parts: puts(*parts)


STEPS: list[Step] = [
    Step("users", "users", SqliteSource.users, lambda u: [u.user_id], records.user_puts),
    Step(
        "devices",
        "devices",
        SqliteSource.devices,
        lambda d: [d[0].device_id],
        _spread(records.device_puts),
    ),
    Step(
        "contacts",
        "contacts",
        SqliteSource.contacts,
        lambda c: [c.user_id, c.contact_id],
        records.contact_puts,
    ),
    Step(
        "invites", "invites", SqliteSource.invites, lambda i: [i[0]], _spread(records.invite_puts)
    ),
    Step(
        "media", "media", SqliteSource.media, lambda m: [m[0].media_id], _spread(records.media_puts)
    ),
    Step(
        "device_keys",
        "device_keys",
        SqliteSource.device_keys,
        lambda k: [k.device_id],
        records.device_key_puts,
    ),
    Step(
        "prekeys",
        "one_time_prekeys",
        SqliteSource.prekeys,
        lambda p: [p[0], p[1]],
        _spread(records.prekey_puts),
    ),
    Step(
        "chats", "chats", SqliteSource.chats, lambda c: [c[0].chat_id], _spread(records.chat_puts)
    ),
    Step(
        "messages",
        "messages",
        SqliteSource.messages,
        lambda m: [m.chat_id, m.seq],
        records.message_puts,
        _fences,
    ),
    Step(
        "cursors",
        "device_cursors",
        SqliteSource.cursors,
        lambda c: [c[0], c[1]],
        _spread(records.cursor_puts),
    ),
]


async def puts_for(step: Step, page: Sequence[Any], epochs: EpochCache) -> list[Put]:
    """The target rows of one page of ``step``."""
    out = [put for record in page for put in step.puts(record)]
    if step.page_puts is not None:
        out += await step.page_puts(page, epochs)
    return out
