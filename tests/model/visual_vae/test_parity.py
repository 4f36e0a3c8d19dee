"""Parity with visual-vae's own PyTorch code (tcl9876/visual-vae) on every fixture folder under
tests/model/fixtures/visual-vae/, and the layouts of their three released checkpoints.

The reference tensors were produced by their code with every random draw given (the folder's
make_fixture.py; public-tiny is the shared conformance suite's public case). Tolerances are relative
to max(1, max |reference|): float32 rounding in a different operation order lands within 1e-6;
a modelling error (a wrong constant, label row or layer order) moves the numbers by 1e-3 or more.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
import torch

import model
from tests.model.helpers import FIXTURES, TEST_DEVICE, on_test_device

pytestmark = pytest.mark.parity

ROOT = FIXTURES / "visual-vae"
CASES = sorted(p for p in ROOT.iterdir() if (p / "reference.pt").is_file())
LAYOUTS = json.loads((ROOT / "published_layouts.json").read_text())


@functools.cache
def load(d: Path) -> tuple[model.VisualVAE, dict, dict]:
    cfg = json.loads((d / "config.json").read_text())
    vae = model.VisualVAE.from_config(cfg)
    vae.load_state_dict(torch.load(d / "ema_weights.pt", weights_only=True), strict=True)
    return vae.to(TEST_DEVICE).eval(), on_test_device(torch.load(d / "reference.pt", weights_only=True)), cfg


def assert_close(got: torch.Tensor, want: torch.Tensor, tol: float) -> None:
    got, want = torch.as_tensor(got).double(), torch.as_tensor(want).double()
    assert got.shape == want.shape
    err = (got - want).abs().max().item()
    assert err <= tol * max(1.0, want.abs().max().item()), err


def ours(labels: torch.Tensor, cfg: dict) -> torch.Tensor:
    """Their null label (num_classes) as ours (-1)."""
    k = cfg["model"]["num_classes"]
    return torch.where(labels == k, torch.full_like(labels, -1), labels)


def conditioning(ref: dict, cfg: dict, part: dict, prior: bool = False) -> dict:
    kw = {}
    if cfg["model"]["num_classes"]:
        kw["labels"] = ours(part["prior_labels" if prior else "labels"], cfg)
    if cfg["model"]["is_superres"]:
        kw.update(low_res=ref["low_res"]["train_input"], low_res_noise=0.0)
    return kw


def test_the_fixtures_cover_every_kind_of_model():
    kinds = {p.name: load(p)[2]["model"] for p in CASES}
    assert {"public-tiny", "cond-attn", "superres"} <= set(kinds)
    assert any(m["num_classes"] and any(m["num_attention"]) for m in kinds.values())
    assert any(m["is_superres"] for m in kinds.values())
    assert any(m["c_enc"] != m["c"] for m in kinds.values())


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_published_checkpoints_load_with_their_keys(name):
    pub = LAYOUTS[name]
    with torch.device("meta"):
        vae = model.VisualVAE.from_config({"model": pub["model"], "training": pub["training"]})
    assert {k: list(v.shape) for k, v in vae.state_dict().items()} == pub["state_dict"]
    assert sum(p.numel() for p in vae.parameters()) == pub["params"]
    assert vae.hp == model.VisualVAEConfig.preset(name).replace(dataset="")  # the presets are their configs


@pytest.fixture(params=CASES, ids=[p.name for p in CASES])
def case(request):
    return load(request.param)


@pytest.mark.parametrize("d", CASES, ids=[p.name for p in CASES])
def test_state_dict_is_theirs(d):
    vae = model.VisualVAE.from_config(json.loads((d / "config.json").read_text()))
    theirs = torch.load(d / "ema_weights.pt", weights_only=True)
    assert {k: v.shape for k, v in vae.state_dict().items()} == {k: v.shape for k, v in theirs.items()}
    vae.load_state_dict(theirs, strict=True)


def test_preprocess(case):
    vae, ref, _ = case
    x_in, x_target = vae.preprocess(ref["x_uint8"])
    assert_close(x_in, ref["x_in"], 1e-6)
    assert_close(x_target, ref["x_in"], 1e-6)


def test_training_forward_kl_and_reconstruction_loss(case):
    vae, ref, cfg = case
    parts = ["posterior", "posterior_drop"] if "posterior_drop" in ref else ["posterior"]
    for name in parts:
        p = ref[name]
        kw = conditioning(ref, cfg, p)
        if name == "posterior_drop":
            kw["prior_labels"] = ours(p["prior_labels"], cfg)
        with torch.no_grad():
            out = vae.elbo(ref["x_in"], ref["x_in"], noise=ref["posterior"]["eps"], **kw)
        assert_close(out["kl"], p["kl"], 1e-5)
        assert_close(out["rate"], p["rate"], 1e-5)
        assert_close(out["recon_loss"], p["recon_loss"], 1e-5)
        assert torch.isfinite(out["elbo"]).all()


def test_posterior_samples_and_their_decoding(case):
    vae, ref, cfg = case
    post = ref["posterior"]
    with torch.no_grad():
        zs = vae.encode(ref["x_in"], noise=post["eps"], **conditioning(ref, cfg, post))
        params = vae.decode(post["z"], n=len(post["z"][0]), **conditioning(ref, cfg, post, prior=True))
    for z, want in zip(zs, post["z"], strict=True):
        assert_close(z, want, 5e-5)
    assert_close(params, post["params"], 1e-4)


def test_prior_sampling_and_images(case):
    vae, ref, cfg = case
    prior = ref["prior"]
    for name in prior["settings"]:
        s = prior[name]
        kw = dict(temperature=float(s["temperature"]))
        if cfg["model"]["num_classes"]:
            kw.update(labels=ours(s["labels"], cfg), guidance=tuple(float(w) for w in s["guidance"]))
        if cfg["model"]["is_superres"]:
            kw.update(low_res=s["low_res_input"], low_res_noise=0.0)
        with torch.no_grad():
            params = vae.decode([], n=len(prior["eps"][0]), noise=prior["eps"], **kw)
        assert_close(params, s["params"], 2e-4)
        images = vae.params_to_images(params)
        off = (images.int() - s["images"].int()).abs()
        assert off.max() <= 1 and off.gt(0).float().mean() <= 0.01, name
        assert torch.equal(vae.params_to_images(s["params"]), s["images"]), name  # trunc(clip(...)) exactly
