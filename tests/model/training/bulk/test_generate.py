"""Bulk sampling: the same files on one process or two, resume after SIGKILL, the job's checks."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from model.checkpoint import load_model, save_model_folder
from model.training.bulk.generate import image_labels, main
from model.training.bulk.shards import read_arrays

from .helpers import BUNDLED, ENV, outputs, run_job, stamps

# 23 images in shards of 5: two processes take shards 0, 2, 4 and 1, 3; the last shard is short.
ARGS = ["--num-samples", "23", "--shard-size", "5", "--batch-size", "4", "--label", "random",
        "--guidance", "1,0.5", "--temperature", "0.8"]  # fmt: skip


@pytest.mark.slow
def test_one_and_two_processes_write_identical_files(tmp_path):
    one, _ = run_job("generate", [str(BUNDLED), *ARGS, "--out", str(tmp_path / "one")], processes=1)
    two, bar = run_job("generate", [str(BUNDLED), *ARGS, "--out", str(tmp_path / "two")], processes=2)
    assert one["computed"] == two["computed"] == 23
    assert [r["images"] for r in two["per_rank"]] == [13, 10]
    # The end summary: images/s overall and per rank (each rank's images over its busy time).
    assert two["processes"] == 2 and two["images_per_s"] > 0
    for r in two["per_rank"]:
        assert r["seconds"] > 0 and r["images_per_s"] == round(r["images"] / r["seconds"], 2)
    assert "23/23" in bar  # rank 0's bar counts every rank's images
    files = outputs(tmp_path / "one")
    assert files == outputs(tmp_path / "two")
    assert len([name for name in files if name.endswith(".png")]) == 23
    # Each image is what the library gives for seed base + i, whichever shard and batch it was in.
    records = [r for entry in json.loads(files["manifest.json"])["shards"] for r in entry["files"]]
    assert [r["label"] for r in records] == image_labels("random", 10, range(23), range(23))
    assert len({r["label"] for r in records}) > 3
    vae = load_model(BUNDLED, device="cpu")
    for i in (0, 7, 22):
        assert records[i]["seed"] == i and records[i]["name"] == f"shard-{i // 5:05d}/{i:06d}.png"
        expected = vae.sample(1, 0.8, labels=[records[i]["label"]], guidance=(1.0, 0.5), seeds=[i])
        png = np.asarray(Image.open(tmp_path / "one" / records[i]["name"]))
        assert np.array_equal(png, expected[0, ..., 0].numpy())


def test_a_killed_job_resumes_and_skips_its_finished_shards(tmp_path, capsys, one_thread):
    args = [str(BUNDLED), "--num-samples", "120", "--shard-size", "5", "--batch-size", "5",
            "--label", "cycle", "--device", "cpu"]  # fmt: skip
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    cmd = [sys.executable, "-m", "model.training.bulk.generate", *args, "--out", str(killed)]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list(killed.glob("shard-*.json")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted(p.name for p in killed.glob("shard-*.json"))
    assert 0 < len(done) < 24, "the job was not killed mid-way"
    entries = [json.loads((killed / name).read_text()) for name in done]
    finished = [*done, *(record["name"] for entry in entries for record in entry["files"])]
    assert len(finished) == 6 * len(done)  # the entry and its 5 PNGs
    before = stamps(killed, finished)

    assert main([*args, "--out", str(killed)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["skipped_shards"] == len(done) and summary["computed"] == 120 - 5 * len(done)
    assert [r["images"] for r in summary["per_rank"]] == [summary["computed"]]
    assert stamps(killed, finished) == before  # finished shards were neither recomputed nor rewritten
    assert main([*args, "--out", str(straight)]) == 0
    assert outputs(killed) == outputs(straight)


def test_npz_output_and_the_checks_of_a_job(tmp_path, capsys, tiny, one_thread):
    out = tmp_path / "npz"
    args = [str(BUNDLED), "--num-samples", "6", "--shard-size", "4", "--format", "npz", "--device", "cpu"]
    assert main([*args, "--seed", "100", "--out", str(out)]) == 0
    arrays = read_arrays(out)
    vae = load_model(BUNDLED, device="cpu")
    # options left out: the model's sampling defaults, as vae.sample and /sample use them
    assert np.array_equal(arrays["images"], vae.sample(6, seeds=100).numpy())
    assert arrays["seeds"].tolist() == list(range(100, 106)) and arrays["labels"].tolist() == [
        0,
        1,
        2,
        3,
        4,
        5,
    ]
    assert json.loads((out / "job.json").read_text())["temperature"] == vae.sampling.temperature
    capsys.readouterr()

    # A rerun into the same folder must ask for the same job.
    assert main([*args, "--seed", "101", "--out", str(out)]) == 2
    assert "differs in seed" in capsys.readouterr().err
    # Options the model cannot honour are refused before any work.
    save_model_folder(tiny, tmp_path / "tiny", {})
    refused = {
        "unconditional": [str(tmp_path / "tiny"), "--num-samples", "2", "--label", "3"],
        "out of range": [str(BUNDLED), "--num-samples", "2", "--label", "10"],
        "needs labels": [str(BUNDLED), "--num-samples", "2", "--label", "none", "--guidance", "1"],
        "temperature": [str(BUNDLED), "--num-samples", "2", "--temperature", "-1"],
    }
    for problem, bad in refused.items():
        assert main([*bad, "--device", "cpu", "--out", str(tmp_path / "refused")]) == 2
        assert problem in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()
