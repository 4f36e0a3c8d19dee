"""`python -m service.devicecheck`: exit 0 when torch can use the device the settings ask for
(VDVAE_DEVICE), else print why and exit 1.

compose.yaml runs it once before the GPU service: a service that cannot find its GPU then fails
`docker compose up` once, with this message, where the server would exit 1 and be restarted in a
loop by its restart policy. The server gives the same message when it cannot start for that reason.
"""

from __future__ import annotations

import sys
import warnings

from .settings import Settings


def device_problem(spec: str) -> str | None:
    """Why torch cannot use the device `spec` (auto, cpu, cuda or cuda:N), or None when it can."""
    if not spec.startswith("cuda"):
        return None  # auto falls back to the CPU, and the CPU is always there
    import torch

    # torch explains an unusable GPU (a driver older than its CUDA, for one) in a warning only.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(spec.partition(":")[2] or 0)
    if index < count:
        return None
    built = f"CUDA {torch.version.cuda}" if torch.version.cuda else "no CUDA: a CPU-only build"
    seen = "sees no CUDA GPU" if count == 0 else f"sees {count} CUDA GPU(s), not {spec}"
    reasons = "".join(f" torch: {w.message}" for w in caught)
    return (
        f"device {spec} (VDVAE_DEVICE, --device) asks for a CUDA GPU, but torch {torch.__version__} "
        f"({built}) {seen}.{reasons}"
        " In a container the GPU must be passed through (the NVIDIA Container Toolkit on the host; "
        "`docker run --gpus all`, or compose.yaml's device reservation) and the host's driver must "
        "support the image's CUDA. Without a GPU, serve on the CPU: VDVAE_DEVICE=cpu, or the CPU "
        "image (`docker compose --profile cpu up vdvae-cpu`)."
    )


def main() -> int:
    settings = Settings()
    problem = device_problem(settings.device)
    if problem:
        print(problem, file=sys.stderr)
        return 1
    print(f"device {settings.device}: available")
    return 0


if __name__ == "__main__":
    sys.exit(main())
