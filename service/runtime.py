"""Where the process may write, checked before torch is used: the service itself writes nothing (uploads
are parsed in memory), but torch creates its compile cache directory under the temporary directory
the first time it builds a model, and fails when there is none, as on a read-only root without a
tmpfs. Then the cache is pointed at an existing directory (torch only needs it to exist unless it
compiles), and compiling, which does write, is refused with a message that says what to mount.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from .settings import Settings

log = logging.getLogger("service")

TORCH_CACHE_VARIABLE = "TORCHINDUCTOR_CACHE_DIR"


class RuntimeDirError(RuntimeError):
    """The settings need a writable directory and there is none."""


def temp_dir_candidates() -> list[str]:
    """Where tempfile looks for its directory, in its order (on POSIX)."""
    named = [os.environ[name] for name in ("TMPDIR", "TEMP", "TMP") if os.environ.get(name)]
    return [*named, "/tmp", "/var/tmp", "/usr/tmp", os.getcwd()]


def writable_temp_dir() -> str | None:
    """The directory tempfile would use (TMPDIR, then /tmp, /var/tmp, the working directory), or None
    when none of them is writable."""
    try:
        return tempfile.gettempdir()
    except FileNotFoundError:  # "No usable temporary directory found"
        return None


def prepare_runtime_dirs(settings: Settings) -> str | None:
    """Make the process start where nothing is writable; the writable temporary directory, if any."""
    temp = writable_temp_dir()
    if temp is not None:
        return temp
    candidates = temp_dir_candidates()  # what tempfile tried, for the message
    if settings.compile:
        raise RuntimeDirError(
            "--compile needs a writable temporary directory and none of "
            f"{', '.join(candidates)} is writable: set TMPDIR to a writable folder (on a read-only "
            "root filesystem, mount a tmpfs at /tmp)"
        )
    if TORCH_CACHE_VARIABLE not in os.environ:
        existing = next((c for c in candidates if Path(c).is_dir()), "/")
        os.environ[TORCH_CACHE_VARIABLE] = existing
    log.warning(
        "no writable temporary directory (tried %s): serving without one; torch.compile is unavailable. "
        "On a read-only root filesystem, mount a tmpfs at /tmp",
        ", ".join(candidates),
    )
    return None
