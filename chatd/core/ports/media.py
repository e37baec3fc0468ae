"""Media ports: where the bytes of uploads live, and how a file is understood.

The metadata of an upload (``Media``) goes through the storage port
(``ports/storage.py`` ``MediaStore``); these two ports keep the bytes and the
decoders (Pillow, FFmpeg) at the edge, so the core stays standard-library only.

Blobs are content-addressed: a blob's name is the SHA-256 of its bytes, so the
same bytes are stored once however often they are uploaded, and a blob never
changes once published. Uploads are first *staged*: written to a local
temporary file (whatever the store: the processor needs a local file to decode),
then *published* under their hash. A remote store (S3-compatible) publishes by
uploading the staged file and serves through ``read`` with ranged GETs.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class StagedBlob:
    """Bytes in a local temporary file, hashed, not yet visible as a blob."""

    path: str
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class Processed:
    """What a processor learned from a file, and the files it made beside it.

    ``mime_type`` may refine the sniffed type (an MP4 without a video track is
    ``audio/mp4``). ``replacement_path``: bytes to serve instead of the upload
    (an image with its metadata stripped and its orientation applied), or None
    to serve the upload as it is. ``thumbnail_path``: the thumbnail, or None.
    Both are local files the caller takes over (``BlobStore.adopt``).
    """

    mime_type: str
    width: int | None = None
    height: int | None = None
    duration_ms: int | None = None
    thumbnail_path: str | None = None
    thumbnail_mime: str | None = None
    replacement_path: str | None = None


class BlobStore(Protocol):
    """Immutable, content-addressed bytes. Found through the ``chatd.media`` entry points."""

    async def open(self) -> None:
        """Prepare the store (create folders, clear temporary files of a crashed run)."""

    async def stage(self, chunks: AsyncIterable[bytes], limit: int) -> StagedBlob:
        """Write ``chunks`` to a new temporary file, hashing as they arrive.

        Never holds the whole stream in memory. Past ``limit`` bytes it stops
        reading and raises ``payload_too_large``, leaving nothing behind. A full
        disk (or quota) raises ``unavailable``, also leaving nothing behind.
        """

    async def adopt(self, path: str) -> StagedBlob:
        """Stage a local file someone else wrote (a thumbnail); the store takes it over."""

    async def publish(self, staged: StagedBlob) -> None:
        """Make the staged bytes durable under their SHA-256, atomically.

        A crash leaves either no blob or the whole one under that name, never a
        part. If the blob exists already the staged copy is dropped (stored
        once). The staged file is consumed either way.
        """

    async def discard(self, staged: StagedBlob) -> None:
        """Remove a staged file that will not be published; no error if it is gone."""

    async def exists(self, sha256: str) -> bool: ...

    def read(self, sha256: str, offset: int, length: int) -> AsyncIterator[bytes]:
        """The bytes ``[offset, offset + length)`` of a blob, in chunks.

        Raises ``not_found`` (before the first chunk) if the blob does not exist.
        """

    async def delete(self, sha256: str) -> bool:
        """Remove a blob; True if it existed. Callers make sure no record uses it."""

    async def writable(self) -> str | None:
        """None while writes succeed; else why they fail (for ``/health``).

        A store that saw a write fail for lack of space checks again (with a
        small real write, at most about once a second) until one succeeds.
        """

    async def aclose(self) -> None: ...


class MediaProcessor(Protocol):
    """Reads files off the event loop: type detection, dimensions, thumbnails."""

    async def open(self) -> None:
        """Start the workers (processes or threads) that ``process`` runs on."""

    async def sniff(self, path: str, declared: str | None) -> str:
        """The file's type judged from its bytes, never from ``declared``.

        ``declared`` only chooses among types the bytes cannot tell apart (plain
        text vs CSV). Unknown binary data is ``application/octet-stream``.
        """

    async def process(self, path: str, mime_type: str) -> Processed:
        """Probe a file of a sniffed type; images and videos get a thumbnail.

        Runs outside the event loop (a process pool), so a large image never
        delays message delivery. A file that does not decode as its type raises
        ``unsupported_media_type``.
        """

    async def aclose(self) -> None: ...
