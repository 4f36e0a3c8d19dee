"""The requests the service benchmark sends, one kind per endpoint that samples: the same images
(n, temperature, a fresh seed each time) asked of /sample, of OpenAI's /v1/images/generations, and
of the Open Inference Protocol's infer in JSON and with binary tensors (tritonclient's default), so
the server's CPU per request of each can be set side by side.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Request:
    path: str
    body: bytes
    content_type: str = "application/json"
    headers: str = ""  # more header lines, each ending in CRLF


# (the request's n, temperature and model, a seed) -> the request
Builder = Callable[[dict, str, int], Request]


def sample(spec: dict, model: str, seed: int) -> Request:
    return Request("/sample", json.dumps({**spec, "model": model, "seed": seed}).encode())


def openai(spec: dict, model: str, seed: int) -> Request:
    body = {"prompt": "", **spec, "model": model, "seed": seed}
    return Request("/v1/images/generations", json.dumps(body).encode())


def inference_inputs(spec: dict, seed: int) -> tuple[list[int], list[float]]:
    n = int(spec.get("n", 1))
    return [seed + i for i in range(n)], [float(spec.get("temperature", 1.0))] * n


def inference_json(spec: dict, model: str, seed: int) -> Request:
    seeds, temperatures = inference_inputs(spec, seed)
    body = {
        "inputs": [
            {"name": "seed", "shape": [len(seeds)], "datatype": "INT64", "data": seeds},
            {"name": "temperature", "shape": [len(seeds)], "datatype": "FP32", "data": temperatures},
        ],
        "outputs": [{"name": "images"}],
    }
    return Request(f"/v2/models/{model}/infer", json.dumps(body).encode())


def inference_binary(spec: dict, model: str, seed: int) -> Request:
    """As tritonclient sends it by default: the inputs' bytes after the JSON header, the outputs
    asked for in binary."""
    seeds, temperatures = inference_inputs(spec, seed)
    raw = [struct.pack(f"<{len(seeds)}q", *seeds), struct.pack(f"<{len(seeds)}f", *temperatures)]
    inputs = [
        {
            "name": name,
            "shape": [len(seeds)],
            "datatype": datatype,
            "parameters": {"binary_data_size": len(b)},
        }
        for name, datatype, b in zip(("seed", "temperature"), ("INT64", "FP32"), raw)
    ]
    outputs = [{"name": "images", "parameters": {"binary_data": True}}]
    header = json.dumps({"inputs": inputs, "outputs": outputs}).encode()
    length = f"Inference-Header-Content-Length: {len(header)}\r\n"
    return Request(f"/v2/models/{model}/infer", header + b"".join(raw), "application/octet-stream", length)


ENDPOINTS: dict[str, Builder] = {
    "sample": sample,
    "openai": openai,
    "v2-json": inference_json,
    "v2-binary": inference_binary,
}
