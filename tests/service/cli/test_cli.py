"""`vdvae`: each client command as a subprocess against a real service on loopback and with --local
(the same bytes for the same seeds), its errors as sentences with exit codes 2 (bad input) and 1
(no service), --help with examples on every command, and the existing tools behind it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from service.cli import COMMANDS, main
from service.client import Client

from ..conftest import REPO, RunningServer, digit_like, free_port, png_bytes

# Subprocesses are bounded: a local run loads torch and the model (seconds on a busy 2-core box).
TIMEOUT_S = 180


def vdvae(*args: str, cwd: Path, url: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VDVAE_")}
    env["PYTHONPATH"] = str(REPO)
    if url is not None:
        env["VDVAE_URL"] = url
    out = subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S,
    )  # fmt: skip
    if check:
        assert out.returncode == 0, out.stderr
    return out


def both(tmp_path: Path, server: RunningServer, model_dir: Path, *args: str) -> tuple[Path, Path]:
    """Run one command against the service and with --local, each in its own folder."""
    remote, local = tmp_path / "remote", tmp_path / "local"
    for folder in (remote, local):
        folder.mkdir(exist_ok=True)
        (folder / "digit.png").write_bytes(png_bytes(digit_like()))
    vdvae(*args, cwd=remote, url=server.url)
    vdvae(*args, "--local", str(model_dir / "mnist"), cwd=local)
    return remote, local


def test_sample_grid_is_the_services_grid_remote_and_local(tmp_path, server, model_dir) -> None:
    args = ("sample", "-n", "6", "--label", "3", "--guidance", "1,1", "--temperature", "0.8", "--seed", "1")
    remote, local = both(tmp_path, server, model_dir, *args, "-o", "threes.png")
    body = {"n": 6, "label": 3, "guidance": {"mean": 1, "variance": 1}, "temperature": 0.8, "seed": 1}
    with server.client() as raw:
        grid = raw.post("/sample", json=body, headers={"accept": "image/png"}).content
    assert (remote / "threes.png").read_bytes() == (local / "threes.png").read_bytes() == grid


def test_sample_each_writes_the_services_pngs_remote_and_local(tmp_path, server, model_dir) -> None:
    remote, local = both(
        tmp_path, server, model_dir, "sample", "-n", "5", "--seed", "3", "--each", "-o", "out"
    )
    with Client(server.url) as client:
        expected = [im.png for im in client.sample(5, seed=3)]
    for folder in (remote, local):
        files = sorted((folder / "out").glob("*.png"))
        assert [f.name for f in files] == [f"{i:06d}.png" for i in range(5)]
        assert [f.read_bytes() for f in files] == expected


def test_reconstruct_encode_decode_remote_and_local(tmp_path, server, model_dir) -> None:
    remote, local = both(
        tmp_path, server, model_dir, "reconstruct", "digit.png", "--layers", "3", "--seed", "0"
    )
    assert (remote / "reconstruction.png").read_bytes() == (local / "reconstruction.png").read_bytes()

    both(tmp_path, server, model_dir, "encode", "digit.png", "--latents", "2", "--seed", "4", "--json")
    with np.load(remote / "z.npz") as r, np.load(local / "z.npz") as loc:
        assert sorted(r.files) == ["model", "seed", "z0", "z1"] and str(r["model"]) == "mnist"
        assert all(np.array_equal(r[k], loc[k]) for k in r.files)
        z = [r["z0"], r["z1"]]
    with Client(server.url) as client:
        assert all(
            np.array_equal(a, b) for a, b in zip(client.encode(digit_like(), latents=2, seed=4).latents, z)
        )
        decoded = client.decode(z, seed=9)[0].png

    both(tmp_path, server, model_dir, "decode", "z.npz", "--seed", "9", "-o", "out.png")
    assert (remote / "out.png").read_bytes() == (local / "out.png").read_bytes() == decoded


def test_interpolate_writes_the_services_row_and_frames_remote_and_local(tmp_path, server, model_dir) -> None:
    args = (
        "interpolate",
        "digit.png",
        "7",
        "--steps",
        "4",
        "--seed",
        "2",
        "--frames",
        "frames",
        "-o",
        "row.png",
    )
    remote, local = both(tmp_path, server, model_dir, *args)
    with Client(server.url) as client:
        path = client.interpolate(png_bytes(digit_like()), 7, 4, seed=2)
    for folder in (remote, local):
        assert (folder / "row.png").read_bytes() == path.grid_png()
        frames = sorted((folder / "frames").glob("*.png"))
        assert [f.read_bytes() for f in frames] == [im.png for im in path]
    printed = vdvae(
        "interpolate", "3", "4", "--steps", "2", "--label", "none", cwd=remote, url=server.url
    ).stdout
    assert "2 images from 3 to 4" in printed and "no label" in printed
    missing = vdvae("interpolate", "nothere.png", "4", cwd=remote, url=server.url, check=False)
    assert missing.returncode == 2 and "no image file nothere.png" in missing.stderr


def test_encode_and_models_print_readable_tables(tmp_path, server, model_dir) -> None:
    (tmp_path / "digit.png").write_bytes(png_bytes(digit_like()))
    table = vdvae("encode", "digit.png", "--seed", "0", cwd=tmp_path, url=server.url).stdout
    as_json = json.loads(
        vdvae("encode", "digit.png", "--seed", "0", "--json", cwd=tmp_path, url=server.url).stdout
    )
    rows = [line for line in table.splitlines() if line.split() and line.split()[0].isdigit()]
    assert "bits/dim" in table and len(rows) == len(as_json["kl_bits"])
    assert [float(r.split()[2]) for r in rows] == pytest.approx(as_json["kl_bits"], abs=0.01)
    models = vdvae("models", cwd=tmp_path, url=server.url).stdout
    assert "mnist *" in models and "tiny" in models and "32x32x3" in models
    listed = json.loads(vdvae("models", "--json", "--local", str(model_dir), cwd=tmp_path).stdout)
    assert {m["id"] for m in listed} == {"mnist", "tiny"}


def test_errors_are_sentences_with_exit_codes(tmp_path, server) -> None:
    bad = vdvae("sample", "--label", "99", cwd=tmp_path, url=server.url, check=False)
    assert bad.returncode == 2 and "label 99 is out of range" in bad.stderr and "Traceback" not in bad.stderr
    missing = vdvae("encode", "nothing.png", cwd=tmp_path, url=server.url, check=False)
    assert missing.returncode == 2 and "no image file nothing.png" in missing.stderr
    flag = vdvae("sample", "--guidance", "1,2,3", cwd=tmp_path, url=server.url, check=False)
    assert flag.returncode == 2 and "MEAN,VARIANCE" in flag.stderr
    down = vdvae("models", cwd=tmp_path, url=f"http://127.0.0.1:{free_port()}", check=False)
    assert down.returncode == 1 and "no answer from" in down.stderr and "Traceback" not in down.stderr
    nowhere = vdvae("models", "--local", str(tmp_path), cwd=tmp_path, check=False)
    assert nowhere.returncode == 2 and "no model folder there" in nowhere.stderr
    jpg = vdvae("sample", "-o", "x.jpg", cwd=tmp_path, url=server.url, check=False)
    assert jpg.returncode == 2 and "a grid is a .png file" in jpg.stderr and not (tmp_path / "x.jpg").exists()
    unknown = vdvae("smaple", cwd=tmp_path, check=False)
    assert unknown.returncode == 2 and "unknown command 'smaple'" in unknown.stderr


@pytest.mark.parametrize("command", [*COMMANDS, "bench model", "bench service"])
def test_every_command_has_help_with_examples(command: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as done:
        main([*command.split(), "--help"])
    help_text = capsys.readouterr().out
    assert done.value.code == 0
    assert f"usage: vdvae {command}" in help_text
    examples = [line for line in help_text.splitlines() if line.strip().startswith(f"vdvae {command} ")]
    assert examples, help_text
    assert main(["--help"]) == 0 and command.split()[0] in capsys.readouterr().out


def test_the_service_is_vdvae_url_else_the_local_default(monkeypatch: pytest.MonkeyPatch) -> None:
    from service.cli.options import connection_parser

    monkeypatch.delenv("VDVAE_URL", raising=False)
    assert connection_parser().parse_args([]).url == "http://127.0.0.1:8000"
    assert Client().url == "http://127.0.0.1:8000"
    monkeypatch.setenv("VDVAE_URL", "http://10.0.0.7:9000")
    assert connection_parser().parse_args([]).url == "http://10.0.0.7:9000"
    assert Client().url == "http://10.0.0.7:9000"
    assert connection_parser().parse_args(["--url", "http://h:1"]).url == "http://h:1"


def test_the_console_script_is_vdvae() -> None:
    import tomllib

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["vdvae"] == "service.cli:main"


# --------------------------------------------------------------------------------------------
# The existing tools behind `vdvae`
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_vdvae_serve_serves_and_drains(tmp_path, model_dir) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VDVAE_")} | {"PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "service.cli", "serve", "--model-dir", str(model_dir), "--port", str(port)]
    proc = subprocess.Popen([*cmd, "--cpu-threads", "1", "--no-access-log"], env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "vdvae serve did not come up"
            time.sleep(0.2)
        with Client(f"http://127.0.0.1:{port}") as client:
            assert client.sample(2, seed=0).seeds == [0, 1]
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0


@pytest.mark.slow
def test_vdvae_runs_the_training_tools(tmp_path, server, model_dir) -> None:
    from tests.model.tools.test_convert import OFFICIAL
    from tests.model.training.test_train import SMALL

    vdvae("convert", str(OFFICIAL), "--preset", "tiny", "--out", "imported", cwd=tmp_path)
    assert (tmp_path / "imported" / "model.safetensors").is_file()
    run = vdvae("train", *SMALL, "--steps", "2", "--out", "run", cwd=tmp_path)
    assert (tmp_path / "run" / "model" / "config.json").is_file() and "done: 2 steps" in run.stderr
    evaluated = vdvae("evaluate", "run/model", "--data", "mnist", "--limit", "16", cwd=tmp_path)
    assert json.loads(evaluated.stdout)["images"] == 16
    bench = vdvae(
        "bench", "model", "--weights", "imported", "--batch-sizes", "1", "--repeats", "1", cwd=tmp_path
    )
    assert "optimized" in bench.stdout
    load = vdvae("bench", "service", "--url", server.url, "--concurrency", "1", "--duration", "0.3",
                 "--warmup", "0.1", cwd=tmp_path)  # fmt: skip
    assert "server" in load.stdout
