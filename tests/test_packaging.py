"""What `pip install .` installs: every package, the playground's files, and the bundled model and
judge, so that an installed copy serves its model from any working directory (tested by building
the wheel, installing it into a fresh virtual environment and serving from an empty folder)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[1]


def pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_every_package_is_listed() -> None:
    listed = set(pyproject()["tool"]["setuptools"]["packages"])
    packages = {
        ".".join(p.parent.relative_to(REPO).parts)
        for top in ("model", "service")
        for p in (REPO / top).rglob("__init__.py")
    }
    assert listed == packages | {"model.weights"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh virtual environment with the built wheel installed (its dependencies from this
    interpreter's site-packages): its bin/ folder."""
    root = tmp_path_factory.mktemp("wheel")
    # Built from a copy of the checkout's files, so that no build/ folder of an earlier build joins in.
    source = root / "source"
    listing = ["git", "ls-files", "--cached", "--others", "--exclude-standard"]
    for name in subprocess.run(listing, cwd=REPO, capture_output=True, text=True, check=True).stdout.split():
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(root)]
    subprocess.run([*build, str(source)], check=True, capture_output=True, timeout=600)
    (wheel,) = root.glob("vdvae_serve-*.whl")
    venv = root / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True
    )
    python = venv / "bin" / "python"
    install = [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)]
    subprocess.run(install, check=True, capture_output=True, timeout=600)
    yield venv / "bin"


def test_the_wheel_holds_the_model_the_judge_and_the_page(installed: Path, tmp_path: Path) -> None:
    code = (
        "import model, service\n"
        "from model.bundled import bundled_weights\n"
        "from model.training.evaluation.judge import BUNDLED_JUDGE\n"
        "from service.api.playground.routes import STATIC\n"
        "mnist = bundled_weights() / 'mnist' / 'model.safetensors'\n"
        "print(model.__file__, service.__file__, bundled_weights(), BUNDLED_JUDGE.is_file(),\n"
        "      mnist.is_file(), (STATIC / 'index.html').is_file())\n"
    )
    out = subprocess.run(
        [str(installed / "python"), "-c", code], cwd=tmp_path, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    model_file, service_file, weights, judge, mnist, page = out.stdout.split()
    venv = str(installed.parent)
    assert model_file.startswith(venv) and service_file.startswith(venv)  # not this checkout
    assert weights.startswith(venv) and (judge, mnist, page) == ("True", "True", "True")


def test_an_installed_copy_serves_its_model_from_any_folder(installed: Path, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("VDVAE_")}
    cmd = [str(installed / "vdvae"), "serve", "--port", str(port), "--cpu-threads", "1", "--no-access-log"]
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
            try:
                if httpx.get(url + "/health/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the installed service did not become ready"
            time.sleep(0.2)
        models = httpx.get(url + "/v1/models").json()["data"]
        assert [m["id"] for m in models] == ["mnist"] and models[0]["default"]
        answer = httpx.post(url + "/sample", json={"n": 2, "seed": 0}, timeout=60)
        assert answer.status_code == 200 and [d["seed"] for d in answer.json()["data"]] == [0, 1]
    finally:
        proc.terminate()
        proc.wait(timeout=60)
