"""Uploaded images (PNG or JPEG, as multipart files or base64), decoded and checked.

Policy: strict. An upload must already have the model's size and channel count (grey-scale `L`
for 1-channel models, `RGB` for 3-channel ones); anything else is rejected with a message that
says what was expected and what arrived, rather than silently resized or converted, because a
silently converted image would change the reported bits and likelihoods. The declared size is
checked before any pixel is decoded, so a decompression bomb is rejected from its header.

Before Pillow sees the bytes, the file's structure is walked (a few microseconds a chunk): Pillow
reads every PNG chunk and JPEG segment before the pixels in Python, so a 15 MB PNG of a million tiny
text chunks took it 5.5 s. Files with more chunks than max_image_chunks, or more metadata (PNG
ancillary chunks, JPEG APPn/COM segments) than max_image_metadata_chunks / _bytes, are refused first.
"""

from __future__ import annotations

import base64
import binascii
import io
import struct
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from model.imageio import MODE_CHANNELS

from ..errors import InvalidImage
from ..settings import Settings

ACCEPTED_FORMATS = ("PNG", "JPEG")
MODE_FOR_CHANNELS = {1: "L", 3: "RGB"}
CHANNEL_WORDS = {1: "grey-scale", 3: "RGB"}


def decode_base64(data: str, field: str = "image_b64") -> bytes:
    """Standard base64 (a `data:image/...;base64,` prefix is allowed) -> bytes, or InvalidImage."""
    if data.startswith("data:"):
        _, _, data = data.partition(",")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidImage(f"{field} is not valid base64") from None


def describe(mode: str, size: tuple[int, int]) -> str:
    channels = MODE_CHANNELS.get(mode)
    what = CHANNEL_WORDS.get(channels, f"mode {mode}") if mode not in ("RGBA", "LA") else mode
    return f"{size[0]}x{size[1]} {what}"


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8"


class _StructureCount:
    """Chunks and metadata of one file, refused as soon as a cap is passed."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.chunks = self.metadata_chunks = self.metadata_bytes = 0

    def add(self, length: int, metadata: bool) -> None:
        s = self.settings
        self.chunks += 1
        if self.chunks > s.max_image_chunks:
            raise InvalidImage(f"the image file has more than {s.max_image_chunks} chunks or segments")
        if metadata:
            self.metadata_chunks += 1
            self.metadata_bytes += length
            if self.metadata_chunks > s.max_image_metadata_chunks:
                raise InvalidImage(
                    f"the image carries more than {s.max_image_metadata_chunks} metadata chunks "
                    "(text, profiles, EXIF); strip them, e.g. save it again without metadata"
                )
            if self.metadata_bytes > s.max_image_metadata_bytes:
                raise InvalidImage(
                    f"the image carries more than {s.max_image_metadata_bytes} bytes of metadata "
                    "(text, profiles, EXIF); strip them, e.g. save it again without metadata"
                )


def check_structure(data: bytes, settings: Settings) -> None:
    """Walk a PNG's chunks (to IEND) or a JPEG's segments (to the scan) against the caps."""
    count = _StructureCount(settings)
    if data.startswith(PNG_SIGNATURE):
        pos = len(PNG_SIGNATURE)
        while pos + 8 <= len(data):
            length, kind = struct.unpack_from(">I4s", data, pos)
            count.add(length, metadata=bool(kind[0] & 0x20))  # lower-case first letter: ancillary
            if kind == b"IEND":
                return
            pos += 12 + length  # length, type, data, CRC
    elif data.startswith(JPEG_SOI):
        pos = len(JPEG_SOI)
        while pos + 4 <= len(data) and data[pos] == 0xFF:
            marker = data[pos + 1]
            if marker in (0xDA, 0xD9):  # start of scan, end of image: the rest is pixels
                return
            if marker == 0xFF or marker == 0x01 or 0xD0 <= marker <= 0xD8:  # fill byte or no length
                count.add(0, metadata=False)
                pos += 1 if marker == 0xFF else 2
                continue
            length = int.from_bytes(data[pos + 2 : pos + 4], "big")
            count.add(length, metadata=0xE0 <= marker <= 0xEF or marker == 0xFE)  # APPn, COM
            pos += 2 + length


def decode_image(data: bytes, size: int, channels: int, settings: Settings) -> np.ndarray:
    """PNG or JPEG bytes -> uint8 array (size, size, channels), or InvalidImage saying why not."""
    expected = f"a {size}x{size} {CHANNEL_WORDS.get(channels, f'{channels}-channel')} PNG or JPEG"
    if not data:
        raise InvalidImage(f"the image is empty; expected {expected}")
    check_structure(data, settings)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except UnidentifiedImageError:
        raise InvalidImage(f"the upload is not a PNG or JPEG image; expected {expected}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning, OSError, ValueError) as e:
        raise InvalidImage(f"the image header could not be read ({e}); expected {expected}") from None
    got = describe(img.mode, img.size)
    # Size and channels come from the header: checked before decoding any pixel.
    if img.size != (size, size) or img.mode != MODE_FOR_CHANNELS.get(channels):
        hint = ""
        if img.size == (size, size) and channels in MODE_FOR_CHANNELS:
            hint = f"; convert it first, e.g. with Pillow: img.convert({MODE_FOR_CHANNELS[channels]!r})"
        raise InvalidImage(f"expected {expected}, got {got} {img.format}{hint}")
    try:
        img.load()
    except (OSError, ValueError, SyntaxError) as e:  # truncated or corrupt pixel data
        raise InvalidImage(f"the {img.format} image is corrupt or truncated: {e}") from None
    array = np.asarray(img, dtype=np.uint8)
    return array.reshape(size, size, channels)
