"""Lossless removal of metadata (EXIF with GPS, XMP, IPTC, comments) from images.

Each function walks the container's segments and copies every one that carries
pixels or colour (JPEG tables and scans, ICC profiles, PNG and WebP image
chunks) and none that carries metadata; pixels are never decoded. Each returns
None when the file does not parse as expected: the caller then re-encodes it
with Pillow instead, so metadata never survives by accident.
"""

from __future__ import annotations


def strip(image_format: str, data: bytes) -> bytes | None:
    """The image without metadata, or None if this format is not handled here."""
    if image_format == "JPEG":
        return strip_jpeg(data)
    if image_format == "PNG":
        return strip_png(data)
    if image_format == "WEBP":
        return strip_webp(data)
    return None


# -- JPEG -------------------------------------------------------------------------


def strip_jpeg(data: bytes) -> bytes | None:
    """Drops APP1 (EXIF, XMP), APP13 (IPTC) and the other APPn segments but APP0
    (JFIF), ICC profiles (APP2) and Adobe (APP14); drops comments, and anything
    after the end of the image (appended previews, maker data)."""
    if not data.startswith(b"\xff\xd8"):
        return None
    out = bytearray(b"\xff\xd8")
    pos, end = 2, len(data)
    while pos + 1 < end:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        pos += 2
        if marker == 0xD9:  # end of image
            out += b"\xff\xd9"
            return bytes(out)
        if 0xD0 <= marker <= 0xD7 or marker == 0x01:  # markers without a length
            out += bytes((0xFF, marker))
            continue
        if pos + 2 > end:
            return None
        length = int.from_bytes(data[pos : pos + 2], "big")
        if length < 2 or pos + length > end:
            return None
        if _keep_jpeg_segment(marker, data[pos + 2 : pos + min(length, 16)]):
            out += data[pos - 2 : pos + length]
        pos += length
        if marker == 0xDA:  # start of scan: entropy-coded data up to the next marker
            scan_end = _entropy_end(data, pos)
            out += data[pos:scan_end]
            pos = scan_end
    return None  # no end-of-image marker: truncated or not a JPEG


def _keep_jpeg_segment(marker: int, head: bytes) -> bool:
    if marker == 0xFE:  # comment
        return False
    if 0xE0 <= marker <= 0xEF:
        if marker == 0xE0:
            return True
        if marker == 0xE2:
            return head.startswith(b"ICC_PROFILE\x00")
        if marker == 0xEE:
            return head.startswith(b"Adobe")
        return False
    return True


def _entropy_end(data: bytes, pos: int) -> int:
    """Where the entropy-coded data starting at ``pos`` ends (at the next real marker)."""
    end = len(data)
    while True:
        i = data.find(b"\xff", pos)
        if i < 0 or i + 1 >= end:
            return end
        following = data[i + 1]
        if following == 0x00 or 0xD0 <= following <= 0xD7 or following == 0xFF:
            pos = i + 1  # stuffed byte, restart marker or fill: still in the scan
            continue
        return i


# -- PNG --------------------------------------------------------------------------

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_METADATA = frozenset({b"eXIf", b"tEXt", b"zTXt", b"iTXt", b"tIME"})


def strip_png(data: bytes) -> bytes | None:
    """Drops eXIf and the text chunks (which also carry XMP and raw EXIF profiles)."""
    if not data.startswith(_PNG_SIGNATURE):
        return None
    out = bytearray(_PNG_SIGNATURE)
    pos = len(_PNG_SIGNATURE)
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        stop = pos + 12 + length
        if stop > len(data):
            return None
        if kind not in _PNG_METADATA:
            out += data[pos:stop]
        pos = stop
        if kind == b"IEND":
            return bytes(out)
    return None


# -- WebP -------------------------------------------------------------------------

_WEBP_METADATA = frozenset({b"EXIF", b"XMP "})
_VP8X_EXIF_AND_XMP = 0x08 | 0x04


def strip_webp(data: bytes) -> bytes | None:
    """Drops the EXIF and XMP chunks and clears their flags in the VP8X header."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    end = min(len(data), 8 + int.from_bytes(data[4:8], "little"))
    chunks: list[bytes] = []
    pos = 12
    while pos + 8 <= end:
        kind = data[pos : pos + 4]
        size = int.from_bytes(data[pos + 4 : pos + 8], "little")
        stop = pos + 8 + size + (size & 1)
        if pos + 8 + size > end:
            return None
        chunk = data[pos : min(stop, end)]
        if kind == b"VP8X" and size >= 10:
            chunk = chunk[:8] + bytes((chunk[8] & ~_VP8X_EXIF_AND_XMP & 0xFF,)) + chunk[9:]
        if kind not in _WEBP_METADATA:
            chunks.append(chunk + (b"\x00" if len(chunk) % 2 else b""))
        pos = stop
    body = b"WEBP" + b"".join(chunks)
    return b"RIFF" + len(body).to_bytes(4, "little") + body
