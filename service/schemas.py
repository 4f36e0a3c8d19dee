"""Request bodies (pydantic), their shared fields, and their OpenAPI request-body entries, with the
examples shown at /docs (the answers are in responses.py).

These models check what can be checked without a model: strict types (no "8" for 8, no false for
0), finite numbers, static ranges, unknown fields (rejected, so a typo such as `temprature` is a 422
and not a silent default). Checks that need the model or the settings (n limit, temperature bounds
and per-layer length, labels, latent shapes) are in validation.py; openapi.py writes those same
bounds into the published schema.

Sampling options left out of a request (temperature, label, guidance) take the model's sampling
defaults (GET /v1/models: `sampling`; validation.sampling_for). An explicit `"label": null` asks for
the unconditional prior, an explicit `"guidance": null` for no guidance.
"""

from __future__ import annotations

import copy
import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema

from model.sampling import MAX_SEED

NonNegativeFloat = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]

ModelField = Annotated[
    str | None,
    Field(
        description="Model name (GET /v1/models); the service's default model when omitted.", max_length=64
    ),
]
SeedField = Annotated[
    int | None,
    Field(
        ge=0,
        le=MAX_SEED,
        description="Seed of the first image; image i uses seed + i. Random when omitted; the seeds "
        "used are always returned.",
    ),
]


def _temperature(value: Any) -> float | list[float]:
    """One finite number >= 0, or a list of them; a message that names the field's shape otherwise."""
    values = value if isinstance(value, list) else [value]
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ValueError("temperature must be a number >= 0, or a list of them (one per latent layer)")
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"temperature must be finite and >= 0, got {v}")
    return [float(v) for v in values] if isinstance(value, list) else float(value)


TemperatureField = Annotated[
    float | list[float],
    PlainValidator(_temperature),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                {"type": "array", "items": {"type": "number", "minimum": 0}},
            ],
            "description": "Prior temperature: one number for every latent layer, or one per latent "
            "layer (top-down; as many as the model's num_layers). Omitted: the model's recommended "
            "temperature (GET /v1/models: sampling.temperature).",
        }
    ),
]
MAX_CLASS_NAME = 200


def _label(value: Any) -> int | str | None:
    """A class: its index (an integer >= 0), or one of its names (GET /v1/models: `classes`)."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"a class index should be greater than or equal to 0, got {value}")
        return value
    if isinstance(value, str) and 0 < len(value.strip()) <= MAX_CLASS_NAME:
        return value
    raise ValueError(
        f"a label is a class index (integer >= 0) or a class name (1..{MAX_CLASS_NAME} characters)"
    )


def _label_field(description: str) -> Any:
    return Annotated[
        int | str | None,
        PlainValidator(_label),
        WithJsonSchema(
            {
                "anyOf": [
                    {"type": "integer", "minimum": 0},
                    {"type": "string", "minLength": 1, "maxLength": MAX_CLASS_NAME},
                    {"type": "null"},
                ],
                "description": description,
            }
        ),
    ]


LabelField = _label_field(
    "Class label, for class-conditional models only: an index, or a class name (GET /v1/models: "
    'classes; e.g. "golden retriever"). Omitted: the model\'s label rule (sampling.label; "seed": image '
    "i gets label seed_i mod num_classes, reported per image). null: the unconditional prior (the null "
    "label)."
)
# The image of /reconstruct and /encode, and the class it shows.
ImageB64Field = Annotated[
    str | None,
    Field(description="The image as base64 PNG or JPEG (a data: URL prefix is allowed); JSON bodies only."),
]
ShownLabelField = _label_field(
    "The class the image shows (class-conditional models), an index or a class name; omitted: the null label."
)
SamplingGuidanceDescription = (
    "Guidance weights, for images with a label. Omitted: the model's recommended guidance "
    "(sampling.guidance); null: none."
)
TimeoutField = Annotated[
    int | None,
    Field(
        ge=1,
        le=3_600_000,
        description="Deadline in milliseconds from arrival; can only shorten the service's default. "
        "A request not served in time gets 504 and is not computed.",
    ),
]


# A 32x32 grey-scale PNG of a 7 (the default model's shape): the examples work as written.
EXAMPLE_PNG_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAACAAAAAgCAAAAABWESUoAAAAQElEQVR42mNgGAUMDAwMjHDWf+ziTIRMYCLeCiTwn1IrkA0gywQU"
    "A8gxAdUAMkxAM4B0E9ANINkEDAMImzBCAABeQAghXbLNJQAAAABJRU5ErkJggg=="
)


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Guidance(StrictModel):
    """Classifier-free guidance weights (Luhman & Luhman 2022); 0 and 0 is plain conditional sampling."""

    mean: NonNegativeFloat = Field(0.0, description="Guidance weight on the prior mean.")
    variance: NonNegativeFloat = Field(0.0, description="Guidance weight on the prior variance.")


LowResNoiseField = Annotated[
    float | None,
    Field(
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="Super-resolution stages: the std of the Gaussian noise added to the low-resolution "
        "input in [-1, 1] (conditioning augmentation). Omitted: the cascade's option for the stage, else "
        "the model's training value (low_res_noise in GET /v1/models).",
    ),
]


class StageRequest(StrictModel):
    """One stage's options in a cascade's /sample. Each one left out is the cascade's option for the
    stage, else the stage model's sampling default (GET /v1/models: stages[k])."""

    temperature: TemperatureField = None
    guidance: Guidance | None = Field(
        None, description="Guidance of a class-conditional stage; omitted: its default; null: none."
    )
    low_res_noise: LowResNoiseField = None


class SampleRequest(StrictModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {"n": 4, "seed": 42},
                {"model": "mnist", "n": 1, "label": 7, "guidance": {"mean": 1.0, "variance": 0.5}, "seed": 7},
                {"n": 4, "label": None, "temperature": 0.8, "seed": 42},
            ]
        },
    )

    model: ModelField = None
    n: int = Field(
        1, ge=1, le=4096, description="Number of images (at most the service's max_images_per_request)."
    )
    temperature: TemperatureField = None
    seed: SeedField = None
    label: LabelField = None
    guidance: Guidance | None = Field(None, description=SamplingGuidanceDescription)
    stages: list[StageRequest] | None = Field(
        None,
        max_length=16,
        description='Cascades only (GET /v1/models: object "cascade"): one entry per stage, base first, '
        "each stage's temperature, guidance and low_res_noise; a cascade takes these instead of the "
        "top-level temperature and guidance. `label` applies to every class-conditional stage.",
    )
    timeout_ms: TimeoutField = None


class UpscaleRequest(StrictModel):
    """JSON form of /upscale; the multipart form has the same fields with `image` as a file."""

    # No example: the examples at /docs must work as written, and this one needs a super-resolution model.

    model: ModelField = None
    image_b64: str | None = Field(
        None,
        description="The low-resolution image as base64 PNG or JPEG (a data: URL prefix is allowed), of "
        "the model's low_res size; JSON bodies only.",
    )
    stage: int | None = Field(
        None,
        ge=1,
        description="When `model` is a cascade: which of its super-resolution stages (1 = the first "
        "after the base); omitted: the stage that takes the base stage's images.",
    )
    temperature: TemperatureField = None
    seed: Annotated[
        int | None,
        Field(ge=0, le=MAX_SEED, description="The image's seed; random when omitted, always returned."),
    ] = None
    label: LabelField = None
    guidance: Guidance | None = Field(None, description=SamplingGuidanceDescription)
    low_res_noise: LowResNoiseField = None
    timeout_ms: TimeoutField = None


class ReconstructRequest(StrictModel):
    """JSON form of /reconstruct; the multipart form has the same fields with `image` as a file."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [{"image_b64": EXAMPLE_PNG_B64, "layers": 4, "temperature": 0.9, "seed": 1}]
        },
    )

    model: ModelField = None
    image_b64: ImageB64Field = None
    layers: int | None = Field(
        None,
        ge=0,
        description="How many top latent layers come from the image's posterior (the rest from the prior); "
        "all of them when omitted, 0 gives a sample from the prior.",
    )
    temperature: TemperatureField = None
    seed: SeedField = None
    label: ShownLabelField = None
    timeout_ms: TimeoutField = None


class EncodeRequest(StrictModel):
    """JSON form of /encode; the multipart form has the same fields with `image` as a file."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"image_b64": EXAMPLE_PNG_B64, "latents": 2, "seed": 0}]},
    )

    model: ModelField = None
    image_b64: ImageB64Field = None
    latents: int = Field(
        0, ge=0, description="Return the posterior samples z of this many top latent layers."
    )
    seed: SeedField = None
    label: ShownLabelField = None
    timeout_ms: TimeoutField = None


class Tensor(StrictModel):
    """A float32 tensor: shape, and its values as base64 of little-endian float32 in C order."""

    shape: list[Annotated[int, Field(ge=1, le=1_000_000)]] = Field(max_length=8)
    dtype: Literal["float32"] = "float32"
    data: str = Field(description="base64 of the little-endian float32 values, C order.")


class LatentTensor(Tensor):
    layer: int = Field(description="Latent layer index, 0 = the top (lowest resolution) layer.")


class DecodeRequest(StrictModel):
    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "latents": [
                        {
                            "layer": 0,
                            "shape": [8, 1, 1],
                            "dtype": "float32",
                            "data": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
                        }
                    ],
                    "temperature": 0.8,
                    "seed": 3,
                }
            ]
        },
    )

    model: ModelField = None
    latents: list[LatentTensor] = Field(
        min_length=1,
        max_length=4096,
        description="z of the top k latent layers, as /encode returns them (layers 0..k-1 in order); "
        "the layers below come from the prior.",
    )
    temperature: TemperatureField = None
    seed: SeedField = None
    label: LabelField = None
    guidance: Guidance | None = Field(None, description=SamplingGuidanceDescription)
    timeout_ms: TimeoutField = None


def json_request_body(model_cls: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI requestBody of a JSON-only endpoint (its body is read by the route, not by FastAPI)."""
    schema = {"$ref": f"#/components/schemas/{model_cls.__name__}"}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def inlined_schema(model_cls: type[BaseModel]) -> dict[str, Any]:
    """model_cls's JSON schema with its nested models written in place (a route's own request body
    schema cannot add entries to the document's components)."""
    schema = model_cls.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {k: inline(v) for k, v in node.items()}
        return [inline(v) for v in node] if isinstance(node, list) else node

    return inline(schema)


def image_request_body(model_cls: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI requestBody accepting the JSON model or the same fields as multipart with an `image` file."""
    schema = model_cls.model_json_schema(ref_template="#/components/schemas/{model}")
    schema.pop("$defs", None)
    form = copy.deepcopy(schema)
    form.pop("examples", None)
    form["properties"].pop("image_b64")
    schema["required"] = ["image_b64"]
    form["properties"] = {
        "image": {"type": "string", "format": "binary", "description": "The PNG or JPEG file."},
        **form["properties"],
    }
    form["required"] = ["image"]
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema}, "multipart/form-data": {"schema": form}},
        }
    }
