"""The response bodies of GET /v1/models and /v1/models/{name}: a model or a cascade, its sampling
defaults and the limits a client sizes its requests by. They carry OpenAI's model-list fields too
(`object`, `created`, `owned_by`), so the `openai` SDKs' models.list() and models.retrieve() read them.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ...inputs.fields import Guidance


class SamplingDefaults(BaseModel):
    """What /sample and /decode use for options a request leaves out (config.json's "sampling")."""

    temperature: float
    guidance: Guidance | None
    label: Literal["seed", "null"] = Field(
        description='"seed": image i gets label seed_i mod num_classes; "null": the unconditional prior.'
    )
    chosen_by: str = Field(description="How these values were chosen.")


class ServingLimits(BaseModel):
    """How the service serves a model: what a client sizes and times its requests by."""

    max_batch_size: int = Field(description="Most images in one model pass; a bulk client's request size.")
    max_images_per_request: int = Field(description="Largest n of one /sample request.")
    max_queue_images: int = Field(description="Images that may wait per model and operation (503 above).")
    request_timeout_s: float = Field(description="Default deadline of a request; timeout_ms may shorten it.")


class CascadeStageInfo(BaseModel):
    """One stage of a cascade: the model that runs it and what it uses for options left out."""

    model_config = ConfigDict(protected_namespaces=())

    index: int = Field(description="0: the base model; k > 0: super-resolves stage k - 1's images.")
    model: str = Field(description="The stage's model; served on its own too when `served`.")
    served: bool = Field(
        description="Whether the stage's model is also listed here (its own /v1/models entry)."
    )
    image_size: int
    low_res: int = Field(description="The size of the images it super-resolves; 0 for the base stage.")
    num_layers: int
    conditional: bool
    sampling: SamplingDefaults = Field(description="The stage model's sampling defaults.")
    options: dict[str, Any] = Field(
        description="The cascade's own options for this stage (temperature, guidance, low_res_noise), which "
        "come before the model's defaults; a request's stages[k] comes before both."
    )


class ModelInfo(BaseModel):
    """A model, or a cascade of models (object "cascade": `stages` lists them; the image fields describe
    its final images, `num_classes` and `sampling` its base stage)."""

    model_config = ConfigDict(protected_namespaces=())

    id: str
    object: Literal["model", "cascade"] = "model"
    created: int = Field(description="Unix time the service loaded it (OpenAI's model field).")
    owned_by: str = Field("vdvae-serve", description="OpenAI's model field: always vdvae-serve.")
    default: bool
    family: str = Field(
        description='The architecture family: "vdvae" (openai/vdvae) or "visual-vae" (tcl9876/visual-vae, '
        "Luhman & Luhman 2022)."
    )
    image_size: int
    image_channels: int
    num_layers: int
    latent_shapes: list[list[int]]
    parameters: int
    num_classes: int
    conditional: bool
    classes: list[str] | None = Field(
        None,
        description="Class-conditional models with class names: the name of each class, by index (a "
        "request's label may be any of a class's names).",
    )
    output_head: str
    dataset: str
    device: str
    amp: str
    sampling: SamplingDefaults
    provenance: dict[str, Any]
    limits: ServingLimits
    low_res: int = Field(
        0, description="Super-resolution models: the size of the images they take (POST /upscale); else 0."
    )
    low_res_noise: float = Field(
        0.0, description="Super-resolution models: the low-res input noise trained with."
    )
    attention: str = Field("", description="Resolutions with attention blocks (HParams.attention).")
    stages: list[CascadeStageInfo] | None = Field(None, description="Cascades only: the stages, base first.")


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelInfo]
