"""Bulk encoding: the same files on one process or two, the figures of evaluate per image, and a
damaged or missing shard recomputed on a rerun."""

from __future__ import annotations

import json

import numpy as np
import pytest

from model.checkpoint import load_model
from model.training.bulk.encode_dataset import main
from model.training.bulk.shards import read_arrays
from model.training.data import load_split
from model.training.evaluation.evaluate import evaluate_elbo

from .helpers import BUNDLED, outputs, run_job, stamps

# 23 test digits in shards of 5, the top 2 layers' posterior samples, means and stds.
ARGS = ["--data", "mnist", "--split", "test", "--limit", "23", "--shard-size", "5", "--batch-size", "4",
        "--latents", "2", "--posterior"]  # fmt: skip


@pytest.mark.slow
def test_one_and_two_processes_write_identical_files(tmp_path):
    one, _ = run_job("encode_dataset", [str(BUNDLED), *ARGS, "--out", str(tmp_path / "one")], processes=1)
    two, _ = run_job("encode_dataset", [str(BUNDLED), *ARGS, "--out", str(tmp_path / "two")], processes=2)
    assert one["computed"] == two["computed"] == 23
    assert [r["images"] for r in two["per_rank"]] == [13, 10]
    assert outputs(tmp_path / "one") == outputs(tmp_path / "two")
    # A job resumes on another number of processes: the shards left are dealt to both ranks.
    (tmp_path / "one" / "shard-00001.json").unlink()
    (tmp_path / "one" / "shard-00003.npz").unlink()
    (tmp_path / "one" / "manifest.json").unlink()
    resumed, _ = run_job("encode_dataset", [str(BUNDLED), *ARGS, "--out", str(tmp_path / "one")], processes=2)
    assert resumed["skipped_shards"] == 3 and [r["images"] for r in resumed["per_rank"]] == [5, 5]
    assert outputs(tmp_path / "one") == outputs(tmp_path / "two")
    arrays = read_arrays(tmp_path / "one")
    assert arrays["index"].tolist() == list(range(23))
    assert arrays["label"].tolist() == load_split("mnist", "test", 32, 1).labels[:23].tolist()
    assert arrays["kl_bits"].shape == (23, 19) and arrays["bits_per_dim"].shape == (23,)
    assert arrays["z_0"].shape == arrays["mean_1"].shape == arrays["std_1"].shape == (23, 8, 1, 1)
    assert "z_2" not in arrays


def test_per_image_figures_average_to_what_evaluate_reports(tmp_path, capsys, one_thread):
    args = ["--data", "mnist", "--limit", "30", "--shard-size", "8", "--batch-size", "3", "--seed", "5"]
    assert main([str(BUNDLED), *args, "--device", "cpu", "--out", str(tmp_path / "enc")]) == 0
    arrays = read_arrays(tmp_path / "enc")
    vae = load_model(BUNDLED, device="cpu")
    data = load_split("mnist", "test", 32, 1)
    reference = evaluate_elbo(vae, data.subset(np.arange(30)), batch_size=30, seed=5)
    assert arrays["bits_per_dim"].mean() == pytest.approx(reference["bits_per_dim"], rel=1e-5)
    assert arrays["rate_bits_per_dim"].mean() == pytest.approx(reference["rate_bits_per_dim"], rel=1e-5)
    assert arrays["kl_bits"].mean(0) == pytest.approx(reference["rate_bits_per_layer"], abs=1e-3)
    assert np.allclose(
        arrays["distortion_bits_per_dim"] + arrays["rate_bits_per_dim"], arrays["bits_per_dim"]
    )


def test_a_damaged_or_missing_shard_is_recomputed_and_only_it(tmp_path, capsys, one_thread):
    out = tmp_path / "enc"
    args = [str(BUNDLED), "--data", "mnist", "--limit", "20", "--shard-size", "5", "--latents", "1",
            "--device", "cpu", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    capsys.readouterr()
    complete = outputs(out)
    kept = ["shard-00000.npz", "shard-00000.json", "shard-00003.npz", "shard-00003.json"]
    before = stamps(out, kept)
    damaged = bytearray((out / "shard-00001.npz").read_bytes())
    damaged[len(damaged) // 2] ^= 1  # one bit in the middle: the same size, another checksum
    (out / "shard-00001.npz").write_bytes(bytes(damaged))
    (out / "shard-00002.json").unlink()
    (out / "manifest.json").unlink()

    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["skipped_shards"] == 2 and summary["computed"] == 10
    assert stamps(out, kept) == before
    assert outputs(out) == complete
