"""/sample and /sample/stream on a cascade: the request -> what each of its stages computes, per image
(`cascade_plan`), and the stages run one after another (`cascade_stages`).

A cascade (registry.ServedCascade) runs its stages one after another, each stage's images queued on
that stage model's own batcher: SAMPLE for the base stage, UPSCALE for each super-resolution stage.
So a stage is batched with every other request at that stage, the direct requests to its model
included, and no pass holds more than one stage. Every image keeps
batch independence: stage k draws from `model.cascade.stage_seeds` of the image's seed, with the
image's label (the base stage's: given, or its label rule on the seed) at every class-conditional
stage, so the same seed gives the same final image in any batch.

Each stage's options come from the request's `stages[k]`, else the cascade's option for the stage
(config.json), else the stage model's sampling defaults (VDVAE.sampling_options, through
inputs.validation.sampling_items). A cascade takes no top-level temperature or guidance: they would be
ambiguous between stages.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

from model.cascade import hands_raw_mean, stage_seeds
from model.sampling import DEFAULT

from ...batching.items import Image, SampleItem, UpscaleItem
from ...batching.operations import SAMPLE, UPSCALE
from ...errors import InvalidInput, invalid_field, invalid_input
from ...inputs.validation import (
    guidance_for,
    label_for,
    sampling_items,
    seeds_for,
    temperature_for,
    within_image_limit,
)
from ...registry import ServedCascade, ServedModel
from ...settings import Settings
from ..routing import ModelRequest
from .bodies import SampleRequest, StageRequest


@dataclass
class CascadePlan:
    """Every stage's per-image options: stage k's items for image i are stages[k][i]."""

    cascade: ServedCascade
    stages: list[list[SampleItem]]  # per stage, per image: its stage seed, temperature, label, guidance
    low_res_noise: list[float | None]  # per stage (None: the stage model's training value)

    @property
    def items(self) -> list[SampleItem]:
        """The base stage's items: the images' own seeds and labels, as the answer reports them."""
        return self.stages[0]

    def upscale_items(self, k: int, previous: list[Image]) -> list[UpscaleItem]:
        """What super-resolution stage k (k >= 1) computes, given stage k - 1's images."""
        return [
            UpscaleItem(
                img if getattr(img, "raw_mean", None) is None else img.raw_mean,
                it.seed,
                it.temperature,
                it.label,
                it.guidance,
                self.low_res_noise[k],
                it.keep_mean,
            )
            for img, it in zip(previous, self.stages[k])
        ]


async def cascade_stages(
    plan: CascadePlan, request: ModelRequest, timeout_ms: int | None
) -> AsyncIterator[list[Image]]:
    """A cascade's images stage by stage, each under the request's one deadline: the base stage on
    its model's SAMPLE queue, each super-resolution stage on its model's UPSCALE queue, given the
    previous stage's images."""
    base, *rest = plan.cascade.stages
    images = await request.run(SAMPLE, base, plan.stages[0], timeout_ms)
    yield images
    for k, model in enumerate(rest, start=1):
        images = await request.run(UPSCALE, model, plan.upscale_items(k, images), timeout_ms)
        yield images


@contextlib.contextmanager
def at_stage(k: int) -> Iterator[None]:
    """Re-point the 422s of a stage's option checks at `stages.k.<field>`."""
    try:
        yield
    except InvalidInput as e:
        errors = e.extra.get("errors", [])
        raise invalid_input(
            [{**err, "loc": ["body", "stages", k, *err["loc"][1:]]} for err in errors]
        ) from None


def cascade_plan(req: SampleRequest, cascade: ServedCascade, settings: Settings) -> CascadePlan:
    """The checked plan of a /sample request on a cascade (422s point at the field)."""
    within_image_limit("n", req.n, settings)
    given = req.model_fields_set
    for name in ("temperature", "guidance"):
        if name in given:
            raise invalid_field(
                name, f"model {cascade.name!r} is a cascade: give each stage's {name} in stages[k].{name}"
            )
    count = len(cascade.stages)
    if req.stages is not None and len(req.stages) != count:
        raise invalid_field("stages", f"got {len(req.stages)} stages; cascade {cascade.name!r} has {count}")
    seeds = seeds_for(req.seed, req.n)
    base = cascade.stages[0]
    label = DEFAULT
    if "label" in given:
        label = label_for(req.label, base)
        for m in cascade.stages[1:]:
            if m.hp.conditional and label is not None:
                label_for(label, m)
    labels = base.vae.sampling_options(seeds, labels=label)["labels"]
    labels = labels if isinstance(labels, list) else [labels] * len(seeds)
    stages, noise = [], []
    for k, model in enumerate(cascade.stages):
        with at_stage(k):
            items, sigma = stage_options(req, cascade, k, model, seeds, labels, settings)
        if k + 1 < count and hands_raw_mean(model.vae, cascade.stages[k + 1].vae):
            items = [dataclasses.replace(it, keep_mean=True) for it in items]
        stages.append(items)
        noise.append(sigma)
    return CascadePlan(cascade, stages, noise)


def stage_options(
    req: SampleRequest,
    cascade: ServedCascade,
    k: int,
    model: ServedModel,
    seeds: list[int],
    labels: list[int | None],
    settings: Settings,
) -> tuple[list[SampleItem], float | None]:
    """Stage k's items (on its stage seeds) and its low-resolution noise."""
    asked = req.stages[k] if req.stages is not None else StageRequest()
    option = cascade.options[k]
    labels_k = labels if model.hp.conditional else [None] * len(seeds)
    labelled = any(y is not None for y in labels_k)
    temperature = option.temperature
    if asked.temperature is not None:
        temperature = temperature_for(asked.temperature, model, settings)
    guidance = option.guidance
    if "guidance" in asked.model_fields_set:
        guidance = guidance_for(asked.guidance, labelled, model, settings)
    sigma = option.low_res_noise if asked.low_res_noise is None else asked.low_res_noise
    if k == 0 and asked.low_res_noise is not None:
        raise invalid_field(
            "low_res_noise", "the base stage takes no low-resolution image: omit its low_res_noise"
        )
    items = sampling_items(model, stage_seeds(seeds, k), labels_k, temperature, guidance)
    return items, sigma
