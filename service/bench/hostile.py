"""The worst request bodies known to cost the service most per byte: a PNG of a million tiny
text chunks, a 15.6 MB temperature list, JSON nested 100,000 deep (in a body and in a form field).
`vdvae bench stress` loops them against a server; the service's tests send the same.
"""

from __future__ import annotations

import base64
import functools
import struct
import zlib

# A valid 32x32 grey PNG (a 7), the default model's shape.
DIGIT_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAACAAAAAgCAAAAABWESUoAAAAQElEQVR42mNgGAUMDAwMjHDWf+ziTIRMYCLeCiTwn1IrkA0gywQU"
    "A8gxAdUAMkxAM4B0E9ANINkEDAMImzBCAABeQAghXbLNJQAAAABJRU5ErkJggg=="
)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(kind + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)


def million_chunk_png(png: bytes = DIGIT_PNG, chunks: int = 1_000_000) -> bytes:
    """`png` with `chunks` tiny tEXt chunks after its header (15 MB for a million): still a valid PNG."""
    header_end = 8 + 25  # the signature, then IHDR (length, type, 13 bytes, CRC)
    return png[:header_end] + png_chunk(b"tEXt", b"k\x00v") * chunks + png[header_end:]


def huge_temperature_list(values: int = 3_900_000) -> bytes:
    """A /sample body of `values` temperatures (15.6 MB for 3.9 million)."""
    return b'{"temperature": [' + b",".join([b"1.0"] * values) + b"]}"


def nested_json(depth: int = 100_000) -> bytes:
    return b"[" * depth + b"]" * depth


@functools.cache
def hostile_requests() -> list[tuple[str, dict]]:
    """(path, httpx request arguments) of each worst input (built once: they take a second)."""
    nested = nested_json()
    return [
        ("/encode", {"files": {"image": ("x.png", million_chunk_png())}}),
        ("/sample", {"content": huge_temperature_list(), "headers": {"content-type": "application/json"}}),
        (
            "/encode",
            {"content": b'{"label": ' + nested + b"}", "headers": {"content-type": "application/json"}},
        ),
        ("/encode", {"files": {"image": ("x.png", DIGIT_PNG)}, "data": {"label": nested.decode()}}),
    ]
