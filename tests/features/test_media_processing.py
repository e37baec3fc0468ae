"""What the server learns from and makes of media: dimensions, thumbnails, EXIF, durations."""

from __future__ import annotations

import io

import pytest
from PIL import Image, ImageOps

from chatd.client import ApiError
from tests import media_files as mf


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


async def test_images_get_dimensions_and_a_320px_thumbnail(user):
    alice = await user()
    for data, size, thumb in (
        (mf.jpeg(640, 480, gps=False), (640, 480), (320, 240)),
        (mf.jpeg(4000, 3000), (4000, 3000), (320, 240)),
        (mf.png(300, 900, alpha=True), (300, 900), (107, 320)),
        (mf.gif(200, 100), (200, 100), (200, 100)),  # smaller than 320: never enlarged
        (mf.webp(500, 250), (500, 250), (320, 160)),
    ):
        media = await alice.upload_media(data, "application/octet-stream")
        assert (media["width"], media["height"]) == size
        assert media["thumbnail_url"] == media["url"] + "/thumbnail"
        thumbnail = opened(await alice.download_media(media["media_id"], thumbnail=True))
        assert thumbnail.format == "JPEG" and thumbnail.size == thumb, size
        assert not thumbnail.getexif()


@pytest.mark.parametrize("config_overrides", [{"media": {"thumbnail_format": "webp"}}])
async def test_thumbnails_can_be_webp(user):
    alice = await user()
    media = await alice.upload_media(mf.png(640, 640, alpha=True), "image/png")
    thumbnail = opened(await alice.download_media(media["media_id"], thumbnail=True))
    assert thumbnail.format == "WEBP" and thumbnail.size == (320, 320)
    assert thumbnail.mode == "RGBA"  # transparency kept


async def test_exif_orientation_is_applied_and_metadata_stripped(user):
    alice = await user()
    for orientation in range(1, 9):
        original = mf.jpeg(64 * 4, 48 * 4, orientation=orientation)
        upright = ImageOps.exif_transpose(opened(original))
        media = await alice.upload_media(original, "image/jpeg")
        assert (media["width"], media["height"]) == upright.size, orientation

        served = await alice.download_media(media["media_id"])
        assert b"Exif" not in served and b"TestCam" not in served
        image = opened(served)
        assert image.size == upright.size and not image.getexif()
        thumb_bytes = await alice.download_media(media["media_id"], thumbnail=True)
        assert not opened(thumb_bytes).getexif()
        rgb = upright.convert("RGB")
        for x, y in ((0.1, 0.1), (0.9, 0.1), (0.1, 0.9), (0.9, 0.9)):
            expected = rgb.getpixel((int(x * (rgb.width - 1)), int(y * (rgb.height - 1))))
            for got in (mf.colour_at(served, x, y), mf.colour_at(thumb_bytes, x, y)):
                diff = max(abs(a - b) for a, b in zip(got, expected, strict=True))
                assert diff < 40, (orientation, x, y)


async def test_stripping_an_upright_jpeg_is_lossless(user):
    original = mf.jpeg(640, 480)  # GPS in its EXIF, orientation absent
    alice = await user()
    media = await alice.upload_media(original, "image/jpeg")
    served = await alice.download_media(media["media_id"])
    assert served != original and b"Exif" not in served
    assert opened(served).tobytes() == opened(original).tobytes()  # same pixels, bit for bit
    assert media["size"] == len(served)


async def test_png_and_webp_metadata_is_stripped_losslessly(user):
    alice = await user()
    for original in (mf.png(metadata=True), mf.webp(metadata=True)):
        assert opened(original).getexif()  # the test file does carry EXIF
        media = await alice.upload_media(original, "application/octet-stream")
        served = await alice.download_media(media["media_id"])
        image = opened(served)
        assert not image.getexif() and b"Exif" not in served
        assert image.tobytes() == opened(original).tobytes()


async def test_images_without_metadata_are_served_untouched(user):
    alice = await user()
    plain_jpeg = mf.encode(mf.picture(100, 80), "JPEG")
    for data in (plain_jpeg, mf.png(), mf.gif(), mf.webp()):
        media = await alice.upload_media(data, "image/png")
        assert await alice.download_media(media["media_id"]) == data


async def test_video_gets_duration_dimensions_and_a_poster(user):
    alice = await user()
    for data, mime, size, duration in (
        (mf.mp4_video(160, 120, frames=20, fps=10), "video/mp4", (160, 120), 2000),
        (mf.webm_video(96, 64, frames=10, fps=10), "video/webm", (96, 64), 1000),
        (mf.mp4_video(640, 360, frames=5, fps=10), "video/mp4", (640, 360), 500),
    ):
        media = await alice.upload_media(data, "application/octet-stream")
        assert media["mime_type"] == mime
        assert (media["width"], media["height"]) == size
        assert abs(media["duration_ms"] - duration) <= 50
        poster_bytes = await alice.download_media(media["media_id"], thumbnail=True)
        scale = min(1, 320 / max(size))
        assert opened(poster_bytes).size == (round(size[0] * scale), round(size[1] * scale))
        assert mf.colour_at(poster_bytes, 0.1, 0.1)[0] > 200  # the first frame's red corner


async def test_audio_gets_a_duration_and_no_thumbnail(user):
    alice = await user()
    for fmt, mime in (
        ("mp3", "audio/mpeg"),
        ("m4a", "audio/mp4"),
        ("ogg", "audio/ogg"),
        ("wav", "audio/wav"),
    ):
        media = await alice.upload_media(mf.audio(fmt, seconds=1.5), "application/octet-stream")
        assert media["mime_type"] == mime
        assert abs(media["duration_ms"] - 1500) <= 60, fmt
        assert media["width"] is None and media["thumbnail_url"] is None
        with pytest.raises(ApiError) as err:
            await alice.download_media(media["media_id"], thumbnail=True)
        assert err.value.code == "not_found"
