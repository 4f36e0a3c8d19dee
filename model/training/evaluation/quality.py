"""Sample quality in a judge's feature space: Frechet distance (the digit FID), precision and recall
(Kynkaanniemi et al. 2019), label accuracy and the judge's confidence.

- FID: Frechet distance between Gaussians fitted to the judge's 128-d penultimate features of the
  samples and of the reference images (the data's training split). Biased upwards at small sample
  counts: compare models at the same count.
- Precision: the share of samples inside the real-image manifold (the union of balls around each
  real feature reaching its k-th nearest real neighbour); recall: the share of real images inside
  the samples' manifold. Both sets have the same size (the reference is subsampled, seeded).
- Label accuracy: the share of class-conditional samples the judge classifies as their label;
  confident: the share whose top judge probability is above CONFIDENT (0.9).

The figures depend on the judge (model.training.evaluation.judge), so they compare models judged by the same
judge file, not with Inception FIDs published elsewhere. `label_agreement` is the judge-free check
of `evaluate --label-agreement`: each sample's nearest training image in pixel space.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ...sampling import DEFAULT, Default, label_from_seed
from ...vae import VDVAE
from ..data import ImageSet, load_split
from .judge import BUNDLED_JUDGE, Judge, JudgeError, load_judge

CONFIDENT = 0.9  # top judge probability above which a sample counts as a recognised digit
NEAREST_K = 3  # k of the k-nearest-neighbour manifolds (Kynkaanniemi et al. use 3)


# --------------------------------------------------------------------------------------------
# The metrics on features
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gaussian:
    """Mean and covariance of a feature set (float64)."""

    mean: torch.Tensor  # (F,)
    cov: torch.Tensor  # (F, F)

    @classmethod
    def fit(cls, features: torch.Tensor) -> Gaussian:
        f = features.double()
        return cls(f.mean(dim=0), torch.cov(f.T))


def _sqrt_psd(m: torch.Tensor) -> torch.Tensor:
    """Square root of a symmetric positive semi-definite matrix (eigenvalues clipped at 0)."""
    vals, vecs = torch.linalg.eigh((m + m.T) / 2)
    return (vecs * vals.clamp(min=0).sqrt()) @ vecs.T


def frechet_distance(a: Gaussian, b: Gaussian) -> float:
    """|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^1/2).

    tr (S_a S_b)^1/2 is computed as tr (S_a^1/2 S_b S_a^1/2)^1/2, a symmetric PSD matrix, so the
    eigenvalues are real: no complex parts to discard as with a general matrix square root.
    """
    root_a = _sqrt_psd(a.cov)
    cross = torch.linalg.eigvalsh(root_a @ b.cov @ root_a).clamp(min=0).sqrt().sum()
    value = (a.mean - b.mean).square().sum() + a.cov.trace() + b.cov.trace() - 2 * cross
    return max(float(value), 0.0)


def _kth_neighbour_radius(features: torch.Tensor, k: int) -> torch.Tensor:
    """(n,) distance from each feature to its k-th nearest other feature."""
    d = torch.cdist(features, features)  # (n, n), zeros on the diagonal
    return d.kthvalue(k + 1, dim=1).values  # +1 skips the point itself


def _inside(queries: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """(q,) bool: query i lies within radii[j] of some centre j."""
    return (torch.cdist(queries, centres) <= radii[None, :]).any(dim=1)


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = NEAREST_K) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) of `fake` against `real` features."""
    real, fake = real.double(), fake.double()
    precision = _inside(fake, real, _kth_neighbour_radius(real, k)).double().mean().item()
    recall = _inside(real, fake, _kth_neighbour_radius(fake, k)).double().mean().item()
    return precision, recall


# --------------------------------------------------------------------------------------------
# Against a reference set
# --------------------------------------------------------------------------------------------


class QualityJudge:
    """A judge and the reference images' features: scores any batch of uint8 images."""

    def __init__(self, judge: Judge, reference: ImageSet, seed: int = 0) -> None:
        self.judge = judge
        self.seed = seed
        images = torch.from_numpy(np.ascontiguousarray(reference.images))
        self.reference_features, _ = judge.embed(images)
        self.reference = Gaussian.fit(self.reference_features)

    def _reference_subset(self, n: int) -> torch.Tensor:
        """n reference features for precision/recall (a seeded subset when there are more)."""
        m = len(self.reference_features)
        if n >= m:
            return self.reference_features
        keep = torch.randperm(m, generator=torch.Generator().manual_seed(self.seed))[:n]
        return self.reference_features[keep.sort().values]

    def score(self, images: torch.Tensor, labels: torch.Tensor | None = None, k: int = NEAREST_K) -> dict:
        """FID, precision, recall, confident share and (given the labels asked for, -1 or None for
        none) label accuracy of uint8 images (n, H, W, C)."""
        features, probs = self.judge.embed(images.cpu())
        top, predicted = probs.max(dim=1)
        precision, recall = precision_recall(self._reference_subset(len(features)), features, k)
        out = {
            "samples": len(features),
            "fid": round(frechet_distance(Gaussian.fit(features), self.reference), 3),
            "precision": round(precision, 4),
            "recall": round(recall, 4),
            "confident": round((top > CONFIDENT).double().mean().item(), 4),
        }
        if labels is not None:
            labels = torch.as_tensor([-1 if y is None else y for y in labels]).cpu()
            asked = labels >= 0
            if asked.any():
                out["label_accuracy"] = round((predicted[asked] == labels[asked]).double().mean().item(), 4)
        return out


# --------------------------------------------------------------------------------------------
# Drawing the samples of a setting
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    """One way to sample. labels: "seed" (each image's label from its seed, balanced over
    consecutive seeds) or "null" (the unconditional prior); guidance: one weight for the mean and
    the variance (0: none). A DEFAULT field takes the model's sampling defaults (config.json)."""

    name: str
    temperature: float | Default = DEFAULT
    labels: str | Default = DEFAULT
    guidance: float | Default = DEFAULT

    def options(self, vae: VDVAE, seeds: list[int]) -> dict:
        """vae.sample's temperature, labels and guidance for these seeds."""
        labels: object = DEFAULT
        if self.labels == "null":
            labels = None
        elif self.labels == "seed":
            labels = [label_from_seed(s, vae.hp.num_classes) for s in seeds]
        g = self.guidance if self.guidance is DEFAULT else ((self.guidance,) * 2 if self.guidance else None)
        return vae.sampling_options(seeds, self.temperature, labels, g)

    def describe(self, vae: VDVAE) -> dict:
        """The temperature, label rule and guidance this setting resolves to on `vae`."""
        opts = self.options(vae, [0])
        labels = self.labels if self.labels is not DEFAULT else vae.sampling.label
        g = opts["guidance"] if labels != "null" else None
        return {
            "temperature": opts["temperature"],
            "labels": labels,
            "guidance": None if g is None else list(g),
        }


def draw(
    vae: VDVAE, setting: Setting, n: int, seed: int = 0, batch_size: int = 100
) -> tuple[torch.Tensor, list[int | None]]:
    """n samples of a setting (image i from seed + i) and the label each was drawn with."""
    images, labels = [], []
    for start in range(0, n, batch_size):
        seeds = list(range(seed + start, seed + min(n, start + batch_size)))
        opts = setting.options(vae, seeds)
        images.append(vae.sample(len(seeds), seeds=seeds, **opts))
        labels += opts["labels"] if opts["labels"] is not None else [None] * len(seeds)
    return torch.cat(images), labels


# --------------------------------------------------------------------------------------------
# Loading a judge for a data set
# --------------------------------------------------------------------------------------------

INCEPTION_NOTE = (
    "an Inception FID (comparable with published figures) needs the Inception weights, which this "
    "project does not download: use a judge trained by `python -m model.training.evaluation.judge` on your "
    "labelled images, or your own feature network saved in that format"
)


def judge_path_for(data: str, judge: str | None) -> Path:
    """The judge file to use: the given one, or the bundled digit judge for --data mnist."""
    if judge not in (None, "", "auto"):
        return Path(judge)
    if data == "mnist":
        return BUNDLED_JUDGE
    raise JudgeError(f"--data {data}: give the judge file (--fid PATH); {INCEPTION_NOTE}")


def check_judge_fits(judge: QualityJudge, vae: VDVAE) -> None:
    """JudgeError unless the judge reads the model's images: same size and channels (a digit judge
    cannot score RGB samples; the shape is in the judge file's config)."""
    cfg, hp = judge.judge.cfg, vae.hp
    if (cfg.image_size, cfg.image_channels) != (hp.image_size, hp.image_channels):
        raise JudgeError(
            f"the judge reads {cfg.image_size}x{cfg.image_size}x{cfg.image_channels} images, the model draws "
            f"{hp.image_size}x{hp.image_size}x{hp.image_channels}: train a judge on this model's data "
            "(python -m model.training.evaluation.judge --data ... --image-size ... --channels ...)"
        )


def load_quality_judge(
    judge: str | None, data: str, data_format: str = "auto", test_data: str | None = None, seed: int = 0
) -> tuple[QualityJudge, dict]:
    """The judge for `data` with the training split's features as the reference, and a description:
    the judge file, its recorded test accuracy and the reference."""
    path = judge_path_for(data, judge)
    net, info = load_judge(path)
    cfg = net.cfg
    reference = load_split(data, "train", cfg.image_size, cfg.image_channels, data_format, test_data)
    about = {
        "judge": str(path),
        "judge_test_accuracy": info.get("test_accuracy"),
        "judge_command": info.get("command"),
        "reference": f"{data} train split ({len(reference)} images)",
        "confident_above": CONFIDENT,
        "nearest_k": NEAREST_K,
    }
    return QualityJudge(net, reference, seed), about


def nearest_neighbour_labels(images: torch.Tensor, reference: ImageSet, chunk: int = 256) -> torch.Tensor:
    """Label of each image's nearest reference image in pixel space (L2): a crude classifier that
    needs no training, enough to tell whether a class-conditional sample shows its class."""
    ref = torch.from_numpy(np.ascontiguousarray(reference.images)).flatten(1).float()  # (m, D)
    ref_sq = (ref * ref).sum(1)
    x = images.cpu().flatten(1).float()
    nearest = []
    for start in range(0, len(x), chunk):
        q = x[start : start + chunk]
        dist = ref_sq[None, :] - 2 * q @ ref.T  # |q - r|^2 up to the constant |q|^2
        nearest.append(dist.argmin(dim=1))
    return torch.from_numpy(reference.labels)[torch.cat(nearest)]


def label_agreement(
    vae: VDVAE, reference: ImageSet, per_class: int = 50, temperature: float = 0.8, guidance: float = 1.0
) -> dict:
    """Share of class-conditional samples whose nearest reference image has the asked-for label,
    without and with guidance (same seeds)."""
    classes = torch.arange(vae.hp.num_classes).repeat_interleave(per_class)
    out = {"samples": len(classes), "temperature": temperature}
    for name, g in (("unguided", None), ("guided", (guidance, guidance))):
        images = torch.cat([
            vae.sample(len(part), temperature=temperature, labels=part, guidance=g, seeds=10_000 + start)
            for start in range(0, len(classes), 100)
            for part in [classes[start : start + 100]]
        ])  # fmt: skip
        out[name] = (nearest_neighbour_labels(images, reference) == classes).float().mean().item()
    out["guidance"] = guidance
    return out
