"""Training the cascade's stages and models with attention from the command line, end to end on
the demo digits with very small models: each trains, exports, loads and samples like any other."""

from __future__ import annotations

import json

import torch

from model.checkpoint import load_model
from model.lowres import downsample
from model.training.data import load_split
from model.training.train import main
from tests.model.training.test_train import rows

FAST = [
    "--data", "mnist", "--width", "16", "--zdim", "4", "--num-mixtures", "2", "--batch-size", "8",
    "--eval-every", "0", "--sample-every", "0", "--log-every", "1", "--warmup-steps", "2",
]  # fmt: skip


def test_a_model_with_attention_trains_saves_loads_and_samples(tmp_path):
    out = tmp_path / "attn"
    args = ["--preset", "mnist", "--enc-blocks", "32x1,32d2,16x1,16d2,8x1,8d2,4x1,4d4,1x1",
            "--dec-blocks", "1x1,4m1,8m4,16m8,32m16", "--attention", "16,8"]  # fmt: skip
    assert main([*FAST, *args, "--steps", "3", "--out", str(out)]) == 0
    vae = load_model(out / "model", device="cpu")
    assert vae.hp.attention == "16,8" and vae.encoder.attn and vae.decoder.dec_blocks[3].attn is not None
    # Training moved the zero-initialised output projections.
    assert vae.decoder.dec_blocks[3].attn.out.weight.abs().max() > 0
    assert vae.sample(2, labels=[1, 2], guidance=(1.0, 1.0), seeds=0).shape == (2, 32, 32, 1)
    assert "attention: at resolutions 16,8" in (out / "model" / "README.md").read_text()


def test_the_base_stage_trains_on_digits_pooled_to_16x16(tmp_path):
    out = tmp_path / "base16"
    assert main([*FAST, "--preset", "mnist16", "--steps", "2", "--out", str(out)]) == 0
    vae = load_model(out / "model", device="cpu")
    assert vae.hp.image_size == 16 and vae.sample(1, labels=[4], seeds=0).shape == (1, 16, 16, 1)
    provenance = json.loads((out / "model" / "config.json").read_text())["provenance"]
    assert "--data-pool" in provenance["test_eval"]


def test_the_super_resolution_stage_trains_with_the_resolution_schedule(tmp_path):
    out = tmp_path / "sr"
    assert (
        main([*FAST, "--preset", "mnist16to32", "--steps", "3", "--sample-every", "3", "--out", str(out)])
        == 0
    )
    config = rows(out, "config")[0]
    assert config["config"]["kl_schedule"] == "constant_per" and config["hparams"]["low_res"] == 16
    vae = load_model(out / "model", device="cpu")
    digits = torch.from_numpy(load_split("mnist", "test", 32, 1).images[:2])
    assert vae.sample(2, labels=[0, 0], low_res=downsample(digits, 16), seeds=0).shape == (2, 32, 32, 1)
    assert {p.name for p in (out / "samples").iterdir()} >= {"step-0000003-temperatures.png"}
    assert "super-resolution from 16x16" in (out / "model" / "README.md").read_text()
