"""model.tools.convert: an official checkpoint imported into our folder format, unchanged."""

from __future__ import annotations

import json

import torch

from model.checkpoint import load_model
from model.tools.convert import main as convert_main
from tests.factories import random_images
from tests.model.helpers import FIXTURES

OFFICIAL = FIXTURES / "public-tiny" / "model-ema.th"


def outputs(vae):
    x = random_images(2)
    return vae.decode([], n=2, temperature=0.7, seeds=[1, 2]), vae.encode(x, seeds=[3, 4]).kl


def test_official_import_round_trip(tmp_path):
    official = load_model(OFFICIAL, preset="tiny", device="cpu")
    assert convert_main([str(OFFICIAL), "--preset", "tiny", "--out", str(tmp_path / "tiny")]) == 0
    folder = tmp_path / "tiny"
    assert {p.name for p in folder.iterdir()} == {"model.safetensors", "config.json", "README.md"}
    config = json.loads((folder / "config.json").read_text())
    assert config["provenance"]["preset"] == "tiny" and len(config["provenance"]["sha256"]) == 64
    imported = load_model(folder, device="cpu")
    for a, b in zip(outputs(official), outputs(imported), strict=True):
        assert torch.equal(a, b)
    sd = torch.load(OFFICIAL, weights_only=True)
    assert all(torch.equal(v, imported.state_dict()[k]) for k, v in sd.items())


def test_convert_cli_reports_errors_without_a_traceback(tmp_path, capsys):
    assert convert_main([str(OFFICIAL), "--preset", "cifar10", "--out", str(tmp_path / "x")]) == 2
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
