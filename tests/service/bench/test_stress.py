"""`vdvae bench stress --spawn` end to end, briefly: it starts its own server, runs the quiet
and the hostile phase, and reports both (the hostile clients' answers are all 4xx problems)."""

from __future__ import annotations

import pytest

from service.bench import stress


def test_stress_spawns_a_server_and_reports_both_phases(capsys: pytest.CaptureFixture) -> None:
    argv = ["--spawn", "--duration", "1", "--normal-clients", "1", "--hostile-clients", "1"]
    assert stress.main(argv) == 0
    out = capsys.readouterr().out
    quiet, hostile = (
        next(line for line in out.splitlines() if f"{name}:" in line) for name in ("quiet", "hostile")
    )
    assert "/health/live p50" in quiet and "answered" in quiet
    assert "x" in hostile.split("answered")[-1]  # the normal requests' p50 against quiet
    answers = next(line for line in out.splitlines() if "hostile answers:" in line)
    assert " 4" in answers and " 5" not in answers  # 413s and 422s, never a 5xx
