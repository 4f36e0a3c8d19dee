"""Cascades: stages run in order on per-stage seeds derived from each image's seed, per-stage
options, folders that name their stages, and clear errors for stages that do not chain."""

from __future__ import annotations

import json

import pytest
import torch

from model.cascade import (
    Cascade,
    CascadeStage,
    StageOptions,
    load_cascade,
    run_stages,
    save_cascade_folder,
    stage_seeds,
)
from model.checkpoint import CheckpointError, load_model, save_model_folder
from model.noise import derived_seed


@pytest.fixture(scope="module")
def stages(base16, sr16) -> list[CascadeStage]:
    return [
        CascadeStage("base16", base16, StageOptions(temperature=0.8, guidance=(1.0, 1.0))),
        CascadeStage("sr16to32", sr16, StageOptions(low_res_noise=0.1)),
    ]


def test_each_stage_samples_from_the_previous_stage_with_its_own_seeds(stages, base16, sr16):
    seeds = [3, 4]
    low, high = run_stages(stages, 2, labels=[1, 7], seeds=seeds)
    assert low.shape == (2, 16, 16, 1) and high.shape == (2, 32, 32, 1)
    # The base stage draws what the base model alone draws from the image's seed ...
    assert torch.equal(
        low, base16.sample(2, temperature=0.8, labels=[1, 7], guidance=(1.0, 1.0), seeds=seeds)
    )
    # ... and the super-resolution stage draws from a seed derived from it.
    assert stage_seeds(seeds, 1) == [derived_seed(3, 1), derived_seed(4, 1)] != seeds
    expected = sr16.sample(2, labels=[1, 7], low_res=low, low_res_noise=0.1, seeds=stage_seeds(seeds, 1))
    assert torch.equal(high, expected)


def test_an_image_does_not_depend_on_its_batch(stages):
    cascade = Cascade(stages)
    batch = cascade.sample(4, labels=[0, 5, -1, 9], seeds=[11, 12, 13, 14])
    alone = cascade.sample(1, labels=[5], seeds=[12])
    assert (alone[0].int() - batch[1].int()).abs().max() <= 1
    assert (batch[0] != batch[1]).float().mean() > 0.3


def test_per_stage_options_replace_the_defaults(stages):
    default = run_stages(stages, 1, labels=[2], seeds=[5])
    colder = run_stages(stages, 1, labels=[2], seeds=[5], options=[None, StageOptions(temperature=0.0)])
    assert torch.equal(default[0], colder[0])  # the base stage kept its options
    assert not torch.equal(default[1], colder[1])
    with pytest.raises(ValueError, match="options for 1 stages; the cascade has 2"):
        run_stages(stages, 1, seeds=[5], options=[None])


def test_stages_that_do_not_chain_are_explained(base16, sr16, tiny):
    with pytest.raises(ValueError, match=r"stage 0 .* is a super-resolution model"):
        Cascade([CascadeStage("sr", sr16, StageOptions())])
    with pytest.raises(ValueError, match=r"takes 16x16x1 low-resolution images .* but tiny makes 32x32x3"):
        Cascade([CascadeStage("tiny", tiny, StageOptions()), CascadeStage("sr", sr16, StageOptions())])
    with pytest.raises(ValueError, match="low_res none"):
        Cascade([CascadeStage("base", base16, StageOptions()), CascadeStage("base", base16, StageOptions())])
    with pytest.raises(ValueError, match="stage tiny: guidance needs a class-conditional model"):
        Cascade([CascadeStage("tiny", tiny, StageOptions(guidance=(1.0, 1.0)))])


def test_a_cascade_folder_names_sibling_model_folders(tmp_path, stages):
    for s in stages:
        save_model_folder(s.vae, tmp_path / s.name, {"steps": 7})
    save_cascade_folder(tmp_path / "cascade", stages)
    config = json.loads((tmp_path / "cascade" / "config.json").read_text())
    assert config["cascade"] == [
        {"model": "base16", "temperature": 0.8, "guidance": [1.0, 1.0]},
        {"model": "sr16to32", "low_res_noise": 0.1},
    ]
    loaded = load_cascade(tmp_path / "cascade", device="cpu")
    assert [s.options for s in loaded.stages] == [s.options for s in stages]
    assert torch.equal(
        loaded.sample(2, labels=[3, 4], seeds=0), Cascade(stages).sample(2, labels=[3, 4], seeds=0)
    )
    assert "super-resolution 16 -> 32" in (tmp_path / "cascade" / "README.md").read_text()
    with pytest.raises(CheckpointError, match=r"describes a cascade of models.*load_cascade"):
        load_model(tmp_path / "cascade")


def test_a_cascade_folder_may_hold_its_stages_and_leave_options_to_them(tmp_path, base16, sr16):
    """Stages in subfolders ("folder"); options left out are each stage model's sampling defaults,
    and the images' labels follow the base stage's label rule on their seeds."""
    folder = tmp_path / "cascade"
    save_model_folder(base16, folder / "base", {})
    save_model_folder(sr16, folder / "sr", {})
    stages = [CascadeStage("base", base16, place="folder"), CascadeStage("sr", sr16, place="folder")]
    save_cascade_folder(folder, stages)
    config = json.loads((folder / "config.json").read_text())
    assert config["cascade"] == [{"folder": "base"}, {"folder": "sr"}]
    loaded = load_cascade(folder, device="cpu")
    assert [s.options for s in loaded.stages] == [StageOptions(), StageOptions()]
    low, high = run_stages(loaded.stages, 2, seeds=[3, 4])
    labels = [3 % 10, 4 % 10]  # the base model's "seed" rule
    assert torch.equal(low, base16.sample(2, seeds=[3, 4]))
    assert torch.equal(low, base16.sample(2, labels=labels, seeds=[3, 4]))
    assert torch.equal(high, sr16.sample(2, labels=labels, low_res=low, seeds=stage_seeds([3, 4], 1)))


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"model": "missing"}, "no checkpoint at"),
        ({"model": "base16", "temprature": 1.0}, r"unknown stage option\(s\) \['temprature'\]"),
        ({"model": "/abs/base16"}, "must be relative"),
        ({"models": "base16"}, "expected an object with one of 'model'"),
        ({"model": "base16", "folder": "base16"}, "expected an object with one of 'model'"),
        ({"folder": "base16"}, "no checkpoint at"),
        ({"model": "base16", "temperature": -1}, "stage base16: temperature must be finite and >= 0"),
        ({"model": "base16", "guidance": [1, 2, 3]}, r"stage base16: guidance must be \(w_mean, w_var\)"),
        ({"model": "base16", "low_res_noise": 0.1}, "low_res_noise is for super-resolution stages"),
    ],
)
def test_a_bad_cascade_folder_is_explained(tmp_path, base16, entry, message):
    save_model_folder(base16, tmp_path / "base16", {})
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "config.json").write_text(json.dumps({"cascade": [entry]}))
    with pytest.raises(CheckpointError, match=message):
        load_cascade(tmp_path / "c", device="cpu")
