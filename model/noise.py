"""Per-image random streams.

Every image of a batch draws from its own CPU generator seeded from its seed, always in the same
order (all latent layers in one draw, then the output layer's uniforms), so an image depends on its
seed and parameters only: not on its position, the batch size, the other images or the device.
The draws can also be given as tensors (`Draws`, replayed by `GivenNoise`): an interpolation
decodes draws that lie between two images'.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from .sampling import MAX_SEED

# Host threads that fill the images' draws, one image's row each (torch releases the GIL while it
# fills a row). The rows are the same whatever the count; 1 (the default) draws on the caller's
# thread. A GPU pass can take less time than its draws on one core.
_draw_pool: ThreadPoolExecutor | None = None
_draw_threads = 1


def set_draw_threads(threads: int) -> None:
    """Fill the per-image draws on this many host threads (process-wide; 1: the calling thread)."""
    global _draw_pool, _draw_threads
    if threads < 1:
        raise ValueError(f"draw threads must be >= 1, got {threads}")
    if _draw_pool is not None:
        _draw_pool.shutdown()
    _draw_pool = ThreadPoolExecutor(threads, thread_name_prefix="vae-draws") if threads > 1 else None
    _draw_threads = threads


def draw_threads() -> int:
    return _draw_threads


def random_seeds(n: int) -> list[int]:
    """Seeds for callers that gave none, from torch's global RNG (so torch.manual_seed applies)."""
    return torch.randint(0, 2**62, (n,)).tolist()


def seed_list(seeds: int | Sequence[int] | None, n: int) -> list[int]:
    """None -> random; an int s -> s, s+1, ..., s+n-1; a sequence -> itself (length n)."""
    if seeds is None:
        return random_seeds(n)
    if isinstance(seeds, int):
        out = [seeds + i for i in range(n)]
    else:
        out = [int(s) for s in seeds]
        if len(out) != n:
            raise ValueError(f"got {len(out)} seeds for {n} images")
    for s in out:
        if not 0 <= s <= MAX_SEED:
            raise ValueError(f"seed {s} out of range [0, 2**63 - 1]")
    return out


def _mix64(seed: int) -> int:
    """splitmix64 finaliser: a second, unrelated seed derived from a seed."""
    z = (seed + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (z ^ (z >> 31)) & MAX_SEED


def derived_seed(seed: int, salt: int) -> int:
    """A seed for another stream of the same image (another cascade stage, say), unrelated to
    `seed`'s own streams and a function of `seed` and `salt` only."""
    return _mix64(int(seed) ^ salt)


# Salt of the conditioning stream (the noise on a super-resolution model's low-res input).
CONDITIONING_SALT = 0xC0D171


class NoiseSource:
    """One pair of generators per image, stacked along the batch dimension.

    Latent draws and output-layer (pixel) draws come from separate streams, the pixel one seeded
    from a hash of the seed, so decoding and pixel sampling give the same result whether they run
    in one call or two. A third stream, made on first use, holds the noise a super-resolution model
    adds to its low-resolution input.
    """

    def __init__(self, seeds: Sequence[int]) -> None:
        self.seeds = list(seeds)
        self._latent = [torch.Generator().manual_seed(int(s)) for s in self.seeds]
        self._pixel = [torch.Generator().manual_seed(_mix64(int(s))) for s in self.seeds]
        self._conditioning: list[torch.Generator] | None = None

    def __len__(self) -> int:
        return len(self.seeds)

    def _draw(
        self,
        generators: Sequence[torch.Generator],
        shapes: Sequence[tuple[int, ...]],
        device: torch.device | str,
        fill: Callable[[torch.Tensor, torch.Generator], object],
    ) -> list[torch.Tensor]:
        sizes = [math.prod(s) for s in shapes]
        total = sum(sizes)
        flat = torch.empty(len(generators), total)
        rows = zip(flat, generators)  # one call per image covers every tensor of this draw
        if _draw_pool is None or len(generators) == 1:
            for row, gen in rows:
                fill(row, gen)
        else:
            inference = torch.is_inference_mode_enabled()  # thread-local: the workers take the caller's

            def fill_row(pair: tuple[torch.Tensor, torch.Generator]) -> None:
                with torch.inference_mode(inference):
                    fill(*pair)

            list(_draw_pool.map(fill_row, rows))
        device = torch.device(device)
        if device.type == "cuda":
            flat = flat.pin_memory().to(device, non_blocking=True)
        else:
            flat = flat.to(device)
        n = len(generators)
        return [t.reshape(n, *s) for t, s in zip(flat.split(sizes, dim=1), shapes)]

    def normal(
        self, shapes: Sequence[tuple[int, ...]], device: torch.device | str = "cpu"
    ) -> list[torch.Tensor]:
        """Standard normal tensors (n, *shape) for each per-image shape."""
        return self._draw(self._latent, shapes, device, lambda row, gen: row.normal_(generator=gen))

    def conditioning(
        self, shapes: Sequence[tuple[int, ...]], device: torch.device | str = "cpu"
    ) -> list[torch.Tensor]:
        """Standard normal tensors (n, *shape) from the conditioning stream."""
        if self._conditioning is None:
            self._conditioning = [
                torch.Generator().manual_seed(derived_seed(s, CONDITIONING_SALT)) for s in self.seeds
            ]
        return self._draw(self._conditioning, shapes, device, lambda row, gen: row.normal_(generator=gen))

    def uniform(
        self,
        shapes: Sequence[tuple[int, ...]],
        device: torch.device | str = "cpu",
        low: float = 1e-5,
        high: float = 1.0 - 1e-5,
    ) -> list[torch.Tensor]:
        """Uniform(low, high) tensors (n, *shape); the DMoL sampler's default open interval."""
        return self._draw(
            self._pixel, shapes, device, lambda row, gen: row.uniform_(low, high, generator=gen)
        )


@dataclass
class Draws:
    """Every random draw that makes a batch of images, as tensors: one standard normal (n, Z, r, r)
    per latent layer, top-down, and the output layer's uniforms (n, *shape) (none for the Gaussian
    head, which shows its mean)."""

    latent: list[torch.Tensor]
    pixel: list[torch.Tensor]

    def __len__(self) -> int:
        return self.latent[0].shape[0]

    def rows(self, index: Sequence[int] | torch.Tensor) -> Draws:
        """The draws of the images at `index`, in that order (repeats allowed)."""
        index = torch.as_tensor(index, dtype=torch.long)
        return Draws(
            [t.index_select(0, index.to(t.device)) for t in self.latent],
            [t.index_select(0, index.to(t.device)) for t in self.pixel],
        )

    @classmethod
    def cat(cls, parts: Sequence[Draws]) -> Draws:
        """The images of several Draws, one after the other."""
        return cls(
            [torch.cat(ts) for ts in zip(*(p.latent for p in parts))],
            [torch.cat(ts) for ts in zip(*(p.pixel for p in parts))],
        )


class GivenNoise(NoiseSource):
    """A noise source whose draws were made in advance: `normal` returns the latent draws and
    `uniform` the pixel draws of a `Draws`, checked against the shapes the model asks for."""

    def __init__(self, draws: Draws, seeds: Sequence[int]) -> None:
        self.seeds = list(seeds)  # reported with the images; only the conditioning stream uses them
        self.draws = draws
        self._conditioning = None
        if len(draws) != len(self.seeds):
            raise ValueError(f"got draws for {len(draws)} images and {len(self.seeds)} seeds")

    def _given(
        self, given: list[torch.Tensor], shapes: Sequence[tuple[int, ...]], device: torch.device | str
    ) -> list[torch.Tensor]:
        n = len(self.seeds)
        got = [tuple(t.shape) for t in given]
        if got != [(n, *s) for s in shapes]:
            raise ValueError(f"given draws have shapes {got}, expected {[(n, *s) for s in shapes]}")
        return [t.to(device, torch.float32) for t in given]

    def normal(
        self, shapes: Sequence[tuple[int, ...]], device: torch.device | str = "cpu"
    ) -> list[torch.Tensor]:
        return self._given(self.draws.latent, shapes, device)

    def uniform(
        self,
        shapes: Sequence[tuple[int, ...]],
        device: torch.device | str = "cpu",
        low: float = 1e-5,
        high: float = 1.0 - 1e-5,
    ) -> list[torch.Tensor]:
        return self._given(self.draws.pixel, shapes, device)


# Per-image seeds: an int s (image i uses s + i), one per image, a NoiseSource, or None (random).
Seeds = int | Sequence[int] | NoiseSource | None
