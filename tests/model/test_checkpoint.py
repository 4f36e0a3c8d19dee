"""Checkpoints: official import round trip, our folder format, and one clear error per failure."""

from __future__ import annotations

import json
import pickle
import shutil

import pytest
import torch

import model
from model.checkpoint import (
    CheckpointError,
    fitting_presets,
    load_model,
    resolve_architecture,
    save_model_folder,
)
from model.families import VDVAE_FAMILY
from model.hparams import HParams
from tests.model.helpers import FIXTURES

OFFICIAL = FIXTURES / "public-tiny" / "model-ema.th"


def test_preset_is_inferred_when_only_one_fits():
    assert load_model(OFFICIAL, device="cpu").hp == model.HParams.preset("tiny")


def test_ddp_prefixed_model_th_loads(tmp_path):
    sd = torch.load(OFFICIAL, weights_only=True)
    path = tmp_path / "tiny-model.th"
    torch.save({"module." + k: v for k, v in sd.items()}, path)
    vae = load_model(path, preset="tiny", device="cpu")
    assert torch.equal(vae.state_dict()["decoder.gain"], sd["decoder.gain"])


def test_wrong_preset_names_mismatching_keys_and_fitting_presets():
    with pytest.raises(CheckpointError) as e:
        load_model(OFFICIAL, preset="cifar10", device="cpu")
    msg = str(e.value)
    assert "preset 'cifar10'" in msg
    assert "encoder.in_conv.weight: checkpoint (32, 3, 3, 3) vs model (384, 3, 3, 3)" in msg
    assert "presets that fit this checkpoint: tiny" in msg


def test_folder_weights_that_do_not_match_the_config(tmp_path, tiny):
    save_model_folder(tiny, tmp_path / "m", {"note": "test"})
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["hparams"]["zdim"] = 4
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        CheckpointError, match=r"does not match the architecture in config.json.*fit this checkpoint: tiny"
    ):
        load_model(tmp_path / "m", device="cpu")


def test_truncated_official_file(tmp_path):
    path = tmp_path / "cut-model-ema.th"
    path.write_bytes(OFFICIAL.read_bytes()[:50_000])
    with pytest.raises(CheckpointError, match="not a readable PyTorch state dict"):
        load_model(path, preset="tiny", device="cpu")


def test_truncated_safetensors(tmp_path, tiny):
    save_model_folder(tiny, tmp_path / "m", {})
    weights = tmp_path / "m" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_model(tmp_path / "m", device="cpu")


def test_corrupt_config(tmp_path, tiny):
    save_model_folder(tiny, tmp_path / "m", {})
    (tmp_path / "m" / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"config.json is not valid JSON"):
        load_model(tmp_path / "m", device="cpu")


def test_missing_files(tmp_path, tiny):
    with pytest.raises(CheckpointError, match=r"no checkpoint at .*expected a model folder"):
        load_model(tmp_path / "nothing", device="cpu")
    save_model_folder(tiny, tmp_path / "m", {})
    (tmp_path / "m" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"missing .*model.safetensors"):
        load_model(tmp_path / "m", device="cpu")


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (shutil.rmtree, (str(tmp_path / "victim"),))

    (tmp_path / "victim").mkdir()
    path = tmp_path / "evil-model.th"
    path.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(CheckpointError, match="not a readable PyTorch state dict"):
        load_model(path, preset="tiny", device="cpu")
    assert (tmp_path / "victim").exists()


def test_non_finite_weights_are_refused(tmp_path):
    sd = torch.load(OFFICIAL, weights_only=True)
    sd["decoder.gain"][0, 0, 0, 0] = float("nan")
    torch.save(sd, tmp_path / "nan-model-ema.th")
    with pytest.raises(CheckpointError, match=r"decoder.gain has non-finite values"):
        load_model(tmp_path / "nan-model-ema.th", preset="tiny", device="cpu")


def test_official_file_without_a_fitting_preset_asks_for_one(tmp_path):
    sd = torch.load(OFFICIAL, weights_only=True)
    del sd["decoder.gain"]
    torch.save(sd, tmp_path / "odd-model-ema.th")
    with pytest.raises(CheckpointError, match="pass preset="):
        load_model(tmp_path / "odd-model-ema.th", device="cpu")


def test_saved_folder_round_trip_keeps_hparams_and_provenance(tmp_path, tiny_cond):
    save_model_folder(tiny_cond, tmp_path / "c", {"steps": 7})
    back = load_model(tmp_path / "c", device="cpu")
    assert back.hp == tiny_cond.hp and back.provenance == {"steps": 7}
    assert torch.equal(back.sample(2, labels=[1, 2], seeds=0), tiny_cond.sample(2, labels=[1, 2], seeds=0))


def test_written_files_get_the_usual_mode_not_mkstemps_private_one(tmp_path, tiny_cond):
    import os

    from model.files import NEW_FILE_MODE

    save_model_folder(tiny_cond, tmp_path / "c", {"steps": 7})
    for name in ("model.safetensors", "config.json", "README.md"):
        mode = os.stat(tmp_path / "c" / name).st_mode & 0o777
        assert mode == NEW_FILE_MODE and mode & 0o044  # readable by group and others under umask 022


def meta_state_dict(hp: HParams) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return model.VDVAE(hp).state_dict()


def test_the_released_ffhq1024_layout_is_read_from_its_state_dict():
    """openai/vdvae's FFHQ-1024 file holds two encoder blocks fewer (68) than its published
    hyperparameters build (70): the block count comes from the state dict."""
    published = HParams.preset("ffhq1024")
    sd = meta_state_dict(published)
    released = {
        k: v for k, v in sd.items() if not k.startswith(("encoder.enc_blocks.68.", "encoder.enc_blocks.69."))
    }
    assert len(published.enc_layers) == 70
    hp, name = resolve_architecture(VDVAE_FAMILY, "ffhq1024", released, "ffhq1024-iter-1700000-model-ema.th")
    assert name == "ffhq1024" and len(hp.enc_layers) == 68 and hp.enc_blocks.endswith(",4d4,1x2")
    assert {k: v.shape for k, v in meta_state_dict(hp).items()} == {k: v.shape for k, v in released.items()}
    assert [n for _, n in fitting_presets(released)] == ["ffhq1024"]


def test_a_file_missing_trailing_encoder_blocks_loads(tmp_path):
    sd = torch.load(OFFICIAL, weights_only=True)
    blocks = HParams.preset("tiny").enc_layers
    last = len(blocks) - 1
    cut = {k: v for k, v in sd.items() if not k.startswith(f"encoder.enc_blocks.{last}.")}
    torch.save(cut, tmp_path / "cut-model-ema.th")
    vae = load_model(tmp_path / "cut-model-ema.th", preset="tiny", device="cpu")
    assert len(vae.hp.enc_layers) == last and vae.sample(1, seeds=[0]).shape == (1, 32, 32, 3)
    # Blocks missing anywhere else are still a mismatch.
    inner = {k: v for k, v in sd.items() if not k.startswith("encoder.enc_blocks.1.")}
    torch.save(inner, tmp_path / "holed-model-ema.th")
    with pytest.raises(CheckpointError, match=r"missing encoder\.enc_blocks"):
        load_model(tmp_path / "holed-model-ema.th", preset="tiny", device="cpu")
