"""Tensors of the Open Inference Protocol: an inference request's body -> named numpy arrays, and
named arrays -> the response's body, as JSON `data` or with the binary tensor data extension.

JSON tensors hold their values in `data`, flat or nested in row-major order. With the extension (what
`tritonclient` sends by default), the body is the JSON header, `Inference-Header-Content-Length`
bytes long, then each binary input's raw bytes in order, little-endian, C order; an input says how
many are its own in `parameters.binary_data_size`, and BYTES elements are each a 4-byte little-endian
length and the bytes. An answer puts an output in binary when the request asks for it
(`parameters.binary_data` of the output, or `binary_data_output` of the request) and then carries
the same header.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pydantic_core

from ...errors import MalformedBody, invalid_field

if TYPE_CHECKING:
    from .bodies import RequestInput

HEADER_LENGTH = "inference-header-content-length"

# Datatypes of the protocol -> numpy's little-endian types (BYTES: Python bytes in an object array).
DTYPES: dict[str, str] = {
    "BOOL": "|b1", "UINT8": "|u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
    "INT8": "|i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
    "FP16": "<f2", "FP32": "<f4", "FP64": "<f8", "BYTES": "O",
}  # fmt: skip
DATATYPES = {np.dtype(v).str: k for k, v in DTYPES.items() if k != "BYTES"}


def split_body(raw: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """(the JSON header, the binary tensor data after it)."""
    if header_length is None:
        return raw, b""
    if not header_length.isdigit() or int(header_length) > len(raw):
        raise MalformedBody(
            f"Inference-Header-Content-Length {header_length!r} is not a length within the body "
            f"({len(raw)} bytes)"
        )
    n = int(header_length)
    return raw[:n], raw[n:]


def decode_bytes_elements(raw: bytes, count: int, where: str) -> list[bytes]:
    """BYTES elements in binary: each a 4-byte little-endian length, then that many bytes."""
    out, at = [], 0
    for _ in range(count):
        if at + 4 > len(raw):
            raise invalid_field(where, "the binary BYTES data ends inside an element's length")
        (n,) = struct.unpack_from("<I", raw, at)
        if at + 4 + n > len(raw):
            raise invalid_field(where, "the binary BYTES data ends inside an element")
        out.append(raw[at + 4 : at + 4 + n])
        at += 4 + n
    if at != len(raw):
        raise invalid_field(where, f"the binary BYTES data holds {len(raw) - at} bytes beyond its elements")
    return out


def input_array(tensor: RequestInput, binary: bytes | None, where: str) -> np.ndarray:
    """One request input as an array of its shape and datatype (`binary`: its raw bytes, when sent
    in binary)."""
    datatype, shape = tensor.datatype, tuple(tensor.shape)
    if datatype not in DTYPES:
        raise invalid_field(where, f"datatype {datatype!r} is not one of {', '.join(DTYPES)}")
    count = math.prod(shape)
    if binary is not None:
        if datatype == "BYTES":
            return np.array(decode_bytes_elements(binary, count, where), dtype=object).reshape(shape)
        itemsize = np.dtype(DTYPES[datatype]).itemsize
        if len(binary) != count * itemsize:
            raise invalid_field(
                where, f"shape {list(shape)} of {datatype} needs {count * itemsize} bytes, got {len(binary)}"
            )
        return np.frombuffer(binary, dtype=DTYPES[datatype]).reshape(shape)
    data = tensor.data
    if data is None:
        raise invalid_field(where, "the input has no data: send `data`, or binary data with binary_data_size")
    flat = flatten(data, where)
    if len(flat) != count:
        raise invalid_field(where, f"shape {list(shape)} holds {count} values, data has {len(flat)}")
    if datatype == "BYTES":
        if not all(isinstance(v, str) for v in flat):
            raise invalid_field(where, "BYTES data in JSON are strings")
        return np.array([v.encode() for v in flat], dtype=object).reshape(shape)
    kind = np.dtype(DTYPES[datatype]).kind
    valid = {"b": (bool,), "u": (int,), "i": (int,), "f": (int, float)}[kind]
    if not all(isinstance(v, valid) and (kind == "b" or not isinstance(v, bool)) for v in flat):
        raise invalid_field(
            where, f"{datatype} data are {dict(b='booleans', f='numbers').get(kind, 'integers')}"
        )
    try:
        with np.errstate(over="raise"):  # a float beyond the type's range (an int raises anyway)
            array = np.array(flat, dtype=DTYPES[datatype])
    except (OverflowError, FloatingPointError):
        raise invalid_field(where, f"a value is out of {datatype}'s range") from None
    return array.reshape(shape)


def flatten(data: Any, where: str) -> list[Any]:
    """JSON tensor data, flat or nested in row-major order, as one flat list."""
    if not isinstance(data, list):
        return [data]
    if not any(isinstance(v, list) for v in data):
        return data
    try:
        return np.asarray(data, dtype=object).reshape(-1).tolist()
    except ValueError:  # nested lists of uneven lengths
        raise invalid_field(where, "data nests lists of uneven lengths") from None


def request_arrays(inputs: Sequence[RequestInput], binary: bytes) -> dict[str, np.ndarray]:
    """The request's inputs by name, their binary data taken from `binary` in order."""
    arrays: dict[str, np.ndarray] = {}
    at = 0
    for tensor in inputs:
        name, where = tensor.name, f"inputs.{tensor.name}"
        if name in arrays:
            raise invalid_field(where, f"input {name!r} is given twice")
        size = (tensor.parameters or {}).get("binary_data_size")
        chunk = None
        if size is not None:
            if isinstance(size, bool) or not isinstance(size, int) or size < 0 or at + size > len(binary):
                raise invalid_field(where, f"binary_data_size {size!r} is not within the body's binary data")
            chunk, at = binary[at : at + size], at + size
        arrays[name] = input_array(tensor, chunk, where)
    if at != len(binary):
        raise MalformedBody(f"the body holds {len(binary) - at} bytes of binary data that no input claims")
    return arrays


def response_body(
    header: dict[str, Any], outputs: Sequence[tuple[str, np.ndarray, bool]]
) -> tuple[bytes, dict[str, str]]:
    """(body, headers) of an inference response: `header` (model_name, id, ...) with each output
    (name, array, in binary?) in order."""
    listed, blobs = [], []
    for name, array, binary in outputs:
        array = np.ascontiguousarray(array)
        entry: dict[str, Any] = {
            "name": name,
            "datatype": DATATYPES[array.dtype.str],
            "shape": list(array.shape),
        }
        if binary:
            blob = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = array.reshape(-1).tolist()
        listed.append(entry)
    text = pydantic_core.to_json({**header, "outputs": listed})
    if not blobs:
        return text, {"Content-Type": "application/json"}
    headers = {"Content-Type": "application/octet-stream", "Inference-Header-Content-Length": str(len(text))}
    return b"".join([text, *blobs]), headers
