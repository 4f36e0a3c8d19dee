"""The bodies of POST /v1/images/generations, as OpenAI's API defines them for its `openai` SDKs
(ImageGenerateParams, ImagesResponse, ImageGenPartialImageEvent, ImageGenCompletedEvent), with this
service's extensions, named as vLLM-Omni names its own where it has them (`seed`, `guidance_scale`).

Each OpenAI field is one of three kinds here: it means what OpenAI's API says (model, prompt, n,
size, stream, partial_images); it is accepted and means nothing here (quality, moderation, style,
output_compression, user, safety_identifier, complexity: the images do not depend on them); or a
value would make the answer mislead, and is refused with a message saying why (response_format
"url", output formats other than PNG, a transparent background, GIF and SVG options).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from ...inputs.fields import (
    MAX_CLASS_NAME,
    Guidance,
    LabelField,
    ModelField,
    SeedField,
    StrictModel,
    TemperatureField,
    TimeoutField,
    integer,
)
from ..bodies import OpenAIErrorObject


def _prompt(value: Any) -> Any:
    """A prompt names a class, so it is no longer than a class name (OpenAI's API takes 32,000
    characters of description)."""
    if isinstance(value, str) and len(value) > MAX_CLASS_NAME:
        raise PydanticCustomError(
            "prompt_too_long",
            "a prompt here names a class of the model (GET /v1/models: classes), in at most "
            f"{MAX_CLASS_NAME} characters; this one has {len(value)}",
        )
    return value


def refusing(**why: str) -> BeforeValidator:
    """A validator that refuses the values named in `why` with that message (where OpenAI's value
    would make the answer mislead), before the field's own check."""

    def check(value: Any) -> Any:
        if isinstance(value, str) and value in why:
            raise PydanticCustomError("unsupported_value", why[value])
        return value

    return BeforeValidator(check)


def absent(why: str) -> Any:
    """A field accepted only as null or left out: any value is refused with `why`."""

    def check(value: Any) -> Any:
        if value is not None:
            raise PydanticCustomError("unsupported_value", why)
        return value

    return Annotated[None, BeforeValidator(check), Field(description=f"Not supported: {why}")]


NOT_PNG = "this service writes PNG images only: leave output_format out, or send png"
GIF = "GIF output is not available here (PNG only): leave it out"


def _guidance_scale(value: Any) -> Any:
    """A number is the same weight on the mean and the variance."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return {"mean": value, "variance": value}
    return value


GuidanceScale = Annotated[
    Guidance | None,
    BeforeValidator(_guidance_scale),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0},
                Guidance.model_json_schema(),
                {"type": "null"},
            ],
            "description": "Extension: classifier-free guidance, for images with a label: one weight for "
            "the mean and the variance, or both ({mean, variance}). Omitted: the model's recommended "
            "guidance (sampling.guidance); null: none.",
        }
    ),
]


class ImageGenerationRequest(StrictModel):
    """OpenAI's image generation request. `prompt` names a class of a class-conditional model, by
    name or number in any case (GET /v1/models: classes; a model without class names takes numbers);
    an empty prompt draws each image's label by the model's label rule (sampling.label); an
    unconditional model takes only an empty prompt. The extensions (seed, temperature,
    guidance_scale, label, timeout_ms) go in the SDK's `extra_body`."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {"prompt": "7", "n": 2, "seed": 42},
                {"prompt": "", "n": 4, "size": "32x32", "seed": 0},
                {"prompt": "3", "stream": True, "partial_images": 2, "seed": 5},
            ]
        },
    )

    prompt: Annotated[str, BeforeValidator(_prompt)] = Field(
        max_length=MAX_CLASS_NAME,
        description="The class to draw, by name or index in any case; empty: the model's label rule. "
        "For the served models the accepted texts are stated by the pattern here (a model's own "
        "classes: GET /v1/models).",
    )
    model: ModelField = None
    n: integer(ge=1, le=4096) | None = Field(
        None, description="Number of images (at most the service's max_images_per_request)."
    )
    size: str | None = Field(
        None,
        pattern=r"^(auto|[0-9]+x[0-9]+)$",
        description='"auto", or "WxH" equal to the model\'s images (GET /v1/models: image_size).',
    )
    response_format: Annotated[
        Literal["b64_json"] | None,
        refusing(url="this service answers with the images themselves (b64_json); it keeps no files to link"),
    ] = None
    output_format: Annotated[
        Literal["png"] | None, refusing(webp=NOT_PNG, jpeg=NOT_PNG, gif=NOT_PNG, svg=NOT_PNG)
    ] = None
    stream: bool | None = Field(
        None,
        description="Server-sent events: `partial_images` previews per image from the top-down pass, "
        "then each image's completed event.",
    )
    partial_images: integer(ge=0, le=3) | None = Field(
        None,
        description="With stream: previews per image, taken from the pass's resolutions (a cascade's "
        "stages), spread over it; fewer when the pass has fewer.",
    )
    background: Annotated[
        Literal["opaque", "auto"] | None,
        refusing(transparent="the images here have no alpha channel: leave background out, or send opaque"),
    ] = None
    quality: Literal["low", "medium", "high", "xhigh", "max", "auto", "standard", "hd"] | None = Field(
        None, description="Accepted, without effect: a model here has one quality."
    )
    moderation: Literal["low", "auto"] | None = Field(None, description="Accepted, without effect.")
    output_compression: integer(ge=0, le=100) | None = Field(
        None, description="Accepted, without effect: PNG is lossless."
    )
    style: Literal["vivid", "natural"] | None = Field(None, description="Accepted, without effect.")
    user: str | None = Field(None, max_length=512, description="Accepted, without effect.")
    safety_identifier: str | None = Field(None, max_length=512, description="Accepted, without effect.")
    complexity: Literal["low", "medium", "high"] | None = Field(None, description="Accepted, without effect.")
    frame_count: absent(GIF) = None
    frame_duration_ms: absent(GIF) = None
    svg: absent("SVG output is not available here (PNG only): leave it out") = None
    # Extensions
    seed: SeedField = None
    temperature: TemperatureField = None
    guidance_scale: GuidanceScale = None
    label: LabelField = None
    timeout_ms: TimeoutField = None


class Usage(BaseModel):
    """Tokens, as OpenAI's API counts them: none here (a prompt names a class), so all are 0."""

    input_tokens: int = 0
    input_tokens_details: dict[str, int] = Field(
        default_factory=lambda: {"image_tokens": 0, "text_tokens": 0}
    )
    output_tokens: int = 0
    total_tokens: int = 0


class GeneratedImage(BaseModel):
    b64_json: str = Field(description="base64 PNG.")
    seed: int = Field(description="Extension: the image's seed.")
    label: int | None = Field(description="Extension: the label it was drawn with; null: none.")


class ImagesResponse(BaseModel):
    created: int = Field(description="Unix time of the response.")
    data: list[GeneratedImage]
    background: Literal["opaque"] = "opaque"
    output_format: Literal["png"] = "png"
    size: str = Field(description="WIDTHxHEIGHT of the images.")
    usage: Usage = Field(default_factory=Usage)


class PartialImageEvent(BaseModel):
    """`image_generation.partial_image`: a preview of one image."""

    type: Literal["image_generation.partial_image"]
    b64_json: str
    partial_image_index: int = Field(description="0-based, per image.")
    created_at: int
    size: str = Field(description="WIDTHxHEIGHT of this preview (a cascade's early stages are smaller).")
    background: Literal["opaque"] = "opaque"
    output_format: Literal["png"] = "png"
    quality: Literal["auto"] = "auto"
    seed: int = Field(description="Extension: the image's seed.")
    label: int | None = Field(description="Extension: its label.")


class CompletedEvent(BaseModel):
    """`image_generation.completed`: one final image, the same as the non-streamed answer's."""

    type: Literal["image_generation.completed"]
    b64_json: str
    created_at: int
    size: str
    background: Literal["opaque"] = "opaque"
    output_format: Literal["png"] = "png"
    quality: Literal["auto"] = "auto"
    usage: Usage = Field(default_factory=Usage)
    seed: int = Field(description="Extension: the image's seed.")
    label: int | None = Field(description="Extension: its label.")


class ErrorEvent(BaseModel):
    """`error`: the request failed after the stream began; the SDK raises it as an APIError."""

    type: Literal["error"]
    error: OpenAIErrorObject
