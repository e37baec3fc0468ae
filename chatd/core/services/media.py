"""Media: uploads, who may read them, which messages may carry them, and retention.

An upload is streamed to a staged file, its type judged from its bytes, probed
and thumbnailed off the event loop, and only then published and recorded, so a
refused or failed upload leaves nothing behind. Reading follows the messages:
the uploader, and whoever can see a message that carries the media (a past
member keeps what it saw); everyone else gets ``not_found``, as if the media
did not exist.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterable, AsyncIterator, Collection, Iterable
from dataclasses import dataclass
from typing import Any

from chatd.core.auth import Caller
from chatd.core.errors import ChatdError, bad_request, not_found
from chatd.core.ids import new_id, now_ms
from chatd.core.models import Media, Message
from chatd.core.ports.media import BlobStore, MediaProcessor, StagedBlob
from chatd.core.ports.storage import Storage
from chatd.core.uploads import UploadLedger, paced

log = logging.getLogger(__name__)

#: Which media each message type may carry; ``file`` carries any.
TYPE_PREFIX = {"image": "image/", "video": "video/", "audio": "audio/"}
_MIME = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
SWEEP_BATCH = 100
#: File names that a desktop would run when opened: refused whatever the bytes
#: are, since the name is offered again on download.
_PROGRAM_EXTENSIONS = (
    "exe com bat cmd scr pif msi msp mst cpl dll sys jar js jse mjs vbs vbe wsf wsh hta ps1 "
    "psm1 psd1 sh bash zsh csh ksh fish command tool app apk ipa deb rpm lnk reg inf py pyw "
    "pl rb php elf run scpt gadget msc appx msix desktop"
)
EXECUTABLE_EXTENSIONS = frozenset(_PROGRAM_EXTENSIONS.split())
#: File names a browser would open as a page (scripts run in it): refused too,
#: whatever the bytes (plain text named ``x.html`` would be saved as a page).
_PAGE_EXTENSIONS = "html htm shtml xhtml xht mht mhtml svg svgz xml xsl"
WEB_PAGE_EXTENSIONS = frozenset(_PAGE_EXTENSIONS.split())
#: An upload no message references yet may be sent only while it is this much
#: younger than the retention grace period, so the retention job can never
#: delete a media between a send's check and its append (at most 10 minutes).
MAX_SEND_MARGIN_MS = 10 * 60 * 1000


@dataclass(frozen=True, slots=True)
class Served:
    """What to send for ``GET /media/{id}`` or its thumbnail."""

    media: Media
    sha256: str
    size: int
    mime_type: str


class MediaService:
    def __init__(
        self,
        storage: Storage,
        blobs: BlobStore,
        processor: MediaProcessor,
        *,
        max_upload_bytes: int = 64 * 1024 * 1024,
        uploads_per_minute: int = 30,
        concurrent_uploads: int = 4,
        min_bytes_per_s: int = 1024,
        rate_window_s: float = 30.0,
        unsent_bytes: int = 512 << 20,
        bytes_per_day: int = 4 << 30,
        allowed_types: Collection[str] = (),
        retention_grace_ms: int = 24 * 3600 * 1000,
        retention_interval_s: float = 3600.0,
    ) -> None:
        self._storage = storage
        self._blobs = blobs
        self._processor = processor
        self.max_upload_bytes = max_upload_bytes
        self._allowed = frozenset(t.lower() for t in allowed_types)
        self._grace_ms = retention_grace_ms
        self._interval_s = retention_interval_s
        self._send_window_ms = retention_grace_ms - min(retention_grace_ms // 2, MAX_SEND_MARGIN_MS)
        self._min_rate = min_bytes_per_s
        self._rate_window_s = rate_window_s
        self._ledger = UploadLedger(
            per_minute=uploads_per_minute,
            concurrent=concurrent_uploads,
            unsent_bytes=unsent_bytes,
            bytes_per_day=bytes_per_day,
            # Retention deletes an unsent upload after the grace period and the
            # interval between its runs: until then it holds disk.
            unsent_window_ms=retention_grace_ms + int(retention_interval_s * 1000),
            is_sent=self._is_sent,
        )
        # Publishing a blob and recording it, against the retention job deleting a
        # blob it found unused: one must not slip between the other's two steps.
        self._blob_lock = asyncio.Lock()

    async def open(self) -> None:
        """Open the blob store and start the processing workers."""
        await self._blobs.open()
        await self._processor.open()

    async def aclose(self) -> None:
        await self._processor.aclose()
        await self._blobs.aclose()

    async def write_problem(self) -> str | None:
        """Why uploads cannot be stored now (a full disk), or None (for ``/health``)."""
        return await self._blobs.writable()

    # -- upload ----------------------------------------------------------------

    async def upload(
        self,
        caller: Caller,
        chunks: AsyncIterable[bytes],
        *,
        declared_type: str | None = None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> Media:
        """Store an upload; ``payload_too_large``, ``unsupported_media_type`` or
        ``rate_limited`` refuse it, ``bad_request`` if its body trickles in."""
        if content_length is not None and content_length > self.max_upload_bytes:
            raise too_large(self.max_upload_bytes)
        filename = clean_filename(filename)
        check_filename(filename)
        if content_length is not None:
            self._ledger.precheck(caller.user_id, content_length)
        with self._ledger.slot(caller.user_id):
            body = paced(chunks, min_bytes_per_s=self._min_rate, window_s=self._rate_window_s)
            staged = await self._blobs.stage(body, self.max_upload_bytes)
            try:
                entry = await self._ledger.admit(caller.user_id, staged.size)
            except BaseException:
                await self._blobs.discard(staged)
                raise
            try:
                media = await self._store(caller, staged, declared_type, filename)
            except BaseException:
                self._ledger.cancel(caller.user_id, entry)
                raise
            entry.media_id = media.media_id
            return media

    async def _is_sent(self, media_id: str) -> bool:
        return bool(await self._storage.media.references(media_id, limit=1))

    async def _store(
        self, caller: Caller, staged: StagedBlob, declared_type: str | None, filename: str | None
    ) -> Media:
        """Probe, thumbnail, publish and record a staged upload; nothing is left if it fails."""
        made: list[StagedBlob] = []
        outputs: list[str] = []
        try:
            mime = await self._processor.sniff(staged.path, clean_type(declared_type))
            self._check_allowed(mime)
            info = await self._processor.process(staged.path, mime)
            outputs = [p for p in (info.replacement_path, info.thumbnail_path) if p is not None]
            self._check_allowed(info.mime_type)
            served = staged
            if info.replacement_path is not None:
                served = await self._blobs.adopt(info.replacement_path)
                made.append(served)
            thumb = None
            if info.thumbnail_path is not None:
                thumb = await self._blobs.adopt(info.thumbnail_path)
                made.append(thumb)
            media = Media(
                media_id=new_id(),
                uploader_id=caller.user_id,
                sha256=served.sha256,
                mime_type=info.mime_type,
                size=served.size,
                created_at=now_ms(),
                filename=filename,
                width=info.width,
                height=info.height,
                duration_ms=info.duration_ms,
                thumbnail_sha256=thumb.sha256 if thumb else None,
                thumbnail_mime=info.thumbnail_mime if thumb else None,
                thumbnail_size=thumb.size if thumb else None,
            )
            async with self._blob_lock:
                await self._blobs.publish(served)
                if thumb is not None:
                    await self._blobs.publish(thumb)
                await self._storage.media.create(media)
            return media
        finally:
            leftovers = [staged, *made]
            adopted = {blob.path for blob in made}
            leftovers += [StagedBlob(p, "", 0) for p in outputs if p not in adopted]
            for leftover in leftovers:  # nothing once published
                await self._blobs.discard(leftover)

    def _check_allowed(self, mime: str) -> None:
        if mime not in self._allowed:
            raise ChatdError("unsupported_media_type", f"files of type {mime} are not accepted")

    # -- reading -----------------------------------------------------------------

    async def readable(self, caller: Caller, media_id: Any) -> Media:
        """The media if the caller may read it; ``not_found`` otherwise."""
        if not isinstance(media_id, str) or not 0 < len(media_id) <= 64:
            raise not_found("media not found")
        media = await self._storage.media.get(media_id)
        if media is None:
            raise not_found("media not found")
        if media.uploader_id == caller.user_id:
            return media
        memberships: dict[str, Any] = {}
        for ref in await self._storage.media.references(media_id):
            if ref.chat_id not in memberships:
                memberships[ref.chat_id] = await self._storage.chats.member(
                    ref.chat_id, caller.user_id
                )
            member = memberships[ref.chat_id]
            if member is not None and member.sees(ref.seq):
                return media
        raise not_found("media not found")

    async def served(self, caller: Caller, media_id: Any, *, thumbnail: bool = False) -> Served:
        media = await self.readable(caller, media_id)
        if not thumbnail:
            return Served(media, media.sha256, media.size, media.mime_type)
        if media.thumbnail_sha256 is None or media.thumbnail_mime is None:
            raise not_found("this media has no thumbnail")
        size = media.thumbnail_size or 0
        return Served(media, media.thumbnail_sha256, size, media.thumbnail_mime)

    def read(self, sha256: str, offset: int, length: int) -> AsyncIterator[bytes]:
        """The blob's bytes ``[offset, offset + length)`` as an async iterator of chunks."""
        return self._blobs.read(sha256, offset, length)

    async def for_message(self, caller: Caller, media_id: str, kind: str) -> Media:
        """The media a message of type ``kind`` from the caller may carry.

        The sender must be able to read it (its own upload, or one it received:
        forwarding), else ``not_found``; the type must fit, else ``bad_request``.
        """
        if kind not in TYPE_PREFIX and kind != "file":
            raise bad_request(f"a {kind} message cannot carry a media_id")
        try:
            media = await self.readable(caller, media_id)
        except ChatdError:
            raise not_found("media_id: unknown media") from None
        prefix = TYPE_PREFIX.get(kind)
        if prefix is not None and not media.mime_type.startswith(prefix):
            article = "a" if kind == "video" else "an"
            raise bad_request(
                f"{article} {kind} message needs {prefix}* media, not {media.mime_type}"
            )
        if now_ms() - media.created_at > self._send_window_ms and not (
            await self._storage.media.references(media.media_id, limit=1)
        ):
            # Too close to (or past) its retention: the job may be deleting it.
            raise not_found("media_id: unknown media")
        return media

    # -- retention -----------------------------------------------------------------

    async def sweep(self, now: int | None = None) -> int:
        """Delete uploads no message references, older than the grace period.

        A record is deleted only if still unreferenced at that moment (atomic in
        storage); its blobs only if no other record serves them. Returns how many
        records were removed.
        """
        cutoff = (now_ms() if now is None else now) - self._grace_ms
        removed = 0
        while True:
            batch = await self._storage.media.unreferenced(cutoff, SWEEP_BATCH)
            done = 0
            for media in batch:
                done += await self._remove(media)
            removed += done
            if len(batch) < SWEEP_BATCH or done == 0:
                return removed

    async def _remove(self, media: Media) -> int:
        async with self._blob_lock:
            if not await self._storage.media.delete_unreferenced(media.media_id):
                return 0
            for sha in {media.sha256, media.thumbnail_sha256} - {None}:
                assert sha is not None
                if not await self._storage.media.blob_in_use(sha):
                    await self._blobs.delete(sha)
        log.info("retention removed media %s (%d bytes)", media.media_id, media.size)
        return 1

    async def run_retention(self) -> None:
        """Sweep now and then every retention interval, until cancelled; failures are logged."""
        while True:
            try:
                await self.sweep()
            except Exception:
                log.exception("media retention sweep failed")
            await asyncio.sleep(self._interval_s)


async def attachments(storage: Storage, messages: Iterable[Message]) -> dict[str, Media]:
    """The media records of a page of messages, fetched in one batch."""
    ids = list(dict.fromkeys(m.media_id for m in messages if m.media_id))
    return await storage.media.get_many(ids) if ids else {}


def too_large(limit: int) -> ChatdError:
    return ChatdError("payload_too_large", f"uploads are limited to {limit} bytes")


def clean_type(value: str | None) -> str | None:
    """A declared Content-Type reduced to ``type/subtype`` in lower case, or None."""
    if not value:
        return None
    mime = value.split(";", 1)[0].strip().lower()
    return mime if _MIME.fullmatch(mime) else None


def clean_filename(value: str | None) -> str | None:
    """The last path segment of a client's file name, without control characters.

    Trailing dots and spaces go too: Windows drops them when it saves a file, so
    ``run.bat.`` would land on the desktop as ``run.bat``.
    """
    if not value:
        return None
    name = _CONTROL.sub("", value).replace("\\", "/").rsplit("/", 1)[-1]
    name = name.strip().rstrip(". ")
    return name[:255].rstrip(". ") or None


def check_filename(name: str | None) -> None:
    """Refuse a (cleaned) name a desktop would run or a browser would open as a page."""
    if not name or "." not in name:
        return
    extension = name.lower().rsplit(".", 1)[-1]
    if extension in EXECUTABLE_EXTENSIONS:
        raise ChatdError("unsupported_media_type", "files named as programs are not accepted")
    if extension in WEB_PAGE_EXTENSIONS:
        raise ChatdError("unsupported_media_type", "files named as web pages are not accepted")
