"""`vdvae bench visual-vae` (service.bench.visual_vae): our sampling against visual-vae's own code,
which it imports from a checkout named on the command line ($VISUAL_VAE_CHECKOUT here; the benchmark
is skipped without one)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from model.tools.visual_vae_reference import ReferenceError, load_reference
from service.bench.visual_vae import main
from tests.model.helpers import FIXTURES

CHECKOUT = os.environ.get("VISUAL_VAE_CHECKOUT")


def test_a_folder_that_is_not_their_checkout_is_refused(tmp_path):
    with pytest.raises(ReferenceError, match="not a checkout of tcl9876/visual-vae"):
        load_reference(tmp_path)


@pytest.mark.skipif(not CHECKOUT, reason="set VISUAL_VAE_CHECKOUT to a checkout of tcl9876/visual-vae")
def test_the_benchmark_times_both_and_prints_the_ratio(capsys):
    config = FIXTURES / "visual-vae" / "cond-attn" / "config.json"
    assert (
        main(["--checkout", CHECKOUT, "--config", str(config), "--batch-sizes", "1,2", "--rounds", "1"]) == 0
    )
    out = capsys.readouterr().out.splitlines()
    rows = [json.loads(line) for line in out if line.startswith("{")]
    assert {(r["code"], r["batch"]) for r in rows} == {("ours", 1), ("theirs", 1), ("ours", 2), ("theirs", 2)}
    assert all(r["img_per_s"] > 0 for r in rows) and out[-1].startswith("batch 2: ours / theirs x")
    assert Path(CHECKOUT).is_dir()
