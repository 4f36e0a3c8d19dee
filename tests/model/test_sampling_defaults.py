"""A model's sampling defaults (config.json's "sampling"): what `sample` uses for options left out,
the label rule of class-conditional models, and their round trip through model folders."""

from __future__ import annotations

import json

import pytest
import torch

import model
from model.checkpoint import CheckpointError, save_model_folder, write_sampling_defaults
from model.sampling import DEFAULT, SamplingDefaults, label_from_seed

TUNED = SamplingDefaults(temperature=0.7, guidance=(1.0, 0.5), label="seed", chosen_by="a test")


@pytest.fixture()
def tuned(tiny_cond):
    """tiny_cond with tuned defaults, restored afterwards (the fixture is shared by the session)."""
    before = tiny_cond.sampling
    tiny_cond.sampling = TUNED
    yield tiny_cond
    tiny_cond.sampling = before


def test_a_new_model_samples_its_prior_as_trained(tiny, tiny_cond):
    assert tiny.sampling == SamplingDefaults.for_model(tiny.hp)
    assert (tiny.sampling.temperature, tiny.sampling.guidance, tiny.sampling.label) == (1.0, None, "null")
    assert tiny_cond.sampling.label == "seed"  # class-conditional: labels from seeds
    assert torch.equal(tiny.sample(2, seeds=0), tiny.sample(2, temperature=1.0, labels=None, seeds=0))


def test_labels_left_out_come_from_each_images_seed(tuned):
    seeds = [7, 12, 30, 99]
    expected = [label_from_seed(s, 10) for s in seeds]
    assert expected == [7, 2, 0, 9]
    assert tuned.sampling_options(seeds)["labels"] == expected
    explicit = tuned.sample(4, temperature=0.7, labels=expected, guidance=(1.0, 0.5), seeds=seeds)
    assert torch.equal(tuned.sample(4, seeds=seeds), explicit)


def test_default_labels_are_reproducible_per_seed_and_independent_of_the_batch(tuned):
    batch = tuned.sample(5, seeds=[3, 40, 41, 8, 1234])
    for i, s in enumerate([3, 40, 41, 8, 1234]):
        alone = tuned.sample(1, seeds=[s])[0]
        assert (alone.int() - batch[i].int()).abs().max() <= 1, s  # same image, any batch
    assert torch.equal(tuned.sample(5, seeds=[3, 40, 41, 8, 1234]), batch)


def test_explicit_none_is_the_unconditional_prior(tuned):
    null = tuned.sample(3, labels=None, seeds=0)
    assert torch.equal(null, tuned.sample(3, labels=[-1, -1, -1], temperature=0.7, seeds=0))
    assert not torch.equal(null, tuned.sample(3, seeds=0))
    # a given label, temperature or guidance is used as given
    assert torch.equal(tuned.sample(2, labels=4, seeds=0), tuned.sample(2, labels=[4, 4], seeds=0))
    assert not torch.equal(
        tuned.sample(2, labels=4, guidance=None, seeds=0), tuned.sample(2, labels=4, seeds=0)
    )


def test_reconstruct_takes_the_default_temperature(tuned):
    x = tuned.sample(2, seeds=0)
    a = tuned.reconstruct(x, layers=2, seeds=5).images
    assert torch.equal(a, tuned.reconstruct(x, layers=2, temperature=0.7, seeds=5).images)


def test_sampling_defaults_round_trip_through_a_model_folder(tiny_cond, tmp_path):
    save_model_folder(tiny_cond, tmp_path / "m", provenance={"source": "test"})
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["sampling"] == SamplingDefaults.for_model(tiny_cond.hp).to_dict()
    write_sampling_defaults(tmp_path / "m", TUNED)
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["sampling"] == {
        "temperature": 0.7,
        "guidance": {"mean": 1.0, "variance": 0.5},
        "label": "seed",
        "chosen_by": "a test",
    }
    assert config["provenance"] == {"source": "test"}
    loaded = model.load_model(tmp_path / "m", device="cpu")
    assert loaded.sampling == TUNED
    assert torch.equal(loaded.sample(3, seeds=10), loaded.sample(3, labels=[0, 1, 2], seeds=10))


def test_a_folder_without_a_sampling_section_gets_the_rule(tiny_cond, tmp_path):
    save_model_folder(tiny_cond, tmp_path / "old", provenance={})
    path = tmp_path / "old" / "config.json"
    config = json.loads(path.read_text())
    del config["sampling"]
    path.write_text(json.dumps(config))
    assert model.load_model(tmp_path / "old", device="cpu").sampling == SamplingDefaults.for_model(
        tiny_cond.hp
    )


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"temperature": -1}, "temperature"),
        ({"label": "random"}, "label must be one of"),
        ({"guidance": {"mean": float("nan")}}, "finite"),
        ({"guidance": 2}, "guidance must be null or"),
        ({"temprature": 0.8}, "unknown sampling fields: temprature"),
    ],
)
def test_bad_sampling_sections_are_explained(tiny_cond, tmp_path, section, message):
    save_model_folder(tiny_cond, tmp_path / "bad", provenance={})
    path = tmp_path / "bad" / "config.json"
    config = json.loads(path.read_text())
    config["sampling"] = section
    path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=message):
        model.load_model(tmp_path / "bad", device="cpu")


def test_an_unconditional_model_refuses_the_seed_rule_and_guidance(tiny):
    with pytest.raises(ValueError, match="class-conditional"):
        SamplingDefaults.from_dict({"label": "seed"}, tiny.hp)
    with pytest.raises(ValueError, match="class-conditional"):
        SamplingDefaults.from_dict({"guidance": {"mean": 1, "variance": 1}}, tiny.hp)
    assert tiny.sampling_options([1, 2])["labels"] is None
    assert DEFAULT is type(DEFAULT)()  # one sentinel
