"""The residual block: same results with and without autograd, float32 stream under autocast."""

from __future__ import annotations

import torch

from model.blocks import Block


def block_and_input(cond_dim: int = 0):
    torch.manual_seed(0)
    block = Block(16, 4, 16, residual=True, cond_dim=cond_dim)
    with torch.no_grad():
        block.c4.weight.normal_()
    return block, torch.randn(2, 16, 8, 8)


def test_in_place_inference_path_matches_autograd_path():
    block, x = block_and_input(cond_dim=3)
    cond = torch.randn(2, 3)
    expected = block(x, cond)
    with torch.inference_mode():
        got = block(x.clone(), cond)
    assert torch.equal(got, expected.detach())


def test_inference_leaves_the_input_untouched():
    block, x = block_and_input()
    before = x.clone()
    with torch.inference_mode():
        block(x)
    assert torch.equal(x, before)


def test_residual_stream_stays_float32_under_autocast():
    block, x = block_and_input()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = block(x)
    assert out.dtype == torch.float32
    assert torch.allclose(out, block(x).detach(), atol=0.1, rtol=0.05)
