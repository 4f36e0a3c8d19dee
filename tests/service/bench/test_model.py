"""model.tools.bench: prints one row per batch size for the eager and the optimized model."""

from __future__ import annotations

import json

from service.bench.model import main


def test_bench_prints_a_row_per_batch_size(capsys) -> None:
    assert (
        main(["--preset", "tiny", "--device", "cpu", "--batch-sizes", "1,2", "--repeats", "1", "--json"]) == 0
    )
    out = capsys.readouterr().out
    assert "tiny (random weights)" in out and "channels_last True" in out
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [r["batch"] for r in rows] == [1, 2]
    assert all(r["eager_img_s"] > 0 and r["optimized_img_s"] > 0 for r in rows)


def test_bench_times_progressive_sampling_on_request(capsys) -> None:
    argv = ["--preset", "tiny", "--device", "cpu", "--batch-sizes", "1", "--repeats", "1", "--progressive"]
    assert main(argv) == 0
    assert "timing sample_stages (previews included)" in capsys.readouterr().out
