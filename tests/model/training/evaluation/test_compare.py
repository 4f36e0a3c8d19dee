"""model.training.evaluation.compare: model and cascade folders scored side by side at the same seeds."""

from __future__ import annotations

import json

import torch

from model.bundled import bundled_weights
from model.cascade import CascadeStage, StageOptions, save_cascade_folder
from model.checkpoint import load_model, save_model_folder
from model.training.evaluation import compare
from model.training.evaluation.quality import Setting, draw, load_quality_judge

BUNDLED = bundled_weights() / "mnist"


def test_a_model_and_a_cascade_in_one_table(tmp_path, base16, sr16, capsys, one_thread):
    save_model_folder(base16, tmp_path / "base16", provenance={"images_seen": 1000})
    save_model_folder(sr16, tmp_path / "sr16to32", provenance={"images_seen": 2000})
    stages = [CascadeStage("base16", base16), CascadeStage("sr16to32", sr16, StageOptions(low_res_noise=0.1))]
    cascade = save_cascade_folder(tmp_path / "cascade", stages)
    out = tmp_path / "table"
    args = [str(BUNDLED), str(cascade), "--samples", "20", "--guidance", "0", "0.5", "--out", str(out)]
    assert compare.main(args) == 0
    rows = json.loads((out / "table.json").read_text())["rows"]
    assert [(r["name"], r["guidance"]) for r in rows] == [
        ("mnist", 0.0), ("mnist", 0.5), ("cascade", 0.0), ("cascade", 0.5)
    ]  # fmt: skip
    assert rows[2]["stages"] == "16, 1k images + 16->32, 2k images" and rows[2]["images_seen"] == 3000
    assert rows[0]["images_seen"] == load_model(BUNDLED, device="cpu").provenance["images_seen"]
    assert all((out / r["grid"]).is_file() for r in rows)
    # The trained model beats the untrained cascade, and its row is what the ablation's draw scores.
    assert rows[0]["fid"] < rows[2]["fid"]
    judge, _ = load_quality_judge(None, "mnist")
    vae = load_model(BUNDLED, device="cpu")
    images, labels = draw(vae, Setting("same", 1.0, "seed", 0.5), 20)
    assert judge.score(images, torch.tensor(labels))["fid"] == rows[1]["fid"]
    assert "| mnist |" in (out / "table.md").read_text()
    assert compare.main([str(tmp_path / "missing")]) == 2
    assert "error:" in capsys.readouterr().err
