"""Attention blocks: configured and validated in HParams, the identity at initialisation,
permutation-equivariant over positions, per image under guidance, absent from plain models."""

from __future__ import annotations

import pytest
import torch

import model
from model import HParams, HParamsError
from model.attention import Attention
from tests.factories import perturbed, random_images

COND = dict(num_classes=10, image_channels=1, dataset="mnist", num_mixtures=3)


def test_attention_is_placed_after_evenly_spaced_blocks_of_its_resolution():
    hp = HParams.preset("tiny").replace(attention="16,8x2")
    # tiny's encoder blocks output 32, 32, 16, 16, 16, 8, 8, 8, ...; its decoder blocks sit at
    # 1, 4, 4, 4, 8, 8, 8, 16, 16, 16, 32, 32, 32.
    assert hp.enc_attention == [4, 5, 7]
    assert hp.dec_attention == [4, 6, 9]
    with torch.device("meta"):
        vae = model.VDVAE(hp)
    assert sorted(vae.encoder.attn) == ["4", "5", "7"]
    assert [i for i, b in enumerate(vae.decoder.dec_blocks) if b.attn is not None] == [4, 6, 9]


@pytest.mark.parametrize(
    ("attention", "message"),
    [
        ("16,8q", "bad token '8q'"),
        ("16x0", "bad token '16x0'"),
        ("2", "token '2' asks for 1 attention block.* at resolution 2 but the encoder has no block"),
        ("16x4", "token '16x4' asks for 4 .* the encoder has only 3 block"),
        ("16,16", "resolution 16 appears twice"),
    ],
)
def test_bad_attention_is_named(attention, message):
    with pytest.raises(HParamsError, match=message):
        HParams.preset("tiny").replace(attention=attention)


def test_attention_needs_a_decoder_block_at_its_resolution():
    with pytest.raises(HParamsError, match=r"at resolution 16 but the decoder has no block\(s\) there"):
        HParams.preset("tiny").replace(dec_blocks="1x1,4m1,8m4,32m8", attention="16")


def test_a_plain_model_has_exactly_the_official_keys():
    with torch.device("meta"):
        plain = model.VDVAE(HParams.preset("tiny"))
        attn = model.VDVAE(HParams.preset("tiny").replace(attention="8"))
    keys = set(plain.state_dict())
    assert not any("attn" in k for k in keys)
    assert keys < set(attn.state_dict())
    assert {k for k in attn.state_dict() if k not in keys} == {
        f"{where}.{p}.{w}"
        for where in ("encoder.attn.7", "decoder.dec_blocks.6.attn")
        for p in ("q", "out")
        for w in ("weight", "bias")
    }


def with_fresh_attention(plain: model.VDVAE, attention: str) -> model.VDVAE:
    """A model with attention whose other weights are `plain`'s and whose attention blocks are
    freshly initialised."""
    vae = model.VDVAE(plain.hp.replace(attention=attention)).eval()
    missing, unexpected = vae.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(".attn." in k for k in missing)
    return vae


def test_output_is_unchanged_at_initialisation(tiny_cond):
    vae = with_fresh_attention(tiny_cond, "16,8x2")
    kwargs = dict(labels=[1, 2, -1], guidance=(2.0, 1.0), temperature=0.8, seeds=[4, 5, 6])
    assert torch.equal(vae.decode([], n=3, **kwargs), tiny_cond.decode([], n=3, **kwargs))
    x = random_images(3, channels=1)
    assert torch.equal(vae.encode(x, seeds=0).kl, tiny_cond.encode(x, seeds=0).kl)


def test_trained_attention_changes_the_output(tiny_cond):
    vae = with_fresh_attention(tiny_cond, "8")
    with torch.no_grad():
        vae.decoder.dec_blocks[6].attn.out.weight.normal_(std=0.5)
    a = vae.decode([], n=2, labels=[1, 2], seeds=0)
    b = tiny_cond.decode([], n=2, labels=[1, 2], seeds=0)
    assert (a - b).abs().max() > 1e-3


def test_attention_is_equivariant_to_permuting_positions():
    torch.manual_seed(0)
    attn = Attention(8)
    with torch.no_grad():
        attn.out.weight.normal_(std=0.3)
        attn.out.bias.normal_(std=0.3)
    x = torch.randn(2, 8, 4, 4)
    perm = torch.randperm(16)

    def permute(t: torch.Tensor) -> torch.Tensor:
        return t.flatten(2)[:, :, perm].view_as(t)

    y = attn(x)
    assert (y - x).abs().max() > 1e-2  # it does something
    assert torch.allclose(attn(permute(x)), permute(y), atol=1e-5)


def test_guided_image_with_attention_does_not_depend_on_its_batch():
    vae = perturbed(HParams.preset("tiny").replace(attention="16,8", **COND), seed=4)
    alone = vae.sample(1, labels=[3], guidance=(2.0, 1.0), temperature=0.8, seeds=[99])
    guidance = torch.tensor([[0.0, 0.0], [2.0, 1.0], [1.0, 3.0], [2.0, 1.0]])
    batch = vae.sample(4, labels=[0, 1, -1, 3], guidance=guidance, temperature=0.8, seeds=[1, 2, 3, 99])
    assert (alone[0].int() - batch[3].int()).abs().max() <= 1
