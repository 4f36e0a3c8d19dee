"""The request and response bodies of the latent endpoints (/encode, /decode, /interpolate), with the
examples shown at /docs. /encode's multipart form has its JSON body's fields, with the image as a
file; /interpolate's form takes its two ends as files or as fields.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, model_validator

from model.sampling import MAX_SEED

from ...inputs.fields import (
    EXAMPLE_PNG_B64,
    GuidanceField,
    ImageB64Field,
    LabelField,
    LatentTensor,
    ModelField,
    SeedField,
    ShownLabelField,
    StrictModel,
    TemperatureField,
    TimeoutField,
    integer,
)


class EncodeRequest(StrictModel):
    """JSON form of /encode; the multipart form has the same fields with `image` as a file."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={"examples": [{"image_b64": EXAMPLE_PNG_B64, "latents": 2, "seed": 0}]},
    )

    model: ModelField = None
    image_b64: ImageB64Field = None
    latents: integer(ge=0) = Field(
        0, description="Return the posterior samples z of this many top latent layers."
    )
    seed: SeedField = None
    label: ShownLabelField = None
    timeout_ms: TimeoutField = None


class EncodeResponse(BaseModel):
    created: int
    model: str
    seed: int
    dims: int = Field(description="Dimensions of the image (H * W * C), the 'per dim' of the rates.")
    kl_bits: list[float] = Field(description="KL of each latent layer in bits, top-down.")
    kl_bits_total: float
    rate_bits_per_dim: float = Field(description="Total KL in bits per dim.")
    distortion_bits_per_dim: float = Field(
        description="Reconstruction negative log-likelihood in bits per dim."
    )
    elbo_bits_per_dim: float = Field(
        description="Negative ELBO (rate + distortion): an upper bound on the NLL."
    )
    latents: list[LatentTensor] = Field(default_factory=list)


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
    guidance: GuidanceField = None
    timeout_ms: TimeoutField = None


class InterpolationEnd(StrictModel):
    """A seed (the image /sample draws from it), or an image (base64 PNG or JPEG)."""

    seed: integer(ge=0, le=MAX_SEED) | None = None
    image_b64: str | None = Field(None, description="base64 PNG or JPEG (a data: URL prefix is allowed).")

    @model_validator(mode="before")
    @classmethod
    def _seed_shorthand(cls, value: Any) -> Any:
        """A bare integer is a seed."""
        is_integer = isinstance(value, int) and not isinstance(value, bool)
        return {"seed": value} if is_integer or (isinstance(value, float) and value.is_integer()) else value

    @model_validator(mode="after")
    def _one_of(self) -> InterpolationEnd:
        if (self.seed is None) == (self.image_b64 is None):
            raise ValueError("give a seed or an image_b64, not both and not neither")
        return self


SEED = {"type": "integer", "minimum": 0, "maximum": MAX_SEED}
EndField = Annotated[
    InterpolationEnd | None,
    WithJsonSchema(
        {
            "anyOf": [
                {**SEED, "description": "A seed."},
                {
                    "type": "object",
                    "properties": {"seed": SEED, "image_b64": {"type": "null"}},
                    "required": ["seed"],
                    "additionalProperties": False,
                    "description": "A seed.",
                },
                {
                    "type": "object",
                    "properties": {
                        "image_b64": {"type": "string", "description": "base64 PNG or JPEG."},
                        "seed": {"type": "null"},
                    },
                    "required": ["image_b64"],
                    "additionalProperties": False,
                    "description": "An image of the model's size and channels.",
                },
            ],
            "description": "A seed, or an image; in a multipart form also an image file of this name.",
        }
    ),
]


class InterpolateRequest(StrictModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"start": {"seed": 1}, "end": {"seed": 2}, "steps": 8, "label": 3},
                {
                    "start": {"image_b64": EXAMPLE_PNG_B64},
                    "end": {"seed": 7},
                    "steps": 5,
                    "layers": 6,
                },
            ]
        },
    )

    model: ModelField = None
    start: EndField = None
    end: EndField = None
    steps: integer(ge=2, le=64) = Field(
        8,
        description="Images on the path, both ends included; omitted: 8, or the service's "
        "max_images_per_request when that is lower.",
    )
    layers: integer(ge=0) | None = Field(
        None,
        description="Interpolate the top `layers` latent layers (all when omitted); the layers below "
        "come from `seed` at `temperature`, the same for every step.",
    )
    temperature: TemperatureField = None
    seed: SeedField = None
    label: LabelField = None
    guidance: GuidanceField = None
    timeout_ms: TimeoutField = None


class InterpolatedImage(BaseModel):
    b64_json: str = Field(description="base64 PNG.")
    t: float = Field(description="Place on the path: 0 at the start, 1 at the end.")


class InterpolateResponse(BaseModel):
    created: int
    model: str
    layers: int = Field(description="Latent layers interpolated.")
    seed: int = Field(description="Seed of the layers below, and of image endpoints' posterior noise.")
    label: int | None = Field(
        description="The path's label: the one given, else the model's label rule applied to a seed start."
    )
    data: list[InterpolatedImage]
