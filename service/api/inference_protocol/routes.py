"""The Open Inference Protocol (KServe's v2 REST API), so that the tools of Triton, KServe and
MLServer (`tritonclient`, an InferenceService's probes, perf_analyzer-style load) use the service as
they use any model server: GET /v2 (server metadata), /v2/health/live, /v2/health/ready,
/v2/models/{name} (model metadata), /v2/models/{name}/ready, and POST /v2/models/{name}/infer.

Each served model is three entries of the protocol (`entries`): `{name}` samples, `{name}.encode`
encodes images into their latents, `{name}.decode` decodes latents into images (a super-resolution
model: encode only; cascades are not entries). An inference request's tensors become the items of
the matching operation, checked per image by the same code as /sample's, /encode's and /decode's
bodies, and run on the same batchers as every other request: the same seeds and settings give the
same images as /sample. Errors have the protocol's shape `{"error": "..."}` (service/errors.py).

Inputs, one row per image (a one-row input applies to every image; `seed` [s] gives image i the
seed s + i, as /sample): `seed` INT64, `label` INT64 (-1: the unconditional prior) or BYTES (a class
name), `temperature` FP32, `guidance` FP32 rows (mean, variance); encode's `image` UINT8
(n, H, W, C); decode's `z_0` .. `z_{k-1}` FP32, the top k latent layers, as encode gives them.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from fastapi import APIRouter, Request, Response
from pydantic import ValidationError

from model.sampling import MAX_SEED

from ...batching.items import DecodeItem, EncodeItem, SampleItem
from ...batching.operations import DECODE, ENCODE, SAMPLE, Operation
from ...errors import InvalidInput, ModelNotFound, invalid_field, invalid_input
from ...inputs.body_limits import JSON_BYTES_PER_VALUE
from ...inputs.payloads import json_body, media_type
from ...inputs.validation import label_for, sampling_for, seeds_for, within_image_limit
from ...registry import ModelRegistry, ServedModel
from ...settings import Settings
from ...state import Phase, ServiceState
from ..images.bodies import SampleRequest
from ..routing import DirectModelRoute, ModelRequest, service_state
from .bodies import (
    InferenceRequest,
    InferenceResponse,
    MetadataTensor,
    ModelMetadata,
    ServerMetadata,
    inference_error_responses,
)
from .tensors import HEADER_LENGTH, request_arrays, response_body, split_body

router = APIRouter(tags=["open inference protocol"])
infer_router = APIRouter(route_class=DirectModelRoute, tags=["open inference protocol"])

Kind = Literal["sample", "encode", "decode"]
OPERATIONS: dict[str, Operation[Any, Any]] = {"sample": SAMPLE, "encode": ENCODE, "decode": DECODE}
EXTENSIONS = ["binary_tensor_data"]


@dataclass(frozen=True)
class Entry:
    """A model of the protocol: an operation of a served model."""

    name: str
    model: ServedModel
    kind: Kind

    @property
    def op(self) -> Operation[Any, Any]:
        return OPERATIONS[self.kind]

    @functools.cached_property
    def metadata(self) -> ModelMetadata:
        return metadata(self)

    @functools.cached_property
    def inputs(self) -> list[str]:
        return [t.name for t in self.metadata.inputs]

    @functools.cached_property
    def outputs(self) -> list[str]:
        return [t.name for t in self.metadata.outputs]

    @functools.cached_property
    def per_image(self) -> tuple[str, ...]:
        """The inputs with a row per image."""
        return (*INPUTS[self.kind], *(f"z_{i}" for i in range(self.model.num_layers)))


# The entries of the registry last asked about: it is loaded once, and each request asks.
_entries: tuple[ModelRegistry | None, dict[str, Entry]] = (None, {})


def entries(registry: ModelRegistry) -> dict[str, Entry]:
    """The protocol's models: each served model's name (sampling), `.encode` and `.decode`, for the
    operations that serve it; a name a served model has already is that model's."""
    global _entries
    if _entries[0] is not registry:
        _entries = (registry, table(registry))
    return _entries[1]


def table(registry: ModelRegistry) -> dict[str, Entry]:
    out: dict[str, Entry] = {}
    taken = {*registry.models, *registry.cascades}
    for model in registry.models.values():
        for kind in OPERATIONS:
            name = model.name if kind == "sample" else f"{model.name}.{kind}"
            if OPERATIONS[kind].serves(model.vae) and (kind == "sample" or name not in taken):
                out[name] = Entry(name, model, kind)
    return out


def entry_for(svc: ServiceState, name: str) -> Entry:
    found = entries(svc.registry).get(name)
    if found is None:
        known = ", ".join(sorted(entries(svc.registry))) or "none"
        raise ModelNotFound(f"no model named {name!r} here; served: {known}")
    return found


# --------------------------------------------------------------------------------------------
# Metadata
# --------------------------------------------------------------------------------------------


def per_image_inputs(model: ServedModel) -> list[MetadataTensor]:
    """The sampling options of sample and decode, one row per image."""
    inputs = [MetadataTensor(name="seed", datatype="INT64", shape=[-1])]
    if model.hp.conditional:
        inputs.append(MetadataTensor(name="label", datatype="INT64", shape=[-1]))
    inputs.append(MetadataTensor(name="temperature", datatype="FP32", shape=[-1]))
    if model.hp.conditional:
        inputs.append(MetadataTensor(name="guidance", datatype="FP32", shape=[-1, 2]))
    return inputs


def image_outputs(model: ServedModel) -> list[MetadataTensor]:
    hp = model.hp
    outputs = [
        MetadataTensor(
            name="images", datatype="UINT8", shape=[-1, hp.image_size, hp.image_size, hp.image_channels]
        ),
        MetadataTensor(name="seed", datatype="INT64", shape=[-1]),
    ]
    if hp.conditional:
        outputs.append(MetadataTensor(name="label", datatype="INT64", shape=[-1]))
    return outputs


def latent_tensors(model: ServedModel) -> list[MetadataTensor]:
    return [
        MetadataTensor(name=f"z_{i}", datatype="FP32", shape=[-1, *shape])
        for i, shape in enumerate(model.vae.latent_shapes())
    ]


def metadata(entry: Entry) -> ModelMetadata:
    model, hp = entry.model, entry.model.hp
    if entry.kind == "sample":
        inputs, outputs = per_image_inputs(model), image_outputs(model)
    elif entry.kind == "decode":
        inputs, outputs = latent_tensors(model) + per_image_inputs(model), image_outputs(model)
    else:
        image = MetadataTensor(name="image", datatype="UINT8", shape=image_outputs(model)[0].shape)
        inputs = [image, MetadataTensor(name="seed", datatype="INT64", shape=[-1])]
        if hp.conditional:
            inputs.append(MetadataTensor(name="label", datatype="INT64", shape=[-1]))
        outputs = [
            *latent_tensors(model),
            MetadataTensor(name="kl_bits", datatype="FP32", shape=[-1, hp.num_layers]),
            MetadataTensor(name="bits_per_dim", datatype="FP32", shape=[-1]),
            MetadataTensor(name="seed", datatype="INT64", shape=[-1]),
        ]
    parameters = {"operation": entry.kind, "model": model.name, "family": model.vae.family}
    return ModelMetadata(
        name=entry.name, platform="pytorch", inputs=inputs, outputs=outputs, parameters=parameters
    )


# --------------------------------------------------------------------------------------------
# An inference request -> items
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Inference:
    entry: Entry
    request: InferenceRequest
    items: list[SampleItem] | list[EncodeItem] | list[DecodeItem]
    outputs: list[tuple[str, bool]]  # the outputs to answer, in order, and whether each is binary
    timeout_ms: int | None


def most_values(entry: Entry, settings: Settings) -> int:
    """The most JSON values a request to `entry` can need: its tensors for the most images a request
    may ask for, and the usual fields."""
    hp = entry.model.hp
    per_image = 8  # seed, label, temperature, guidance
    if entry.kind == "encode":
        per_image += hp.image_size**2 * hp.image_channels
    if entry.kind == "decode":
        per_image += sum(math.prod(s) for s in entry.model.vae.latent_shapes())
    return settings.max_json_values + settings.max_images_per_request * per_image


def inference_body_limits(registry: ModelRegistry, settings: Settings) -> dict[str, int]:
    """{path: most body bytes} of each entry's infer endpoint: its tensors as JSON text (larger than
    in binary), within max_body_bytes."""
    return {
        f"/v2/models/{name}/infer": min(
            JSON_BYTES_PER_VALUE * most_values(entry, settings), settings.max_body_bytes
        )
        for name, entry in entries(registry).items()
    }


def batch_size(arrays: dict[str, np.ndarray], per_image: tuple[str, ...]) -> int:
    """The images of the request: the rows of its per-image inputs (one-row inputs apply to all)."""
    rows = {
        name: a.shape[0] for name, a in arrays.items() if name in per_image and a.ndim and a.shape[0] != 1
    }
    if 0 in rows.values():
        raise invalid_field("inputs", "an input with no rows: a request draws at least one image")
    if len(set(rows.values())) > 1:
        listed = ", ".join(f"{name} {n}" for name, n in rows.items())
        raise invalid_field(
            "inputs", f"the inputs have different numbers of rows ({listed}); one row applies to every image"
        )
    return next(iter(rows.values()), 1)


def integers(arrays: dict[str, np.ndarray], name: str) -> np.ndarray | None:
    a = arrays.get(name)
    if a is not None and a.dtype.kind not in "iu" and not (name == "label" and a.dtype == object):
        raise invalid_field(f"inputs.{name}", f"{name} is an integer tensor (INT64), got {a.dtype}")
    return a


def floats(arrays: dict[str, np.ndarray], name: str) -> np.ndarray | None:
    a = arrays.get(name)
    if a is not None and a.dtype.kind not in "fiu":
        raise invalid_field(f"inputs.{name}", f"{name} is a float tensor (FP32)")
    return a


def row(a: np.ndarray, i: int) -> Any:
    """Image i's row of a per-image input (a one-row input: every image's)."""
    return a[0 if a.shape[0] == 1 else i]


def expect_rows(arrays: dict[str, np.ndarray], name: str, shape: tuple[int, ...]) -> None:
    """An input of one row or one per image, each row of `shape`."""
    a = arrays.get(name)
    if a is not None and (a.ndim != 1 + len(shape) or tuple(a.shape[1:]) != shape):
        rows = "[n" + "".join(f", {d}" for d in shape) + "]"
        raise invalid_field(
            f"inputs.{name}", f"{name} has shape {list(a.shape)}; it takes {rows} (n: 1 or one per image)"
        )


def image_seeds(arrays: dict[str, np.ndarray], n: int) -> list[int]:
    """Each image's seed: one per image, or the first's (image i: seed + i), or random."""
    seeds = integers(arrays, "seed")
    if seeds is None:
        return seeds_for(None, n)
    values = [int(s) for s in seeds.reshape(-1)]
    bad = [s for s in values if not 0 <= s <= MAX_SEED]
    if bad:
        raise invalid_field("inputs.seed", f"seeds are 0..{MAX_SEED}, got {bad[0]}")
    return seeds_for(values[0], n) if len(values) == 1 else values


def label_value(value: Any) -> int | str | None:
    """A label as /sample's body takes it: -1 is the unconditional prior (null); BYTES: a class name."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return None if int(value) == -1 else int(value)


def sampling_item(
    arrays: dict[str, np.ndarray], i: int, seed: int, model: ServedModel, settings: Settings
) -> SampleItem:
    """Image i's seed, label, temperature and guidance as /sample's body with that one image (the
    model's defaults for what the request leaves out)."""
    fields: dict[str, Any] = {"seed": seed}
    if (labels := integers(arrays, "label")) is not None:
        fields["label"] = label_value(row(labels, i))
    if (temperatures := floats(arrays, "temperature")) is not None:
        fields["temperature"] = float(row(temperatures, i))
    if (guidance := floats(arrays, "guidance")) is not None:
        mean, variance = (float(w) for w in row(guidance, i))
        fields["guidance"] = {"mean": mean, "variance": variance}
    try:
        (item,) = sampling_for(SampleRequest.model_validate(fields), model, settings, [seed])
    except InvalidInput as e:
        raise renamed(e, i) from None
    except ValidationError as e:
        errors = [
            {**err, "loc": ["body", "inputs", *err["loc"]], "msg": f"image {i}: {err['msg']}"}
            for err in e.errors()
        ]
        raise invalid_input(errors) from None
    return item


def renamed(e: InvalidInput, i: int) -> InvalidInput:
    """A /sample check's 422, pointed at the input and image it is about."""
    return invalid_input(
        [
            {**err, "loc": ["body", "inputs", *err["loc"][1:]], "msg": f"image {i}: {err['msg']}"}
            for err in e.extra.get("errors", [])
        ]
    )


def requested_outputs(req: InferenceRequest, entry: Entry, layers: int) -> list[tuple[str, bool]]:
    """The outputs to answer (all of the model's when none are named) and whether each is binary."""
    known = entry.outputs
    binary = bool((req.parameters or {}).get("binary_data_output", False))
    if req.outputs is None:
        return [(name, binary) for name in known if not name.startswith("z_") or int(name[2:]) < layers]
    out = []
    for o in req.outputs:
        if o.name not in known:
            raise invalid_field(
                "outputs", f"model {entry.name!r} has no output {o.name!r}; its outputs: {', '.join(known)}"
            )
        params = o.parameters or {}
        if params.get("classification"):
            raise invalid_field("outputs", "the classification extension is not supported")
        out.append((o.name, bool(params.get("binary_data", binary))))
    return out


def encoded_layers(req: InferenceRequest, entry: Entry) -> int:
    """How many top latent layers encode returns: up to the deepest z_i named, all when none are."""
    if req.outputs is None:
        return entry.model.num_layers
    named = [int(o.name[2:]) + 1 for o in req.outputs if o.name.startswith("z_") and o.name[2:].isdigit()]
    return max(named, default=0)


def latents_given(arrays: dict[str, np.ndarray], model: ServedModel, n: int) -> list[np.ndarray]:
    """decode's z_0 .. z_{k-1}: the top k layers, each (n, *its shape), finite."""
    shapes = model.vae.latent_shapes()
    k = 0
    while f"z_{k}" in arrays:
        k += 1
    extra = [
        name for name in arrays if name.startswith("z_") and not (name[2:].isdigit() and int(name[2:]) < k)
    ]
    if k == 0 or extra:
        given = ", ".join(sorted(name for name in arrays if name.startswith("z_"))) or "none"
        raise invalid_field(
            "inputs",
            f"model {model.name!r} decodes its top latent layers z_0 .. z_(k-1), 1 <= k <= {len(shapes)}; "
            f"got {given}",
        )
    out = []
    for i in range(k):
        z = floats(arrays, f"z_{i}")
        assert z is not None
        if tuple(z.shape) != (n, *shapes[i]):
            raise invalid_field(
                f"inputs.z_{i}",
                f"z_{i} has shape {list(z.shape)}; model {model.name!r} takes {[n, *shapes[i]]}",
            )
        z = z.astype(np.float32)
        if not np.isfinite(z).all():
            raise invalid_field(f"inputs.z_{i}", "latents must be finite (no NaN or infinity)")
        out.append(z)
    return out


INPUTS: dict[Kind, tuple[str, ...]] = {
    "sample": ("seed", "label", "temperature", "guidance"),
    "encode": ("image", "seed", "label"),
    "decode": ("seed", "label", "temperature", "guidance"),
}


def infer_input(
    name: str, header_length: str | None, raw: bytes, content_type: str, svc: ServiceState
) -> Inference:
    """An inference request's body -> the items of its entry's operation, checked."""
    entry = entry_for(svc, name)
    model, settings = entry.model, svc.settings
    if header_length is not None and media_type(content_type) == "application/octet-stream":
        content_type = "application/json"  # the header's; the binary data follow it
    header, binary = split_body(raw, header_length)
    req = json_body(header, content_type, InferenceRequest, settings, max_values=most_values(entry, settings))
    arrays = request_arrays(req.inputs, binary)
    known = set(INPUTS[entry.kind]) | set(entry.inputs)
    unknown = [n for n in arrays if n not in known]
    if unknown:
        listed = ", ".join(entry.inputs)
        raise invalid_field(
            "inputs", f"model {entry.name!r} has no input {unknown[0]!r}; its inputs: {listed}"
        )
    if not model.hp.conditional and {"label", "guidance"} & set(arrays):
        raise invalid_field("inputs", f"model {model.name!r} is unconditional: it takes no label or guidance")
    for option, shape in (("seed", ()), ("label", ()), ("temperature", ()), ("guidance", (2,))):
        expect_rows(arrays, option, shape)
    n = batch_size(arrays, entry.per_image)
    within_image_limit("images", n, settings)
    seeds = image_seeds(arrays, n)
    items: Any
    if entry.kind == "encode":
        items = encode_items(arrays, n, seeds, model, encoded_layers(req, entry))
    else:
        options = [sampling_item(arrays, i, seeds[i], model, settings) for i in range(n)]
        if entry.kind == "sample":
            items = options
        else:
            zs = latents_given(arrays, model, n)
            items = [
                DecodeItem(tuple(z[i] for z in zs), o.seed, o.temperature, o.label, o.guidance)
                for i, o in enumerate(options)
            ]
    timeout = (req.parameters or {}).get("timeout")  # Triton's: microseconds
    timeout_ms = None if not isinstance(timeout, int) or timeout <= 0 else max(1, math.ceil(timeout / 1000))
    return Inference(entry, req, items, requested_outputs(req, entry, encoded_layers(req, entry)), timeout_ms)


def encode_items(
    arrays: dict[str, np.ndarray], n: int, seeds: list[int], model: ServedModel, layers: int
) -> list[EncodeItem]:
    hp = model.hp
    images = arrays.get("image")
    shape = (n, hp.image_size, hp.image_size, hp.image_channels)
    if images is None:
        raise invalid_field("inputs", f"model {model.name!r} encodes the input `image`: UINT8 {list(shape)}")
    if images.dtype != np.uint8 or tuple(images.shape) != shape:
        raise invalid_field(
            "inputs.image",
            f"image is UINT8 {list(shape)} for model {model.name!r}; got {images.dtype} {list(images.shape)}",
        )
    labels = integers(arrays, "label")
    out = []
    for i in range(n):
        label = None if labels is None else label_value(row(labels, i))
        try:
            checked = label_for(label, model)
        except InvalidInput as e:
            raise renamed(e, i) from None
        out.append(EncodeItem(image=images[i], seed=seeds[i], label=checked, latent_layers=layers))
    return out


# --------------------------------------------------------------------------------------------
# Endpoints
# --------------------------------------------------------------------------------------------

ERRORS = inference_error_responses(400, 404, 408, 413, 415, 503, 504)


def empty(answer: str) -> dict[str, Any]:
    """A health answer: the status is the answer, the body is empty (the protocol's)."""
    return {"description": answer}


@router.get("/v2", response_model=ServerMetadata, summary="Server metadata")
async def server_metadata(request: Request) -> ServerMetadata:
    return ServerMetadata(name="vdvae-serve", version=request.app.version, extensions=EXTENSIONS)


@router.get(
    "/v2/health/live",
    summary="Live: 200 while the process serves",
    response_class=Response,
    responses={200: empty("live")},
)
async def live() -> Response:
    return Response(status_code=200)


@router.get(
    "/v2/health/ready",
    summary="Ready: 200 once every model is loaded and warmed up",
    response_class=Response,
    responses={200: empty("ready"), 400: empty("not ready: loading, warming up, or draining")},
)
async def ready(request: Request) -> Response:
    return Response(status_code=200 if service_state(request).phase is Phase.READY else 400)


@router.get("/v2/models/{name}", response_model=ModelMetadata, responses=ERRORS, summary="Model metadata")
async def model_metadata(name: str, request: Request) -> ModelMetadata:
    svc = service_state(request)
    if (refusal := svc.refusal()) is not None:
        raise refusal
    return entry_for(svc, name).metadata


@router.get(
    "/v2/models/{name}/ready",
    summary="Model ready",
    response_class=Response,
    responses={
        200: empty("ready"),
        400: empty("not ready: the service is loading, warming up, or draining"),
        **inference_error_responses(404),
    },
)
async def model_ready(name: str, request: Request) -> Response:
    svc = service_state(request)
    if svc.phase is not Phase.READY:
        return Response(status_code=400)
    entry_for(svc, name)
    return Response(status_code=200)


def write_bounds(schema: dict[str, Any], state: ServiceState) -> None:
    """The names of the protocol's models, on the paths that take one (openapi.install_openapi)."""
    names = sorted(entries(state.registry))
    for path, operations in schema["paths"].items():
        if names and path.startswith("/v2/models/{name}"):
            for operation in operations.values():
                for parameter in operation.get("parameters", ()):
                    if parameter["name"] == "name":
                        parameter["schema"]["enum"] = names


def request_body() -> dict[str, Any]:
    """infer's body (read by the route: FastAPI sees no parameters) and its path's model name. The
    binary tensor data extension's bodies are described in words: a schema cannot say where the
    JSON header ends."""
    schema = {"$ref": "#/components/schemas/InferenceRequest"}
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "title": "Name"}}
    return {
        "parameters": [name],
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
    }


@infer_router.post(
    "/v2/models/{name}/infer",
    summary="Inference: sample, encode or decode, batched with every other request",
    response_model=InferenceResponse,
    responses={
        200: {
            "content": {"application/octet-stream": {}},
            "description": "JSON; with binary outputs, the JSON header (Inference-Header-Content-Length "
            "bytes) and then their bytes",
        },
        **ERRORS,
    },
    openapi_extra=request_body(),
)
async def infer(request: ModelRequest) -> Response:
    """The entry's operation on the request's images (GET /v2/models/{name}: its inputs and outputs).

    With the binary tensor data extension (tritonclient's default), the body is this JSON,
    `Inference-Header-Content-Length` bytes long, then the bytes of each input whose parameters give
    its `binary_data_size`, in order; outputs asked for with `binary_data` (or all, with the request's
    `binary_data_output`) come back the same way."""
    name = request.path_params["name"]
    build = functools.partial(infer_input, name, request.headers.get(HEADER_LENGTH))
    inference = await request.parse(build)
    entry = inference.entry
    results = await request.run(entry.op, entry.model, inference.items, inference.timeout_ms)
    tensors = output_tensors(entry, inference.items, results)
    header: dict[str, Any] = {"model_name": entry.name}
    if inference.request.id is not None:
        header["id"] = inference.request.id
    body, headers = response_body(
        header, [(name, tensors[name], binary) for name, binary in inference.outputs]
    )
    return Response(body, headers=headers)


def output_tensors(entry: Entry, items: Any, results: list[Any]) -> dict[str, np.ndarray]:
    seeds = np.array([it.seed for it in items], dtype=np.int64)
    if entry.kind != "encode":
        labels = np.array([-1 if it.label is None else it.label for it in items], dtype=np.int64)
        return {"images": np.stack(results), "seed": seeds, "label": labels}
    out = {"seed": seeds}
    out["kl_bits"] = np.array([r.kl_bits for r in results], dtype=np.float32)
    out["bits_per_dim"] = np.array([r.elbo_bpd for r in results], dtype=np.float32)
    layers = len(results[0].latents) if results else 0
    for i in range(layers):
        out[f"z_{i}"] = np.stack([r.latents[i] for r in results]).astype(np.float32)
    return out
