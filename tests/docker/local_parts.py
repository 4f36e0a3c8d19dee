"""Local stand-ins for the images' network sources, so that they build with no registry but
Debian's mirror and the Python package index (or none, once cached):

- a Python base image (the stand-in for PYTHON_IMAGE, python:3.11-slim): Debian's Python 3.11 in a
  virtual environment at /opt/python, bootstrapped with debootstrap and imported with `docker import`;
- a package index (the stand-in for TORCH_INDEX_URL and PIP_INDEX_URL): the CPU torch wheel and every
  runtime dependency of pyproject.toml, downloaded by pip, served over HTTP on 127.0.0.1.

Both are cached under cache_dir(), keyed by what goes into them; the base image also stays in the
Docker daemon's image store. From the repository root:

    python -m tests.docker.local_parts      # prepares both, serves the index, prints the build arguments
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import html
import http.server
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SUITE = "bookworm"  # Debian 12: Python 3.11, the ABI of the cp311 wheels below
PYTHON_VERSION = "3.11"
DEBIAN_MIRROR = os.environ.get("VDVAE_DEBIAN_MIRROR", "http://deb.debian.org/debian")
VENV = "/opt/python"
# The bootstrap recipe; any change to it makes a new base (a new cache key and image tag).
BASE_RECIPE = f"{SUITE} minbase python3-venv {VENV} trimmed docs,man,locale,apt-lists v1"
# Left out of the base, as the slim Python images leave them out: documentation and apt's caches.
TRIMMED = ("var/cache/apt/archives", "var/lib/apt/lists", "usr/share/doc", "usr/share/man",
           "usr/share/locale", "usr/share/info")  # fmt: skip
# Outside the ephemeral port range (32768-60999), so that nothing else is likely to hold it: the
# index's address is a build argument, and a stable one keeps Docker's build cache valid.
INDEX_PORT = 28751


def cache_dir() -> Path:
    """VDVAE_DOCKER_CACHE, or vdvae-serve/docker in the user's cache folder."""
    if explicit := os.environ.get("VDVAE_DOCKER_CACHE"):
        return Path(explicit)
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "vdvae-serve" / "docker"


def key(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12]


def run(cmd: list[str | Path], **kwargs) -> subprocess.CompletedProcess:
    """Run a command; on failure raise with its output, so that a test's failure says what broke."""
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        command = " ".join(map(str, cmd))
        output = f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        raise RuntimeError(f"{command} exited {proc.returncode}\n{output}")
    return proc


# --- the Python base image ----------------------------------------------------------------------


def base_tag() -> str:
    return f"vdvae-serve-test/python:{key(BASE_RECIPE, DEBIAN_MIRROR)}"


def image_exists(docker: list[str], tag: str, env: dict[str, str] | None = None) -> bool:
    return subprocess.run([*docker, "image", "inspect", tag], capture_output=True, env=env).returncode == 0


def unmount_below(root: Path) -> None:
    """debootstrap mounts /proc and /sys in the new root; an interrupted run can leave them there,
    and they must go before the folder is removed."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(str(root) + "/")), reverse=True):
        subprocess.run(["umount", "-l", mount], check=False)


def bootstrap_base(tarball: Path) -> None:
    """Debian's minimal system with Python 3.11 in a virtual environment, as a gzipped root tarball."""
    tarball.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="rootfs-", dir=tarball.parent))
    root = tmp / "root"
    try:
        run(["debootstrap", "--variant=minbase", "--include=python3-venv", SUITE, root, DEBIAN_MIRROR])
        run(["chroot", root, "python3", "-m", "venv", VENV])
        unmount_below(root)
        for folder in TRIMMED:
            for entry in (root / folder).glob("*"):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        partial = tmp / "rootfs.tar.gz"
        run(["tar", "-C", root, "--numeric-owner", "-czf", partial, "."])
        os.replace(partial, tarball)
    finally:
        unmount_below(root)
        shutil.rmtree(tmp, ignore_errors=True)


def python_base(docker: list[str], cache: Path, env: dict[str, str] | None = None) -> tuple[str, str]:
    """The base image's tag, and how it was had: "image" (already in the daemon), "tarball" (imported
    from the cache) or "debootstrap" (bootstrapped now)."""
    tag = base_tag()
    if image_exists(docker, tag, env):
        return tag, "image"
    tarball = cache / f"python-base-{tag.rsplit(':', 1)[1]}.tar.gz"
    how = "tarball"
    if not tarball.is_file():
        bootstrap_base(tarball)
        how = "debootstrap"
    run([*docker, "import",
         "--change", f"ENV PATH={VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
         "--change", "ENV LANG=C.UTF-8",
         "--change", 'CMD ["python"]',
         tarball, tag], env=env)  # fmt: skip
    return tag, how


# --- the package index --------------------------------------------------------------------------


def requirements() -> list[str]:
    """The runtime dependencies, as the Dockerfiles read them."""
    import tomllib  # Python 3.11, as in the Dockerfiles

    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]


def torch_version() -> str:
    """Dockerfile.cpu's TORCH_VERSION, so that the index holds the version the build asks for."""
    text = (REPO / "docker" / "Dockerfile.cpu").read_text()
    return re.search(r"^ARG TORCH_VERSION=(\S+)", text, re.M).group(1)


def platform_args() -> list[str]:
    """Wheels for the base's Python and C library (glibc 2.36), whatever this machine runs."""
    machine = platform.machine()
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(36, 4, -1)]
    tags += [f"manylinux2014_{machine}", f"manylinux2010_{machine}", f"manylinux1_{machine}"]
    args = ["--only-binary=:all:", "--python-version", PYTHON_VERSION, "--implementation", "cp"]
    for tag in tags:
        args += ["--platform", tag]
    return args


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def write_simple_index(root: Path) -> None:
    """A PEP 503 index of root/files: root/simple/<project>/index.html."""
    projects: dict[str, list[str]] = {}
    for wheel in sorted((root / "files").glob("*.whl")):
        projects.setdefault(normalize(wheel.name.split("-")[0]), []).append(wheel.name)
    for project, files in projects.items():
        page = root / "simple" / project
        page.mkdir(parents=True, exist_ok=True)
        links = "".join(
            f'<a href="../../files/{urllib.parse.quote(f)}">{html.escape(f)}</a><br>\n' for f in files
        )
        (page / "index.html").write_text(f"<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n")
    names = "".join(f'<a href="{p}/">{p}</a><br>\n' for p in sorted(projects))
    (root / "simple" / "index.html").write_text(f"<!DOCTYPE html>\n<html><body>\n{names}</body></html>\n")


def wheel_index(cache: Path) -> tuple[Path, str]:
    """The index folder (simple/ and files/), and how it was had: "cache" or "pip download".

    torch is asked for as the local version `+cpu`: pip finds it where it is configured to look
    (an index or PIP_FIND_LINKS), and a plain `torch==X` could resolve to the CUDA build, gigabytes
    of downloads."""
    torch_spec = f"torch=={torch_version()}+cpu"
    reqs = requirements()
    index = cache / f"index-{key(torch_spec, *reqs, *platform_args())}"
    if (index / "complete").is_file():
        return index, "cache"
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="index-", dir=cache))
    try:
        files = tmp / "files"
        pip = [sys.executable, "-m", "pip", "download", "--quiet", "--dest", files, *platform_args()]
        run([*pip, "--no-deps", torch_spec])
        (torch_wheel,) = files.glob("torch-*.whl")
        # torch from that file, its dependencies and the service's from the configured index.
        run([*pip, torch_wheel, *reqs])
        write_simple_index(tmp)
        (tmp / "complete").write_text(torch_spec + "\n" + "\n".join(reqs) + "\n")
        os.replace(tmp, index)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return index, "pip download"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args) -> None:
        pass  # the build's pip prints what it fetched


@contextlib.contextmanager
def serve_index(index: Path) -> Iterator[str]:
    """Serve the index on 127.0.0.1 (INDEX_PORT when free); yields its simple/ URL."""
    handler = functools.partial(QuietHandler, directory=str(index))
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", INDEX_PORT), handler)
    except OSError:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="wheel-index", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def main() -> None:
    cache = cache_dir()
    tag, how = python_base(["docker"], cache)
    print(f"base image {tag} ({how})")
    index, how = wheel_index(cache)
    print(f"package index {index} ({how})")
    with serve_index(index) as url:
        print(
            "\nBuild arguments (build with --network host while this runs; Ctrl-C stops the index):\n"
            f"  --build-arg PYTHON_IMAGE={tag} --build-arg TORCH_INDEX_URL={url} "
            f"--build-arg PIP_INDEX_URL={url}",
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
