"""The request and response bodies of the image endpoints (/sample, /sample/stream, /reconstruct,
/upscale), with the examples shown at /docs. A multipart form (/reconstruct, /upscale) has the JSON
body's fields, with the image as a file.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from model.sampling import MAX_SEED

from ...inputs.fields import (
    EXAMPLE_PNG_B64,
    Guidance,
    GuidanceField,
    ImageB64Field,
    LabelField,
    ModelField,
    SeedField,
    ShownLabelField,
    StrictModel,
    TemperatureField,
    TimeoutField,
    integer,
)
from ..bodies import Base64Image, SampledImage

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
    n: integer(ge=1, le=4096) = Field(
        1, description="Number of images (at most the service's max_images_per_request)."
    )
    temperature: TemperatureField = None
    seed: SeedField = None
    label: LabelField = None
    guidance: GuidanceField = None
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
    stage: integer(ge=1) | None = Field(
        None,
        description="When `model` is a cascade: which of its super-resolution stages (1 = the first "
        "after the base); omitted: the stage that takes the base stage's images.",
    )
    temperature: TemperatureField = None
    seed: Annotated[
        integer(ge=0, le=MAX_SEED) | None,
        Field(description="The image's seed; random when omitted, always returned."),
    ] = None
    label: LabelField = None
    guidance: GuidanceField = None
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
    layers: integer(ge=0) | None = Field(
        None,
        description="How many top latent layers come from the image's posterior (the rest from the prior); "
        "all of them when omitted, 0 gives a sample from the prior.",
    )
    temperature: TemperatureField = None
    seed: SeedField = None
    label: ShownLabelField = None
    timeout_ms: TimeoutField = None


class ReconstructedImage(Base64Image):
    bits: float = Field(
        description="KL of the posterior layers taken from the image, in bits: the bits it used."
    )


class ReconstructResponse(BaseModel):
    created: int
    model: str
    layers: int
    data: list[ReconstructedImage]


class StreamStage(BaseModel):
    """The data of a `preview` event (and, with `created` and `model`, of the `final` one)."""

    stage: int
    stages: int
    resolution: int
    layers: int
    num_layers: int
    data: list[SampledImage]
    created: int | None = None
    model: str | None = None
