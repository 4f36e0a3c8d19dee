"""`vdvae`: one command for the project, with subcommands.

    vdvae serve | train | evaluate | convert | generate | encode-dataset
    vdvae bench model | service | stress | fair | visual-vae | gpu
    vdvae sample | reconstruct | upscale | encode | decode | interpolate | models  (the client)

The existing tools keep their own parsers (training flags generated from TrainConfig and HParams,
serve flags from Settings); `vdvae NAME ARGS` hands ARGS to them unchanged and imports nothing else,
so `vdvae sample` against a running service never loads torch. Client commands talk to `--url`
(VDVAE_URL, else http://127.0.0.1:8000), or with `--local FOLDER` run the service in this process:
the same code answers, so the same seeds give the same bytes. Exit codes: 0 done, 2 bad input
(flags, files, or the service's 4xx), 1 the service or the network failed, or the API key's limits
still refused the request (429) after the retries.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import import_module

from .. import __version__


@dataclass(frozen=True)
class Tool:
    """A command implemented by an existing module's `main(argv, prog)`, imported when run."""

    module: str
    summary: str

    def run(self, argv: list[str], prog: str) -> int:
        main: Callable[..., int | None] = import_module(self.module).main
        return int(main(argv, prog=prog) or 0)


@dataclass(frozen=True)
class ClientTool:
    """A client command of service.cli.commands, imported when run."""

    summary: str

    def run(self, argv: list[str], prog: str) -> int:
        from .commands import run_command

        return run_command(prog.split()[-1], argv, prog)


BENCHES = {
    "model": Tool(
        "service.bench.model", "sampling speed of a model in this process, eager against optimized"
    ),
    "service": Tool("service.bench.service", "closed-loop load test of a running (or spawned) service"),
    "stress": Tool("service.bench.stress", "the service's latency while clients loop the worst bodies"),
    "fair": Tool("service.bench.fair", "one-image requests beside large ones, and weighted API keys"),
    "visual-vae": Tool(
        "service.bench.visual_vae", "a visual-vae model's sampling against visual-vae's own code (a checkout)"
    ),
    "gpu": Tool(
        "service.bench.gpu.command", "everything measured on a CUDA device in one command (--dry-run: CPU)"
    ),
}
COMMANDS: dict[str, Tool | ClientTool] = {
    "serve": Tool("service.__main__", "serve every model folder under --model-dir over HTTP"),
    "sample": ClientTool("draw images: a grid, or one file per image into a folder (bulk, resumable)"),
    "reconstruct": ClientTool("reconstruct an image from its top latent layers, the rest from the prior"),
    "upscale": ClientTool("super-resolve a low-resolution image (a super-resolution model or cascade)"),
    "encode": ClientTool("an image's per-layer KL, bits per dim, and latents (saved as .npz)"),
    "decode": ClientTool("an image from latents that `encode --latents K` saved"),
    "interpolate": ClientTool("images on a path between two seeds or images, through the latent layers"),
    "models": ClientTool("the served models: sizes, layers, classes, limits"),
    "train": Tool("model.training.train", "train a VDVAE on your own images"),
    "evaluate": Tool(
        "model.training.evaluation.evaluate", "ELBO in bits per dim, per-layer rate, reconstructions"
    ),
    "convert": Tool("model.tools.convert", "import an official openai/vdvae checkpoint"),
    "generate": Tool("model.training.bulk.generate", "bulk samples as a (torchrun) job: sharded, resumable"),
    "encode-dataset": Tool(
        "model.training.bulk.encode_dataset", "a dataset's per-image KL, bits/dim, latents: a (torchrun) job"
    ),
}

OVERVIEW = """usage: vdvae COMMAND [ARGS...]      (vdvae COMMAND --help: its options and examples)

Very Deep VAEs: serve them, sample, reconstruct and encode with them, train them.

commands:
{commands}

The client commands (sample, reconstruct, upscale, encode, decode, interpolate, models) talk to a
running service (--url, default $VDVAE_URL or http://127.0.0.1:8000) or, with --local FOLDER, run
the service in this process on a model folder: the same seeds give the same image bytes either way.

examples:
  vdvae serve                                             # the bundled models on http://127.0.0.1:8000
  vdvae sample -n 16 --label 3 --guidance 1,1 --temperature 0.8 --seed 1 -o threes.png
  vdvae sample -n 10000 -o samples/                       # bulk; run it again to resume
  vdvae encode digit.png --latents 4 -o z.npz && vdvae decode z.npz -o out.png
  vdvae sample -n 4 --local weights/mnist -o four.png     # no service needed
  vdvae train --data my_images/ --preset cifar10 --out runs/mine
"""


def overview() -> str:
    tools = {**COMMANDS, **{f"bench {name}": tool for name, tool in BENCHES.items()}}
    return OVERVIEW.format(commands="\n".join(f"  {name:<14} {c.summary}" for name, c in tools.items()))


def main(argv: Sequence[str] | None = None) -> int:
    """Dispatch `vdvae COMMAND ARGS`; the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(overview(), file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    if args[0] == "--version":
        print(f"vdvae {__version__}")
        return 0
    name, rest = args[0], args[1:]
    if name == "bench":
        if not rest or rest[0] not in BENCHES:
            print(f"usage: vdvae bench {{{','.join(BENCHES)}}} [ARGS...]\n", file=sys.stderr)
            for which, tool in BENCHES.items():
                print(f"  vdvae bench {which:<8} {tool.summary}", file=sys.stderr)
            return 0 if rest and rest[0] in ("-h", "--help") else 2
        return BENCHES[rest[0]].run(rest[1:], prog=f"vdvae bench {rest[0]}")
    command = COMMANDS.get(name)
    if command is None:
        print(f"vdvae: unknown command {name!r}; one of: {', '.join([*COMMANDS, 'bench'])}", file=sys.stderr)
        return 2
    return command.run(rest, prog=f"vdvae {name}")


if __name__ == "__main__":
    sys.exit(main())
