"""`vdvae bench fair` against real servers, briefly: its phases, its rows and its targets line, the
keys phase's shares from the server's per-key counts, and one-image requests at random times."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service.bench import fair

from ..conftest import RunningServer, keyed_server

KEY_A = "bench-key-a-0123456789abcdef"
KEY_B = "bench-key-b-0123456789abcdef"
BRIEF = [
    *("--duration", "1", "--warmup", "0.2"),
    *("--small-clients", "2", "--heavy-clients", "1", "--heavy-n", "4"),
]


@pytest.fixture(scope="module")
def weighted(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    keys = f"{KEY_A} weight=3\n{KEY_B} weight=1\n"
    with keyed_server(model_dir, tmp_path_factory.mktemp("keys"), keys, max_batch_size=8) as server:
        yield server


def rows(out: str, phase: str) -> list[str]:
    return [line for line in out.splitlines() if f" {phase}:" in line]


def test_the_phases_print_their_rows_and_the_targets(server: RunningServer, capsys) -> None:
    argv = ["--url", f"open={server.url}", "--url", server.url, *BRIEF, "--phases", "alone,mixed"]
    assert fair.main(argv) == 0
    out = capsys.readouterr().out
    alone, mixed = rows(out, "alone"), rows(out, "mixed")
    assert len(alone) == 2 and len(mixed) == 2 and "small" in alone[0] and "heavy" in mixed[0]
    targets = out[out.index("targets") :].splitlines()[1:]
    assert targets[0].strip().startswith("open:") and "p50 mixed/alone x" in targets[0]
    assert "of open's" in targets[1]  # the second server against the first


def test_the_keys_phase_shares_by_weight_from_the_servers_count(weighted: RunningServer, capsys) -> None:
    argv = ["--url", weighted.url, "--keys", f"{KEY_A},{KEY_B}", "--weights", "3,1", *BRIEF]
    argv += ["--phases", "keys", "--key-clients", "3", "--key-n", "8", "--duration", "3"]
    assert fair.main(argv) == 0
    (keys,) = rows(capsys.readouterr().out, "keys")
    ratio = float(keys.split("ratio")[1].split()[0])
    assert 2.4 <= ratio <= 3.6, keys  # counted per image by the server: 3 to 1


def test_one_image_requests_at_random_times(server: RunningServer, capsys) -> None:
    argv = ["--url", server.url, *BRIEF, "--phases", "alone", "--small-rate", "20"]
    assert fair.main(argv) == 0
    (alone,) = rows(capsys.readouterr().out, "alone")
    rps = float(alone.split("small")[1].split("req/s")[0])
    assert 5 <= rps <= 40  # about 20 a second, whatever the answers' latency
