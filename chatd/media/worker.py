"""Decoding work, run in the media process pool (never on the server's event loop).

``process`` takes a staged file and returns plain data (it crosses a process
boundary): dimensions, duration, and the paths of the files it wrote beside the
input: ``<path>.thumb`` (the thumbnail) and ``<path>.clean`` (the image to serve
instead of the upload, when the upload carried metadata or an EXIF rotation).
Errors come back as ``{"error": text, "code": contract code}``, never as
exceptions: ``payload_too_large`` for a file over a limit (pixels, duration,
frames, or the worker's memory cap), ``unsupported_media_type`` for one that
does not decode.

A video's frame size, frame count and duration, and a sound's duration, are
read from the container's headers and checked before any frame is decoded:
a small file can declare a 16,000 x 16,000 frame, and decoding it would take
gigabytes. The poster is scaled while it is converted, so the full-size frame
is never copied as an RGB image.
"""

from __future__ import annotations

import errno
import time
from pathlib import Path
from typing import Any

import av
from PIL import Image, ImageOps, JpegImagePlugin

from chatd.media import strip

#: Larger images are refused rather than decoded (a 12000 x 12500 photo is the limit).
MAX_PIXELS = 150_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
#: Longest video or sound accepted by default (``[media] max_duration_s``).
MAX_DURATION_S = 12 * 3600
#: Most frames per second a video may average over its declared duration.
MAX_FPS = 240
TOO_LARGE = "payload_too_large"
_ORIENTATION = 0x0112
_SAVE_FORMATS = {"jpeg": ("JPEG", "image/jpeg"), "webp": ("WEBP", "image/webp")}
_REENCODABLE = {"JPEG", "PNG", "WEBP"}


class TooLarge(Exception):
    """The file is over a limit; the message says which."""


def process(
    path: str,
    mime: str,
    thumbnail_format: str,
    thumbnail_px: int,
    max_duration_s: float = MAX_DURATION_S,
) -> dict[str, Any]:
    try:
        if mime.startswith("image/"):
            return _image(path, mime, thumbnail_format, thumbnail_px)
        if mime.startswith(("video/", "audio/")):
            return _audio_video(path, mime, thumbnail_format, thumbnail_px, max_duration_s)
        return {"mime_type": mime}
    except Image.DecompressionBombError:
        return {"error": f"images are limited to {MAX_PIXELS} pixels", "code": TOO_LARGE}
    except TooLarge as exc:
        return {"error": str(exc), "code": TOO_LARGE}
    except MemoryError:  # the worker's address-space cap (RLIMIT_AS), in Python or FFmpeg
        return {"error": "this file needs more memory than the server allows", "code": TOO_LARGE}
    except (OSError, ValueError, SyntaxError, av.FFmpegError, IndexError, EOFError) as exc:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return {"error": "the server's disk is full; retry later", "code": "unavailable"}
        kind = mime.split("/", 1)[0]
        return {
            "error": f"not a readable {kind} file ({type(exc).__name__})",
            "code": "unsupported_media_type",
        }


# -- images -------------------------------------------------------------------------


def _image(path: str, mime: str, thumbnail_format: str, px: int) -> dict[str, Any]:
    with Image.open(path) as img:
        img_format = img.format or ""
        width, height = img.size
        if width * height > MAX_PIXELS:
            raise Image.DecompressionBombError("too many pixels")
        orientation = int(img.getexif().get(_ORIENTATION, 1) or 1)
        animated = getattr(img, "n_frames", 1) > 1
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    result: dict[str, Any] = {"mime_type": mime, "width": width, "height": height}
    result["replacement_path"] = _clean_original(path, img_format, orientation, animated)

    started = time.perf_counter()
    with Image.open(path) as img:
        if img_format == "JPEG":
            img.draft("RGB", (px, px))  # decode at 1/2, 1/4 or 1/8 scale: much faster
        img.seek(0)
        thumb = ImageOps.exif_transpose(img)
    result.update(_save_thumbnail(thumb, path, thumbnail_format, px))
    result["thumbnail_seconds"] = time.perf_counter() - started
    return result


def _clean_original(path: str, img_format: str, orientation: int, animated: bool) -> str | None:
    """The path of a metadata-free copy to serve, or None if the upload is clean."""
    data = Path(path).read_bytes()
    out = path + ".clean"
    if orientation == 1 or animated or img_format not in _REENCODABLE:
        stripped = strip.strip(img_format, data)
        if stripped is None and img_format not in _REENCODABLE:
            return None  # GIF, BMP...: no EXIF container to strip
        if stripped is not None:
            if stripped == data:
                return None
            Path(out).write_bytes(stripped)
            return out
    # A rotation to apply, or a file the segment walker could not follow: re-encode.
    with Image.open(path) as img:
        options: dict[str, Any] = {}
        if img.info.get("icc_profile"):
            options["icc_profile"] = img.info["icc_profile"]
        if img_format == "JPEG":
            options["qtables"] = img.quantization  # type: ignore[attr-defined]
            sampling = JpegImagePlugin.get_sampling(img)
            if sampling != -1:
                options["subsampling"] = sampling
        elif img_format == "WEBP":
            options["quality"] = 90
        upright = ImageOps.exif_transpose(img)
        upright.info.pop("exif", None)
        upright.info.pop("xmp", None)
        upright.save(out, format=img_format, **options)
    return out


def _save_thumbnail(
    image: Image.Image, path: str, thumbnail_format: str, px: int
) -> dict[str, Any]:
    """A thumbnail whose longest side is ``px`` (never enlarged), without metadata."""
    save_as, mime = _SAVE_FORMATS[thumbnail_format]
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    image = image.convert("RGBA" if has_alpha else "RGB")
    image.thumbnail((px, px), Image.Resampling.LANCZOS)
    if has_alpha and save_as == "JPEG":
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        image = background
    out = path + ".thumb"
    if save_as == "JPEG":
        image.save(out, format="JPEG", quality=82, optimize=True)
    else:
        image.save(out, format="WEBP", quality=80, method=4)
    return {"thumbnail_path": out, "thumbnail_mime": mime}


# -- audio and video -------------------------------------------------------------------


def _audio_video(
    path: str, mime: str, thumbnail_format: str, px: int, max_duration_s: float
) -> dict[str, Any]:
    with av.open(path, metadata_errors="ignore") as container:
        video = next((s for s in container.streams.video if not _is_cover_art(s)), None)
        if video is None and not container.streams.audio:
            return {"error": "no audio or video track found", "code": "unsupported_media_type"}
        _check_declared(container, max_duration_s)
        duration_ms = _duration_ms(container, video or container.streams.audio[0])
        kind, _, subtype = mime.partition("/")
        if video is None and kind == "video":
            mime = f"audio/{subtype}"  # e.g. an MP4 with only a sound track
        elif video is not None and kind == "audio":
            mime = f"video/{subtype}"
        result: dict[str, Any] = {"mime_type": mime, "duration_ms": duration_ms}
        if video is None:
            return result
        started = time.perf_counter()
        frame = next(container.decode(video), None)
        if frame is None:
            return {"error": "the video has no frame to show", "code": "unsupported_media_type"}
        _check_pixels(frame.width, frame.height)  # the decoder may disagree with the header
        # Scaled while converted to RGB (at most twice the thumbnail, LANCZOS does
        # the rest): the full-size frame is never copied.
        scale = min(1.0, 2 * px / max(frame.width, frame.height, 1))
        width, height = max(1, round(frame.width * scale)), max(1, round(frame.height * scale))
        poster = frame.to_image(width=width, height=height)
        rotation = int(getattr(frame, "rotation", 0) or 0) % 360
        if rotation:
            poster = poster.rotate(rotation, expand=True)
        turned = rotation in (90, 270)
        result["width"], result["height"] = (
            (frame.height, frame.width) if turned else (frame.width, frame.height)
        )
        result.update(_save_thumbnail(poster, path, thumbnail_format, px))
        result["thumbnail_seconds"] = time.perf_counter() - started
        return result


def _check_declared(container: Any, max_duration_s: float) -> None:
    """Refuse, from the headers alone, what would be too costly to decode or keep."""
    limit = f"{max_duration_s / 60:g} minutes"
    if container.duration and container.duration / 1_000_000 > max_duration_s:
        raise TooLarge(f"video and sound are limited to {limit}")
    for stream in container.streams:
        seconds = _seconds(stream)
        if seconds is not None and seconds > max_duration_s:
            raise TooLarge(f"video and sound are limited to {limit}")
        if stream.type != "video":
            continue
        context = stream.codec_context
        _check_pixels(
            max(context.width or 0, context.coded_width or 0),
            max(context.height or 0, context.coded_height or 0),
        )
        if (stream.frames or 0) > max_duration_s * MAX_FPS:
            raise TooLarge(f"videos are limited to {int(max_duration_s * MAX_FPS)} frames")


def _check_pixels(width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise TooLarge(f"video frames are limited to {MAX_PIXELS} pixels ({width} x {height})")


def _seconds(stream: Any) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    return None


def _is_cover_art(stream: Any) -> bool:
    disposition = getattr(stream, "disposition", 0)
    return bool(int(disposition) & 1024)  # AV_DISPOSITION_ATTACHED_PIC


def _duration_ms(container: Any, stream: Any) -> int | None:
    if container.duration:
        return int(container.duration // 1000)  # AV_TIME_BASE is microseconds
    if stream.duration and stream.time_base:
        return int(stream.duration * stream.time_base * 1000)
    return None
