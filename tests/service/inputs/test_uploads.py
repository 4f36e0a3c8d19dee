"""Image decoding and encoding: strict, explained rejections, and no pixel decoded before the header fits."""

from __future__ import annotations

import base64
import io
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from model.imageio import grid_png, image_grid
from service.api.answers import encode_png
from service.batching.items import with_png
from service.errors import InvalidImage
from service.inputs.uploads import decode_base64, decode_image
from service.settings import Settings

from ..conftest import digit_like, png_bytes

LIMITS = Settings()  # the default caps on image structure


def with_declared_size(png: bytes, width: int, height: int) -> bytes:
    """The PNG with its IHDR claiming another size (CRC fixed), pixel data unchanged."""
    start = png.index(b"IHDR")
    ihdr = bytearray(png[start : start + 17])
    ihdr[4:12] = struct.pack(">II", width, height)
    crc = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return png[:start] + bytes(ihdr) + crc + png[start + 21 :]


def test_png_and_jpeg_decode_to_the_models_layout() -> None:
    grey = digit_like()
    assert np.array_equal(decode_image(png_bytes(grey), 32, 1, LIMITS), grey)
    rgb = digit_like(channels=3)
    assert np.array_equal(decode_image(png_bytes(rgb), 32, 3, LIMITS), rgb)
    jpeg = decode_image(png_bytes(grey, fmt="JPEG"), 32, 1, LIMITS)
    assert jpeg.shape == (32, 32, 1) and np.abs(jpeg.astype(int) - grey).mean() < 10  # lossy but close


@pytest.mark.parametrize(
    ("data", "size", "channels", "message"),
    [
        (
            png_bytes(digit_like(size=28)),
            32,
            1,
            "expected a 32x32 grey-scale PNG or JPEG, got 28x28 grey-scale",
        ),
        (png_bytes(digit_like(channels=3)), 32, 1, "got 32x32 RGB PNG; convert it first"),
        (png_bytes(digit_like()), 32, 3, "img.convert('RGB')"),
        (png_bytes(np.zeros((32, 32, 4), np.uint8)), 32, 3, "got 32x32 RGBA"),
        (b"GIF89a" + b"\x00" * 100, 32, 1, "not a PNG or JPEG"),
        (b"", 32, 1, "empty"),
        (png_bytes(digit_like())[:-30], 32, 1, "truncated"),
    ],
)
def test_rejections_say_what_was_expected(data: bytes, size: int, channels: int, message: str) -> None:
    with pytest.raises(InvalidImage) as err:
        decode_image(data, size, channels, LIMITS)
    assert message in err.value.detail
    assert err.value.status == 422


def test_gif_is_refused_even_when_pillow_could_read_it() -> None:
    buf = io.BytesIO()
    Image.fromarray(digit_like()[..., 0]).save(buf, format="GIF")
    with pytest.raises(InvalidImage, match="not a PNG or JPEG"):
        decode_image(buf.getvalue(), 32, 1, LIMITS)


@pytest.mark.parametrize(("width", "height"), [(4000, 4000), (60000, 60000)])
def test_oversized_headers_are_rejected_without_decoding(width: int, height: int) -> None:
    bomb = with_declared_size(png_bytes(digit_like()), width, height)
    t0 = time.perf_counter()
    with pytest.raises(InvalidImage):
        decode_image(bomb, 32, 1, LIMITS)
    assert time.perf_counter() - t0 < 0.5


def test_encode_png_round_trips_grey_and_rgb() -> None:
    for img in (digit_like(), digit_like(channels=3)):
        decoded = np.asarray(Image.open(io.BytesIO(encode_png(img))))
        assert np.array_equal(decoded.reshape(img.shape), img)


def test_an_image_carries_its_own_png_and_nothing_made_from_it_does() -> None:
    batch = np.stack([digit_like(seed=0), digit_like(seed=1)])
    images = with_png(batch)
    for image, pixels in zip(images, batch):
        assert np.array_equal(image, pixels)
        assert image.png is not None and encode_png(image) is image.png
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(image.png))).reshape(pixels.shape), pixels)
    # Views, copies and stacks are other images: they are encoded from their own pixels.
    for other in (images[0][:16], images[0].copy(), images[0][::-1], np.stack(images)[1]):
        assert getattr(other, "png", None) is None
    flipped = images[0][::-1]
    decoded = np.asarray(Image.open(io.BytesIO(encode_png(flipped))))
    assert np.array_equal(decoded.reshape(flipped.shape), flipped)


@pytest.mark.parametrize("shape", [(1, 1, 1), (32, 32, 1), (7, 13, 3), (64, 48, 3)])
def test_png_writer_is_exact_and_valid_at_any_size(shape: tuple[int, int, int]) -> None:
    """Our own PNG writer: Pillow verifies its chunks' CRCs and reads back every pixel (full range)."""
    img = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    data = encode_png(img)
    Image.open(io.BytesIO(data)).verify()
    with Image.open(io.BytesIO(data)) as decoded:
        assert decoded.mode == ("L" if shape[2] == 1 else "RGB") and decoded.size == (shape[1], shape[0])
        assert np.array_equal(np.asarray(decoded).reshape(shape), img)
    expected = image_grid(np.stack([img, img]))
    grid = np.asarray(Image.open(io.BytesIO(grid_png(np.stack([img, img])))))
    assert np.array_equal(grid.reshape(expected.shape), expected)


def test_grid_is_row_major_with_a_border() -> None:
    """The layout of `Accept: image/png` grids (X-Grid-Columns = ceil(sqrt(n)))."""
    tiles = np.stack([np.full((4, 4, 1), v, np.uint8) for v in (10, 20, 30)])
    tiled = image_grid(tiles, pad=1)  # default columns: ceil(sqrt(3)) = 2
    assert tiled.shape == (2 * 4 + 3, 2 * 4 + 3, 1)
    assert tiled[1, 1, 0] == 10 and tiled[1, 6, 0] == 20 and tiled[6, 1, 0] == 30
    assert tiled[6, 6, 0] == 0 and tiled[0, 0, 0] == 0


def test_base64_accepts_a_data_url_and_rejects_garbage() -> None:
    raw = png_bytes(digit_like())
    b64 = base64.b64encode(raw).decode()
    assert decode_base64(b64) == raw
    assert decode_base64("data:image/png;base64," + b64) == raw
    with pytest.raises(InvalidImage, match="base64"):
        decode_base64("not base64!")
