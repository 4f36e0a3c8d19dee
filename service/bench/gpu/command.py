"""Everything measured on a CUDA device in one command, within 8 minutes, into one folder.

    vdvae bench gpu --out DIR --official PATH --visual-vae PATH
    vdvae bench gpu --dry-run --out DIR        # every stage on the CPU, tiny sizes, under a minute

Stages, in order (each one's figures under its name in DIR/results.json):
  environment  the GPU, driver, CUDA, torch, commit; the measured bf16 matrix rate and copy bandwidth
  tests        the CUDA-only tests (pytest -m cuda) and the parity tests on the device in float32
  precision    bf16 and fp16 against fp32: ELBO, images from the same seeds (DIR/precision.png), NaN
               at the API's extreme temperatures and guidance weights
  service      the service on the device: closed-loop clients of one image, batched against
               max_batch_size=1, the model's own images/s at the same batch, the event loop's CPU
               per request, the time from start to ready
  sampling     images/s and batch-1 latency at each batch size: ours in fp32 and in each fast form,
               openai/vdvae's code (--official) and visual-vae's (--visual-vae) in fp32; the share
               of the bf16 arithmetic floor (the compiled forms last: what a compile overruns is
               only the forms after it)
  profile      the PyTorch profiler's top kernels of the fastest form at its best batch
               (DIR/profile.txt)
DIR also gets summary.md (the tables and the targets, met or not), log.txt (everything printed)
and results.json. A stage that fails is recorded with its error and the next one runs; stages that
would overrun the time budget are skipped and say so.

On a device machine that cannot reach the internet, from the repository root, with the reference
checkouts and the missing Python packages prepared beside the tree (docs/gpu-benchmark.md):

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .cache/wheels/*.whl
    PYTHONPATH=/tmp/site:. python3 -m service.cli bench gpu --out OUT \\
        --official .cache/reference/vdvae --visual-vae .cache/reference/visual-vae
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

import torch

from model.visual_vae import VisualVAEConfig

PROG = "vdvae bench gpu"
REPO = Path(__file__).resolve().parents[3]
# The Python packages the command installs from wheels on a device machine whose image has PyTorch
# but not the service's web stack, nor the digits' package (docs/gpu-benchmark.md).
DEVICE_WHEELS = (
    "fastapi", "starlette", "pydantic", "pydantic_core", "pydantic-settings", "python-dotenv",
    "annotated-types", "typing-inspection", "typing_extensions", "uvicorn", "httptools",
    "python-multipart", "mlxtend",
)  # fmt: skip


@dataclass(frozen=True)
class Plan:
    """Every size the command runs at."""

    name: str
    device: str
    budget_s: float  # the stages' wall time; startup and the wheels' install come on top
    presets: tuple[str, ...]  # VDVAE presets of random weights; the first one is what the targets judge
    visual_vae: VisualVAEConfig
    batch_sizes: tuple[int, ...]
    repeats: int  # timed calls per configuration, after a warm-up call
    max_config_s: float  # fewer timed calls when one configuration takes longer than this
    max_call_s: float  # a form's larger batches are skipped once one of its calls took this long
    compile: bool  # whether the torch.compile forms are measured
    test_filter: str | None  # pytest -k of the tests stage
    digits: int  # test digits whose ELBO the precision stage compares
    images: int  # seeds per row of the precision picture
    concurrency: tuple[int, ...]
    service_batch: int  # the batched server's max_batch_size
    service_amp: str  # the served form (and the in-process model's beside it)
    duration_s: float
    warmup_s: float
    server_flags: tuple[str, ...] = field(default=())
    # torch's CPU threads in this process (None: torch's default). One on a dry run: a CPU shared with
    # other work stalls every multi-threaded convolution on its slowest thread.
    threads: int | None = None


DEVICE = Plan(
    name="device", device="cuda", budget_s=420.0, presets=("cifar10", "ffhq256"),
    visual_vae=VisualVAEConfig.preset("cifar10"), batch_sizes=(1, 16, 64, 256), repeats=3,
    max_config_s=3.0, max_call_s=4.0, compile=True, test_filter=None, digits=500, images=8,
    concurrency=(1, 8, 32, 128), service_batch=128, service_amp="bf16", duration_s=5.0, warmup_s=2.0,
)  # fmt: skip
_SMALL_VISUAL_VAE = VisualVAEConfig.preset("cifar10")
DRY_RUN = Plan(
    name="dry run", device="cpu", budget_s=300.0, presets=("tiny",),
    visual_vae=_SMALL_VISUAL_VAE.replace(
        c=16, c_enc=16, zdim=4, num_final_blocks=1, nlayers=[1] * _SMALL_VISUAL_VAE.levels,
        enc_nlayers=[1] * _SMALL_VISUAL_VAE.levels,
    ),
    batch_sizes=(1, 2), repeats=1, max_config_s=0.5, max_call_s=2.0, compile=False,
    test_filter="cuda or (public-tiny and prior)", digits=2, images=2, concurrency=(1, 2), service_batch=2,
    service_amp="bf16", duration_s=0.5, warmup_s=0.2, server_flags=("--cpu-threads", "1"), threads=1,
)  # fmt: skip


@dataclass
class Run:
    """One run of the command: its plan, where it writes, and what a later stage takes from an
    earlier one (the fastest form and its best batch)."""

    plan: Plan
    device: torch.device
    out: Path
    official: Path | None
    visual_vae: Path | None
    deadline: float
    shared: dict[str, Any] = field(default_factory=dict)

    def left(self) -> float:
        return self.deadline - time.monotonic()


def stages() -> list[tuple[str, Callable[[Run], dict], float]]:
    """(name, stage, the seconds it needs at least to start) in order; imported here so that --help
    and --requirements load none of them."""
    from . import checks, environment, precision, profiling, sampling, serving

    return [
        ("environment", environment.run, 0.0),
        ("tests", checks.run, 20.0),
        ("precision", precision.run, 10.0),
        ("service", serving.run, 20.0),
        ("sampling", sampling.run, 30.0),
        ("profile", profiling.run, 5.0),
    ]


class Tee(io.TextIOBase):
    """Writes to several text streams: the terminal and the log file."""

    def __init__(self, *streams: TextIO) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for s in self.streams:
            s.write(text)
            s.flush()
        return len(text)


def run_stages(run: Run) -> dict[str, dict]:
    """Every stage's results (each with its status and seconds); a failing stage is recorded with its
    error, and one that would start with less time left than it needs is skipped."""
    results: dict[str, dict] = {}
    for name, stage, needs_s in stages():
        print(f"\n== {name} ({run.left():.0f} s left)", flush=True)
        t0 = time.monotonic()
        if run.left() < needs_s:
            results[name] = {"status": "skipped", "note": f"{run.left():.0f} s left, it needs {needs_s:.0f}"}
            print(f"skipped: {results[name]['note']}")
            continue
        try:
            results[name] = {"status": "ok", **stage(run)}
        except Exception as e:  # the next stage still runs: its figures are worth having
            traceback.print_exc(file=sys.stdout)
            results[name] = {"status": "failed", "error": f"{type(e).__name__}: {e}"}
        results[name]["seconds"] = round(time.monotonic() - t0, 1)
        gc.collect()
        if run.device.type == "cuda":
            torch.cuda.empty_cache()
    return results


@contextlib.contextmanager
def logged(path: Path) -> Iterator[None]:
    """Everything printed also goes to `path`."""
    with path.open("w") as log, contextlib.redirect_stdout(Tee(sys.stdout, log)):
        yield


def requirements() -> list[str]:
    """DEVICE_WHEELS pinned to the versions installed here (where the tests pass)."""
    return [f"{name}=={metadata.version(name)}" for name in DEVICE_WHEELS]


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description=__doc__.replace(PROG, prog),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", type=Path, help="the output folder (created; its files are replaced)")
    p.add_argument("--official", type=Path, help="a checkout of openai/vdvae (its fp32 sampling is timed)")
    p.add_argument("--visual-vae", type=Path, help="a checkout of tcl9876/visual-vae (likewise)")
    p.add_argument("--dry-run", action="store_true", help="every stage on the CPU at tiny sizes")
    p.add_argument("--budget-s", type=float, help="the stages' wall time (default: the plan's)")
    p.add_argument(
        "--requirements", action="store_true",
        help="print the packages to bring to a device machine as wheels, pinned to the versions here",
    )  # fmt: skip
    return p


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    args = build_parser(prog).parse_args(argv)
    if args.requirements:
        print("\n".join(requirements()))
        return 0
    if args.out is None:
        build_parser(prog).error("--out is required")
    plan = DRY_RUN if args.dry_run else DEVICE
    if not args.dry_run and not torch.cuda.is_available():
        print(f"{prog}: torch sees no CUDA GPU; --dry-run runs every stage on the CPU", file=sys.stderr)
        return 2
    for name, path in (("--official", args.official), ("--visual-vae", args.visual_vae)):
        if path is not None and not path.is_dir():
            print(f"{prog}: {name} {path} is not a folder", file=sys.stderr)
            return 2
    from . import report

    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    budget = args.budget_s or plan.budget_s
    run = Run(
        plan, torch.device(plan.device), args.out, args.official, args.visual_vae, time.monotonic() + budget
    )
    threads = torch.get_num_threads()
    with logged(args.out / report.LOG):
        print(f"{prog} ({plan.name}) into {args.out}: {budget:.0f} s for the stages")
        torch.set_num_threads(plan.threads or threads)
        try:
            results = run_stages(run)
        finally:
            torch.set_num_threads(threads)
        report.write(run, results, command=" ".join([prog, *(argv if argv is not None else sys.argv[1:])]),
                     started=started)  # fmt: skip
        print(f"\nwrote {', '.join(sorted(report.FILES))} into {args.out} in {time.time() - started:.0f} s")
    return 0


def plan_dict(plan: Plan) -> dict[str, Any]:
    d = asdict(plan)
    d["visual_vae"] = plan.visual_vae.to_dict()
    return d


if __name__ == "__main__":
    sys.exit(main())
