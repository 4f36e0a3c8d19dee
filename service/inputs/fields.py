"""What the request bodies of every endpoint family share: the strict base model, the fields with
their static bounds and descriptions, guidance weights, float32 tensors, and the example image.

These check what can be checked without a model: strict types (no "8" for 8, no false for 0),
finite numbers, static ranges, unknown fields (rejected, so a typo such as `temprature` is a 422 and
not a silent default). JSON has one type of number, and JSON Schema reads 8.0 as the integer 8, so
an integer field takes 8.0 too (`integer`), never 8.5. Checks that need the model or the settings
(n limit, temperature bounds and per-layer length, labels, latent shapes) are in validation.py;
api/openapi.py writes those same bounds into the published schema.

Sampling options left out of a request (temperature, label, guidance) take the model's sampling
defaults (GET /v1/models: `sampling`; validation.sampling_for). An explicit `"label": null` asks for
the unconditional prior, an explicit `"guidance": null` for no guidance.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainValidator, WithJsonSchema

from model.sampling import MAX_SEED


def _integral(value: Any) -> Any:
    """A float with no fraction (8.0) as the integer it is; anything else is left to the int check."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def integer(ge: int | None = None, le: int | None = None) -> Any:
    """The type of a request body's integer field, in [ge, le]: 8 or 8.0, never "8", 8.5 or true.
    (The bounds come before the validator, so that the JSON schema states them.)"""
    return Annotated[int, Field(ge=ge, le=le), BeforeValidator(_integral)]


NonNegativeFloat = Annotated[float, Field(ge=0.0, allow_inf_nan=False)]

ModelField = Annotated[
    str | None,
    Field(
        description="Model name (GET /v1/models); the service's default model when omitted.", max_length=64
    ),
]
SeedField = Annotated[
    integer(ge=0, le=MAX_SEED) | None,
    Field(
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
    value = _integral(value)
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"a class index should be greater than or equal to 0, got {value}")
        return value
    if isinstance(value, str) and value.strip() and len(value) <= MAX_CLASS_NAME:
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
TimeoutField = Annotated[
    integer(ge=1, le=3_600_000) | None,
    Field(
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


GuidanceField = Annotated[
    Guidance | None,
    Field(
        description="Guidance weights, for images with a label. Omitted: the model's recommended "
        "guidance (sampling.guidance); null: none."
    ),
]


class Tensor(StrictModel):
    """A float32 tensor: shape, and its values as base64 of little-endian float32 in C order."""

    shape: list[integer(ge=1, le=1_000_000)] = Field(max_length=8)
    dtype: Literal["float32"] = "float32"
    data: str = Field(description="base64 of the little-endian float32 values, C order.")


class LatentTensor(Tensor):
    """A latent layer's z: (channels, height, width), the layer's shape (GET /v1/models: latent_shapes)."""

    shape: list[integer(ge=1, le=1_000_000)] = Field(min_length=3, max_length=3)
    layer: integer() = Field(description="Latent layer index, 0 = the top (lowest resolution) layer.")
