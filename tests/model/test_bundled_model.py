"""The default model under weights/: it loads, its card's held-out figure is reproducible with
`python -m model.training.evaluation.evaluate`, and its class-conditional samples show the asked-for digit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import model
from model.training.evaluation import evaluate, quality

FOLDER = Path(__file__).resolve().parents[2] / "weights" / "mnist"


@pytest.fixture(scope="module")
def bundled() -> model.VDVAE:
    return model.load_model(FOLDER, device="cpu")


def test_the_bundled_model_is_a_small_class_conditional_mnist_model(bundled):
    hp = bundled.hp
    assert (hp.image_size, hp.image_channels, hp.num_classes) == (32, 1, 10)
    assert sum(f.stat().st_size for f in FOLDER.iterdir()) < 5_000_000  # "a few MB at most"
    provenance = json.loads((FOLDER / "config.json").read_text())["provenance"]
    assert provenance["trained_by"] == "model.train"
    card = (FOLDER / "README.md").read_text()
    assert provenance["command"] in card
    for grid in ("classes.png", "classes-guided.png", "temperatures.png", "reconstructions.png"):
        assert (FOLDER / grid).is_file() and f"({grid})" in card


def test_model_evaluate_reproduces_the_cards_held_out_bits_per_dim(capsys):
    provenance = json.loads((FOLDER / "config.json").read_text())["provenance"]
    assert evaluate.main([str(FOLDER), "--data", "mnist", "--split", "test", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 500
    assert result["bits_per_dim"] == pytest.approx(provenance["test_bits_per_dim"], abs=0.01)
    assert result["bits_per_dim"] < 1.2  # the target for the held-out 500


def test_class_conditional_samples_show_their_digit(bundled):
    from model.training.data import load_split

    train = load_split("mnist", "train", 32, 1)
    result = quality.label_agreement(bundled, train, per_class=20)
    # Chance is 0.1; the nearest-neighbour judge itself is right on 96.8% of real test digits.
    assert result["unguided"] > 0.8
    assert result["guided"] >= result["unguided"] - 0.02
