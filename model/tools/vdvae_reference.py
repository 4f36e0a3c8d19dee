"""openai/vdvae's own PyTorch code, imported from a checkout the caller names, so that a benchmark can
run it beside model.VDVAE on the same weights.

Nothing of theirs is copied here: `load_official(checkout)` imports their `hps`, `vae_helpers` and
`vae` modules from the checkout (top-level modules, as their train.py imports them). Sampling needs
nothing else: their training helpers, which import apex and mpi4py, are never imported.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

from torch import nn

from model.hparams import HParams

from .visual_vae_reference import ReferenceError

# Their module names, in import order (vae imports vae_helpers).
_MODULES = ("hps", "vae_helpers", "vae")
# Their Hyperparams fields that shape the network, as HParams names them.
_ARCHITECTURE = (
    "dataset", "image_size", "image_channels", "width", "zdim", "bottleneck_multiple", "num_mixtures",
    "enc_blocks", "dec_blocks", "no_bias_above", "custom_width_str",
)  # fmt: skip


def load_official(checkout: str | Path) -> dict[str, ModuleType]:
    """Their modules {"hps", "vae_helpers", "vae"} from a checkout of openai/vdvae."""
    root = Path(checkout).resolve()
    if not all((root / f"{name}.py").is_file() for name in _MODULES):
        raise ReferenceError(f"{root} is not a checkout of openai/vdvae (no hps.py, vae_helpers.py, vae.py)")
    sys.path.insert(0, str(root))
    try:
        modules = {name: importlib.import_module(name) for name in _MODULES}
    except ImportError as e:
        raise ReferenceError(f"cannot import openai/vdvae's model from {root}: {e}") from None
    finally:
        sys.path.remove(str(root))
    for name, module in modules.items():
        if Path(module.__file__ or "").resolve().parent != root:
            raise ReferenceError(f"a module {name!r} was already imported from {module.__file__}, not {root}")
    return modules


def official_model(checkout: str | Path, hp: HParams) -> nn.Module:
    """Their VAE with the architecture of `hp` (an unconditional DMoL model of three channels, the
    only kind their code builds), at their initialisation."""
    if hp.conditional or hp.output_head != "dmol" or hp.attention or hp.low_res or hp.image_channels != 3:
        raise ValueError("openai/vdvae builds unconditional RGB DMoL models without attention only")
    modules = load_official(checkout)
    H = modules["hps"].Hyperparams()
    H.update({name: getattr(hp, name) for name in _ARCHITECTURE})
    return modules["vae"].VAE(H)
