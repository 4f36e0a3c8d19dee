"""model.tools.convert: an official checkpoint imported into our folder format, unchanged."""

from __future__ import annotations

import json

import torch

from model.cascade import load_cascade
from model.checkpoint import load_model
from model.tools.convert import main as convert_main
from tests.factories import VISUAL_VAE_KINDS, random_images, visual_vae_config_file, visual_vae_file
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


# ------------------------------------------------------------------------------------------------
# visual-vae files
# ------------------------------------------------------------------------------------------------


def test_visual_vae_file_with_its_config_round_trips(tmp_path):
    src = visual_vae_file("cond8", tmp_path / "c8_ema_weights.pt")
    cfg = visual_vae_config_file("cond8", tmp_path / "config.json")
    out = tmp_path / "weights" / "c8"
    assert convert_main([str(src), "--family", "visual-vae", "--config", str(cfg), "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["family"] == "visual-vae" and config["provenance"]["source"] == "tcl9876/visual-vae"
    assert config["sampling"]["guidance"] == {"mean": 2.0, "variance": 4.0}  # their evaluate.py
    assert len(config["classes"]) == 10 and config["classes"][0] == ["airplane"]  # CIFAR-10's, by count
    card = (out / "README.md").read_text()
    assert "Luhman & Luhman 2022" in card and "tcl9876/visual-vae" in card
    theirs = torch.load(src, weights_only=True)
    served = load_model(out, device="cpu")
    assert all(torch.equal(v, served.state_dict()[k]) for k, v in theirs.items())
    direct = load_model(src, preset={"model": VISUAL_VAE_KINDS["cond8"]}, device="cpu")
    assert torch.equal(served.sample(3, seeds=[1, 2, 3]), direct.sample(3, seeds=[1, 2, 3]))


def test_the_released_presets_name_their_published_figures(tmp_path):
    from model.families import VISUAL_VAE_FAMILY

    assert VISUAL_VAE_FAMILY.published["cifar10"] == "FID 20.82 on CIFAR-10"
    assert "17.5" in VISUAL_VAE_FAMILY.published["imagenet64"]


def test_a_file_of_the_other_family_is_one_clear_error(tmp_path, capsys):
    src = visual_vae_file("uncond16", tmp_path / "u_ema_weights.pt")
    assert (
        convert_main([str(src), "--family", "vdvae", "--preset", "cifar10", "--out", str(tmp_path / "x")])
        == 2
    )
    err = capsys.readouterr().err
    assert (
        "holds a visual-vae model (tcl9876/visual-vae), not a vdvae one" in err
        and "--family visual-vae" in err
    )
    assert convert_main([str(OFFICIAL), "--family", "visual-vae", "--out", str(tmp_path / "x")]) == 2
    assert "convert it with --family vdvae --preset tiny" in capsys.readouterr().err
    assert convert_main([str(src), "--preset", "imagenet32", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "does not match the visual-vae preset 'imagenet32'" in err and "no preset fits" in err
    assert not (tmp_path / "x").exists()


def test_a_truncated_visual_vae_file_is_refused(tmp_path, capsys):
    src = visual_vae_file("uncond16", tmp_path / "u_ema_weights.pt")
    src.write_bytes(src.read_bytes()[:20_000])
    cfg = visual_vae_config_file("uncond16", tmp_path / "config.json")
    assert convert_main([str(src), "--config", str(cfg), "--out", str(tmp_path / "x")]) == 2
    assert "not a readable PyTorch state dict (truncated or corrupt?)" in capsys.readouterr().err


def test_class_names_from_a_file_and_their_count(tmp_path, capsys):
    src = visual_vae_file("cond8", tmp_path / "c8_ema_weights.pt")
    cfg = visual_vae_config_file("cond8", tmp_path / "config.json")
    names = tmp_path / "names.txt"
    names.write_text("".join(f"digit {i}, d{i}\n" for i in range(10)))
    out = tmp_path / "c8"
    assert convert_main([str(src), "--config", str(cfg), "--classes", str(names), "--out", str(out)]) == 0
    assert load_model(out, device="cpu").classes.index("D3") == 3
    names.write_text("one\ntwo\n")
    assert convert_main([str(src), "--config", str(cfg), "--classes", str(names), "--out", str(out)]) == 2
    assert "2 class names for a model with 10 classes" in capsys.readouterr().err


def test_a_cascade_folder_names_both_stages(tmp_path):
    weights = tmp_path / "weights"
    for kind in ("cond8", "sr8to16"):
        src = visual_vae_file(kind, tmp_path / f"{kind}_ema_weights.pt")
        cfg = visual_vae_config_file(kind, tmp_path / f"{kind}.json")
        assert convert_main([str(src), "--config", str(cfg), "--out", str(weights / kind)]) == 0
    stages = [str(weights / "cond8"), str(weights / "sr8to16")]
    assert convert_main(["--cascade", *stages, "--out", str(weights / "c16")]) == 0
    cascade = load_cascade(weights / "c16", device="cpu")
    assert [s.name for s in cascade.stages] == ["cond8", "sr8to16"]
    assert cascade.sample(2, seeds=[1, 2]).shape == (2, 16, 16, 3)
    # Stages must chain: the super-resolution model first is refused.
    assert convert_main(["--cascade", *reversed(stages), "--out", str(weights / "bad")]) == 2
