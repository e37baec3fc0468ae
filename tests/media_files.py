"""Small real media files made on the spot: Pillow images, PyAV video and audio."""

from __future__ import annotations

import array
import io
import math
import struct
import tempfile
from fractions import Fraction
from pathlib import Path

import av
from PIL import Image

ORIENTATION = 0x0112
GPS_IFD = 0x8825
#: GPS coordinates planted in test photos; they must never be served.
GPS = {1: "N", 2: (48.0, 51.0, 29.0), 3: "E", 4: (2.0, 17.0, 40.0)}


def picture(width: int, height: int, mode: str = "RGB") -> Image.Image:
    """A picture whose top-left quarter is red and the rest blue: orientation shows."""
    image = Image.new(mode, (width, height), (0, 0, 255, 128) if "A" in mode else (0, 0, 255))
    red = Image.new(
        mode, (width // 2, height // 2), (255, 0, 0, 255) if "A" in mode else (255, 0, 0)
    )
    image.paste(red, (0, 0))
    return image


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def exif(orientation: int | None = None, gps: bool = True) -> Image.Exif:
    data = Image.Exif()
    data[0x010F] = "TestCam"  # Make
    if orientation is not None:
        data[ORIENTATION] = orientation
    if gps:
        data[GPS_IFD] = GPS
    return data


def jpeg(
    width: int = 640, height: int = 480, *, orientation: int | None = None, gps: bool = True
) -> bytes:
    return encode(picture(width, height), "JPEG", quality=90, exif=exif(orientation, gps))


def png(
    width: int = 400, height: int = 300, *, alpha: bool = False, metadata: bool = False
) -> bytes:
    image = picture(width, height, "RGBA" if alpha else "RGB")
    return encode(image, "PNG", exif=exif()) if metadata else encode(image, "PNG")


def gif(width: int = 200, height: int = 100) -> bytes:
    return encode(picture(width, height).convert("P"), "GIF")


def webp(width: int = 500, height: int = 250, *, metadata: bool = False) -> bytes:
    image = picture(width, height)
    return encode(image, "WEBP", exif=exif()) if metadata else encode(image, "WEBP", quality=80)


def colour_at(data: bytes, x: float, y: float) -> tuple[int, ...]:
    """The colour at a relative position (0..1) of an image file."""
    with Image.open(io.BytesIO(data)) as image:
        rgb = image.convert("RGB")
        return rgb.getpixel((int(x * (rgb.width - 1)), int(y * (rgb.height - 1))))  # type: ignore[return-value]


def _encode_av(fmt: str, suffix: str, build) -> bytes:  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"clip{suffix}"
        with av.open(str(path), "w", format=fmt) as container:
            build(container)
        return path.read_bytes()


def _add_video(container, width: int, height: int, frames: int, fps: int, codec: str):  # type: ignore[no-untyped-def]
    stream = container.add_stream(codec, rate=fps)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.time_base = Fraction(1, fps)
    return stream


def _video_frames(stream, width: int, height: int, frames: int):  # type: ignore[no-untyped-def]
    for i in range(frames):
        image = picture(width, height)
        image.paste((0, (i * 20) % 256, 0), (width // 2, height // 2, width, height))
        frame = av.VideoFrame.from_image(image).reformat(format="yuv420p")
        frame.pts = i
        yield from stream.encode(frame)
    yield from stream.encode(None)


def _audio_packets(stream, seconds: float, rate: int = 48000):  # type: ignore[no-untyped-def]
    ctx = stream.codec_context
    resampler = av.AudioResampler(format=ctx.format.name, layout=ctx.layout.name, rate=rate)
    total, step = int(seconds * rate), 960
    for start in range(0, total, step):
        n = min(step, total - start)
        tone = array.array(
            "h", (int(9000 * math.sin(2 * math.pi * 440 * (start + k) / rate)) for k in range(n))
        )
        frame = av.AudioFrame(format="s16", layout="mono", samples=n)
        frame.planes[0].update(tone.tobytes())
        frame.sample_rate = rate
        frame.pts = start
        for converted in resampler.resample(frame):
            yield from stream.encode(converted)
    for converted in resampler.resample(None):
        yield from stream.encode(converted)
    yield from stream.encode(None)


def mp4_video(width: int = 160, height: int = 120, frames: int = 20, fps: int = 10) -> bytes:
    """An H.264 MP4 of ``frames / fps`` seconds (2 s by default)."""

    def build(container) -> None:  # type: ignore[no-untyped-def]
        stream = _add_video(container, width, height, frames, fps, "libx264")
        for packet in _video_frames(stream, width, height, frames):
            container.mux(packet)

    return _encode_av("mp4", ".mp4", build)


def webm_video(width: int = 96, height: int = 64, frames: int = 10, fps: int = 10) -> bytes:
    def build(container) -> None:  # type: ignore[no-untyped-def]
        stream = _add_video(container, width, height, frames, fps, "libvpx")
        for packet in _video_frames(stream, width, height, frames):
            container.mux(packet)

    return _encode_av("webm", ".webm", build)


def audio(fmt: str = "mp3", seconds: float = 1.5) -> bytes:
    """A 440 Hz tone: ``mp3``, ``m4a`` (AAC in MP4), ``ogg`` (Opus) or ``wav``."""
    codec, container_format, suffix = {
        "mp3": ("libmp3lame", "mp3", ".mp3"),
        "m4a": ("aac", "ipod", ".m4a"),
        "mp4": ("aac", "mp4", ".mp4"),
        "ogg": ("libopus", "ogg", ".ogg"),
        "wav": ("pcm_s16le", "wav", ".wav"),
    }[fmt]

    def build(container) -> None:  # type: ignore[no-untyped-def]
        stream = container.add_stream(codec, rate=48000)
        stream.layout = "mono"
        for packet in _audio_packets(stream, seconds):
            container.mux(packet)

    return _encode_av(container_format, suffix, build)


def elf_executable() -> bytes:
    """The start of a 64-bit Linux executable, padded."""
    return b"\x7fELF\x02\x01\x01\x00" + bytes(8) + b"\x02\x00\x3e\x00" + bytes(4000)


def flat_gray_jpeg(width: int, height: int) -> bytes:
    """A baseline grayscale JPEG of one flat grey, written by hand: no pixels in memory.

    Every 8 x 8 block is a zero DC difference and an end of block (two 2-bit
    Huffman codes), so the file is about ``width * height / 128`` bytes and
    decodes for real to ``width x height`` pixels.
    """

    def segment(marker: int, payload: bytes) -> bytes:
        return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload

    one_code = bytes([0, 1] + [0] * 14) + b"\x00"  # one 2-bit code, for symbol 0
    blocks = ((width + 7) // 8) * ((height + 7) // 8)
    return (
        b"\xff\xd8"
        + segment(0xDB, b"\x00" + bytes([1] * 64))
        + segment(0xC0, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00")
        + segment(0xC4, b"\x00" + one_code)  # DC: category 0
        + segment(0xC4, b"\x10" + one_code)  # AC: end of block
        + segment(0xDA, b"\x01\x01\x00\x00\x3f\x00")
        + bytes((blocks + 1) // 2)
        + b"\xff\xd9"
    )


def mjpeg_mp4(width: int, height: int) -> bytes:
    """An MP4 of one Motion-JPEG frame of ``width x height`` that really decodes.

    A 16,000 x 16,000 one is 2 MB: what a decompression bomb in a video looks like.
    """

    def build(container) -> None:  # type: ignore[no-untyped-def]
        stream = container.add_stream("mjpeg", rate=1)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuvj420p"
        packet = av.Packet(flat_gray_jpeg(width, height))
        packet.stream, packet.pts, packet.dts, packet.duration = stream, 0, 0, 1
        container.mux(packet)

    return _encode_av("mp4", ".mp4", build)
