"""HParams: presets with the official parameter counts, official dicts, JSON, clear errors."""

from __future__ import annotations

import json

import pytest
import torch

import model
from model import HParams, HParamsError
from tests.model.helpers import FIXTURES

OFFICIAL_PARAMS = {
    "cifar10": 39_145_700,
    "imagenet32": 119_280_868,
    "imagenet64": 125_005_860,
    "ffhq256": 114_874_852,
    "ffhq1024": 109_366_904,
    "tiny": 140_924,
}


@pytest.mark.parametrize("name", sorted(OFFICIAL_PARAMS))
def test_preset_has_the_official_parameter_count(name):
    with torch.device("meta"):
        vae = model.VDVAE(HParams.preset(name))
    assert sum(p.numel() for p in vae.parameters()) == OFFICIAL_PARAMS[name]


@pytest.mark.parametrize(
    ("name", "layers"), [("cifar10", 43), ("imagenet32", 78), ("ffhq1024", 70), ("tiny", 13)]
)
def test_one_latent_layer_per_decoder_block(name, layers):
    assert HParams.preset(name).num_layers == layers


def test_from_official_reads_the_fixture_and_ignores_training_fields():
    d = json.loads((FIXTURES / "public-tiny" / "hparams.json").read_text())
    hp = HParams.from_official({**d, "lr": 2e-4, "n_batch": 4, "skip_threshold": 400})
    assert hp == HParams.preset("tiny")


def test_from_official_infers_image_shape_from_the_dataset():
    hp = HParams.from_official(
        {
            "dataset": "imagenet64",
            **{
                k: v
                for k, v in model.PRESETS["imagenet64"].hparams.items()
                if k not in ("dataset", "image_size")
            },
        }
    )
    assert (hp.image_size, hp.image_channels) == (64, 3)


def test_json_round_trip_keeps_every_field():
    hp = HParams.preset("ffhq1024").replace(num_classes=7, output_head="gaussian", sigma_q=0.05)
    back = HParams.from_json(hp.to_json())
    assert back == hp and back.to_dict() == hp.to_dict()


def test_unknown_json_field_is_named():
    with pytest.raises(HParamsError, match="wdith"):
        HParams.from_dict({**HParams().to_dict(), "wdith": 3})


@pytest.mark.parametrize(
    ("field", "value", "token"),
    [
        ("enc_blocks", "32x11,32q2,16x6", "'32q2'"),
        ("dec_blocks", "1x1,4m1,4xx2", "'4xx2'"),
        ("dec_blocks", "1x1,4m1,4x0", "'4x0'"),
        ("enc_blocks", "32x11,,16x6", "''"),
        ("custom_width_str", "32:384,16;512", "'16;512'"),
        ("custom_width_str", "32:384,16:-4", "'16:-4'"),
    ],
)
def test_bad_block_or_width_token_is_named(field, value, token):
    with pytest.raises(HParamsError, match=token.replace("[", r"\[")) as e:
        HParams.preset("cifar10").replace(**{field: value})
    assert field in str(e.value)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"enc_blocks": "32x2,16x2"}, "resolution 16 but the encoder stream is at 32"),
        ({"dec_blocks": "1x1,4m2,32m4"}, "no earlier block produced"),
        ({"dec_blocks": "1x1,4m1,8m4"}, "must end at the image resolution 32"),
        ({"dec_blocks": "1x1,4m1,2m1,32m4"}, "which the encoder never produces"),
        ({"width": 0}, "width must be a positive integer"),
        ({"width": 3}, "leaves no channels"),
        ({"output_head": "mse"}, "output_head must be one of"),
        ({"image_channels": 2}, "1 or 3 image channels"),
        ({"custom_width_str": "32:64"}, "must agree"),
        ({"custom_width_str": "16:8"}, "width shrinks"),
    ],
)
def test_inconsistent_architecture_is_explained(changes, message):
    with pytest.raises(HParamsError, match=message):
        HParams.preset("tiny").replace(**changes)


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(HParamsError, match="cifar10"):
        HParams.preset("cifar100")


def test_every_preset_constructs_on_the_meta_device():
    for name in model.PRESETS:
        hp = HParams.preset(name)
        with torch.device("meta"):
            vae = model.VDVAE(hp)
        assert len(vae.decoder.dec_blocks) == hp.num_layers
        assert len(vae.encoder.enc_blocks) == len(hp.enc_layers)
        assert all(p.is_meta for p in vae.parameters())
