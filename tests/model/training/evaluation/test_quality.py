"""The sample-quality metric: the bundled judge, the Frechet distance, precision and recall, and the
whole measure on real digits, noise, a broken model and the bundled model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import model
from model.bundled import bundled_weights
from model.checkpoint import save_model_folder
from model.training.data import load_split
from model.training.evaluation import ablation, evaluate
from model.training.evaluation import judge as judge_cli
from model.training.evaluation.judge import BUNDLED_JUDGE, JudgeError, load_judge, save_judge, train_judge
from model.training.evaluation.quality import (
    Gaussian,
    QualityJudge,
    Setting,
    check_judge_fits,
    draw,
    frechet_distance,
    precision_recall,
)
from tests.factories import perturbed

BUNDLED = bundled_weights() / "mnist"


@pytest.fixture(scope="module")
def digits() -> dict:
    return {split: load_split("mnist", split, 32, 1) for split in ("train", "test")}


@pytest.fixture(scope="module")
def judge(digits) -> QualityJudge:
    net, _ = load_judge(BUNDLED_JUDGE)
    return QualityJudge(net, digits["train"])


@pytest.fixture(scope="module")
def bundled() -> model.VDVAE:
    return model.load_model(BUNDLED, device="cpu")


def test_the_bundled_judge_loads_and_recognises_test_digits(digits):
    net, info = load_judge(BUNDLED_JUDGE)
    assert BUNDLED_JUDGE.stat().st_size < 2_000_000
    assert info["command"].startswith("python -m model.training.judge --data mnist")  # as recorded
    assert info["test_accuracy"] >= 0.97
    _, probs = net.embed(torch.from_numpy(digits["test"].images))
    assert (probs.argmax(1).numpy() == digits["test"].labels).mean() == pytest.approx(info["test_accuracy"])
    # weights/ serves every sub-folder with a config.json: the judges' folder must not have one
    assert not (BUNDLED_JUDGE.parent / "config.json").exists()


def test_a_judge_trains_saves_and_loads(digits, tmp_path):
    small = digits["train"].subset(np.arange(0, 4500, 15))  # 300 digits, one epoch: a smoke test
    net = train_judge(small, epochs=1, batch_size=50)
    path = save_judge(net, tmp_path / "j.safetensors", {"test_accuracy": 0.5})
    again, info = load_judge(path)
    x = torch.from_numpy(digits["test"].images[:8])
    assert torch.equal(net.embed(x)[0], again.embed(x)[0]) and info == {"test_accuracy": 0.5}
    (tmp_path / "not.safetensors").write_bytes(b"junk")
    with pytest.raises(JudgeError, match="not a readable"):
        load_judge(tmp_path / "not.safetensors")
    with pytest.raises(JudgeError, match=r"python -m model\.training\.evaluation\.judge"):
        load_judge(tmp_path / "missing.safetensors")


def test_frechet_distance_matches_the_closed_form_for_diagonal_covariances():
    a = Gaussian(
        torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64), torch.diag(torch.tensor([1.0, 4.0, 9.0])).double()
    )
    b = Gaussian(
        torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64), torch.diag(torch.tensor([4.0, 4.0, 1.0])).double()
    )
    # |dmu|^2 + sum (sqrt(s_a) - sqrt(s_b))^2 = (1 + 0 + 4) + (1 + 0 + 4)
    assert frechet_distance(a, b) == pytest.approx(10.0)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-9)
    f = torch.randn(500, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert (
        frechet_distance(Gaussian.fit(f), Gaussian.fit(f @ torch.diag(torch.full((16,), 2.0)).double())) > 1
    )


def test_precision_and_recall_of_the_same_and_of_disjoint_sets():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(300, 8, generator=g)
    assert precision_recall(real, real.clone()) == (1.0, 1.0)
    assert precision_recall(real, real + 100.0) == (0.0, 0.0)
    # real images in two far-apart modes, samples of only one: all precise, half the recall
    two_modes = torch.cat([real[:150], real[150:] + 50.0])
    precision, recall = precision_recall(two_modes, real[:150].clone())
    assert precision == 1.0 and recall == pytest.approx(0.5, abs=0.02)


def scrambled(vae: model.VDVAE) -> model.VDVAE:
    """A deliberately broken model: every weight tensor's values shuffled (same statistics)."""
    broken = model.VDVAE(vae.hp)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for (_, p), (_, q) in zip(broken.named_parameters(), vae.named_parameters()):
            p.copy_(q.flatten()[torch.randperm(q.numel(), generator=g)].view_as(q))
    return broken.eval()


def test_real_digits_score_far_better_than_noise_and_a_broken_model(judge, digits, bundled):
    test = digits["test"].subset(np.arange(0, 500, 2))  # 250 digits, 25 of each (the split is sorted)
    real = judge.score(torch.from_numpy(test.images), test.labels)
    noise = torch.randint(
        0, 256, (250, 32, 32, 1), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    noisy = judge.score(noise)
    broken = judge.score(*draw(scrambled(bundled), Setting("broken", 1.0, "seed", 0.0), 250))
    assert real["fid"] < 2 and real["precision"] > 0.8 and real["label_accuracy"] > 0.97
    for bad in (noisy, broken):
        assert bad["fid"] > 50 * real["fid"] and bad["fid"] > 50, bad
        assert bad["precision"] < 0.2 and bad["recall"] < 0.2, bad
    assert broken["label_accuracy"] < 0.5


def test_the_metric_is_deterministic_for_fixed_seeds(judge, bundled):
    setting = Setting("cond", 0.8, "seed", 1.0)
    a, la = draw(bundled, setting, 60, seed=5)
    b, lb = draw(bundled, setting, 60, seed=5, batch_size=25)  # another batching: same images
    assert la == lb == [(5 + i) % 10 for i in range(60)]
    assert judge.score(a, la) == judge.score(b, lb)


def test_evaluate_fid_prints_the_metrics(capsys):
    args = [str(BUNDLED), "--data", "mnist", "--limit", "20", "--fid", "--samples", "30", "--device", "cpu"]
    assert evaluate.main(args) == 0
    quality = json.loads(capsys.readouterr().out)["sample_quality"]
    assert quality["judge"] == str(BUNDLED_JUDGE) and quality["samples"] == 30
    assert quality["setting"]["labels"] == "seed"
    for key in ("fid", "precision", "recall", "confident", "label_accuracy"):
        assert quality[key] >= 0 and quality["real_test_images"][key] >= 0
    assert evaluate.main([str(BUNDLED), "--data", "my_images/", "--fid"]) == 2  # no judge for other data
    assert "Inception" in capsys.readouterr().err


def test_the_ablation_table_and_tuned_defaults(tmp_path, capsys):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name in ("model.safetensors", "config.json"):
        (folder / name).write_bytes((BUNDLED / name).read_bytes())
    out = tmp_path / "table"
    assert (
        ablation.main(
            [
                str(folder),
                *["--samples", "10", "--limit", "20", "--tune", "--write-defaults", "--out"],
                str(out),
            ]
        )
        == 0
    )
    result = json.loads((out / "table.json").read_text())
    names = [r["setting"] for r in result["rows"]]
    assert names[0].startswith("real test images")
    for t in (0.6, 0.8, 1.0):
        assert f"null label, temperature {t}" in names
    for g in (0.0, 1.0, 2.0):
        assert f"labels from seeds, temperature 1.0, guidance {g}" in names
    assert all((out / Path(r["grid"]).name).is_file() for r in result["rows"][1:])
    assert "| setting | digit FID |" in (out / "table.md").read_text()
    chosen = result["recommended_defaults"]
    assert model.load_model(folder, device="cpu").sampling.to_dict() == chosen
    assert "--tune" in chosen["chosen_by"]


def colour_squares(root: Path, per_class: int = 50) -> Path:
    """A labelled RGB folder data set (one subfolder per class): a red, green or blue square on
    dark noise."""
    rng = np.random.default_rng(0)
    for c, colour in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 60, (32, 32, 3), dtype=np.uint8)
            y, x = rng.integers(2, 14, 2)
            img[y : y + 16, x : x + 16] = colour
            Image.fromarray(img).save(root / f"class{c}" / f"{i}.png")
    return root


def test_other_data_is_scored_with_a_judge_the_user_trains(tmp_path, capsys):
    data = colour_squares(tmp_path / "squares")
    mine = tmp_path / "my_judge.safetensors"
    args = ["--data", str(data), "--channels", "3", "--epochs", "15", "--out", str(mine)]
    assert judge_cli.main(args) == 0
    assert json.loads(capsys.readouterr().out)["test_accuracy"] == 1.0  # 15 held-out squares
    rgb = tmp_path / "rgb"
    save_model_folder(perturbed(model.HParams.preset("tiny").replace(num_classes=3)), rgb, {"test": True})
    common = ["--data", str(data), "--limit", "4", "--samples", "24", "--device", "cpu"]
    assert evaluate.main([str(rgb), *common, "--fid", str(mine)]) == 0
    quality = json.loads(capsys.readouterr().out)["sample_quality"]
    assert quality["judge"] == str(mine) and quality["reference"] == f"{data} train split (135 images)"
    real = quality["real_test_images"]
    assert quality["samples"] == 24 and quality["setting"]["labels"] == "seed"
    # the judge reads every held-out square right; an untrained model's samples score worse than
    # them (15 real images: FID's small-sample bias is large, so only the order is asserted)
    assert real["label_accuracy"] == 1.0 and real["fid"] < quality["fid"]
    assert ablation.main([str(rgb), *common[:2], "--judge", str(mine), "--samples", "8", "--limit", "4"]) == 0
    assert "| setting | digit FID |" in capsys.readouterr().out
    # the digit judge cannot read RGB samples: a clear error, not a traceback
    assert evaluate.main([str(rgb), *common, "--fid", str(BUNDLED_JUDGE)]) == 2
    assert "wrong channels: 3 (RGB); expected 1" in capsys.readouterr().err
    squares_judge = QualityJudge(load_judge(mine)[0], load_split(str(data), "train", 32, 3))
    with pytest.raises(JudgeError, match="the judge reads 32x32x3 images, the model draws 32x32x1"):
        check_judge_fits(squares_judge, model.load_model(BUNDLED, device="cpu"))
    # without a judge file, other data is refused before any work, and the Inception caveat is given
    assert evaluate.main([str(rgb), *common, "--fid"]) == 2
    assert "Inception" in capsys.readouterr().err
