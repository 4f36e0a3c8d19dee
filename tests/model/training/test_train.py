"""The training module end to end on the MNIST demo data with a very small model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from model.checkpoint import load_model
from model.training.train import main
from model.training.trainer import CHECKPOINT

SMALL = [
    "--data", "mnist", "--preset", "mnist", "--width", "16", "--zdim", "4", "--num-mixtures", "2",
    "--enc-blocks", "32x1,32d2,16x1,16d2,8x1,8d2,4x1,4d4,1x1", "--dec-blocks", "1x1,4m1,8m4,16m8,32m16",
    "--batch-size", "8", "--eval-every", "0", "--sample-every", "0", "--log-every", "1",
    "--warmup-steps", "4",
]  # fmt: skip


def rows(run: Path, kind: str) -> list[dict]:
    lines = (run / "log.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["type"] == kind]


def state(run: Path) -> dict:
    return torch.load(run / CHECKPOINT, weights_only=True)


def assert_same_weights(a: dict, b: dict) -> None:
    for part in ("model", "ema"):
        for k, v in a[part].items():
            assert torch.equal(v, b[part][k]), f"{part} {k}"


def test_loss_falls_and_the_run_exports_a_servable_model(tmp_path):
    out = tmp_path / "run"
    assert main([*SMALL, "--steps", "60", "--lr", "3e-3", "--out", str(out)]) == 0
    losses = [r["loss"] for r in rows(out, "train")]
    assert len(losses) == 60
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10 - 0.1
    vae = load_model(out / "model", device="cpu")
    assert vae.hp.num_classes == 10 and vae.hp.image_channels == 1
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["provenance"]["steps"] == 60 and "test_bits_per_dim" in config["provenance"]
    assert vae.sample(2, labels=[3, 4], seeds=0).shape == (2, 32, 32, 1)
    assert {p.name for p in (out / "samples").iterdir()} >= {
        "step-0000060-temperatures.png", "step-0000060-classes.png", "step-0000060-classes-guided.png"
    }  # fmt: skip
    profile = json.loads((out / "rate_profile.json").read_text())
    assert len(profile["rate_bits_per_layer"]) == vae.hp.num_layers
    assert rows(out, "eval")[-1]["test_bpd"] == pytest.approx(
        config["provenance"]["test_bits_per_dim"], abs=1e-4
    )


def test_resume_is_exact(tmp_path):
    common = [*SMALL, "--lr-schedule", "constant", "--checkpoint-every", "3"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main([*common, "--steps", "12", "--out", str(straight)]) == 0
    assert main([*common, "--steps", "6", "--out", str(split)]) == 0
    assert main([*common, "--steps", "12", "--out", str(split), "--resume"]) == 0
    a, b = state(straight), state(split)
    assert a["step"] == b["step"] == 12
    assert_same_weights(a, b)
    assert all(torch.equal(x, y) for x, y in zip(a["rng"], b["rng"], strict=True))
    assert [r["step"] for r in rows(split, "train")] == list(range(1, 13))
    assert [r["loss"] for r in rows(split, "train")] == [r["loss"] for r in rows(straight, "train")]
    provenance = json.loads((split / "model" / "config.json").read_text())["provenance"]
    assert "--resume" not in provenance["command"] and "--steps 6" in provenance["command"]
    assert len(provenance["resumed"]) == 1 and provenance["resumed"][0].startswith("at step 6: ")


def test_a_run_killed_at_any_moment_resumes_to_the_same_weights(tmp_path):
    args = [*SMALL, "--steps", "40", "--checkpoint-every", "1"]
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert main([*args, "--out", str(straight)]) == 0
    proc = subprocess.Popen([sys.executable, "-m", "model.training.train", *args, "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 300
    while not (killed / CHECKPOINT).exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(1.0)  # well inside training: steps and checkpoint writes are in flight
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert state(killed)["step"] < 40, "the run finished before it could be killed"
    assert main([*args, "--out", str(killed), "--resume"]) == 0
    assert_same_weights(state(straight), state(killed))


def test_a_crash_during_a_checkpoint_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "run"
    assert main([*SMALL, "--steps", "4", "--out", str(out)]) == 0
    before = (out / CHECKPOINT).read_bytes()

    def crash_mid_write(obj, f, *a, **kw):
        Path(f).write_bytes(b"PK\x03\x04 half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash_mid_write)
    with pytest.raises(OSError, match="disk full"):
        main([*SMALL, "--steps", "8", "--out", str(out), "--resume"])
    monkeypatch.undo()
    assert (out / CHECKPOINT).read_bytes() == before
    assert state(out)["step"] == 4
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    assert main([*SMALL, "--steps", "8", "--out", str(out), "--resume"]) == 0
    assert state(out)["step"] == 8


@pytest.mark.slow
def test_two_processes_with_gloo_end_with_identical_weights(tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "model.training.train", *SMALL, "--steps", "6", "--device", "cpu",
           "--out", str(out)]  # fmt: skip
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = rows(out, "ranks")
    assert len(ranks) == 1 and ranks[0]["identical"] and len(ranks[0]["checksums"]) == 2
    config = rows(out, "config")[0]
    assert config["world_size"] == 2
    # Two processes of batch 8 consume 16 images per step.
    assert json.loads((out / "model" / "config.json").read_text())["provenance"]["images_seen"] == 6 * 16


def test_label_agreement_of_a_nearest_neighbour_classifier_on_real_digits():
    from model.training.data import load_split
    from model.training.evaluation.quality import nearest_neighbour_labels

    train, test = load_split("mnist", "train", 32, 1), load_split("mnist", "test", 32, 1)
    accuracy = (nearest_neighbour_labels(torch.from_numpy(test.images), train).numpy() == test.labels).mean()
    assert accuracy > 0.95  # 0.968: a sound reference for "samples show their class"
