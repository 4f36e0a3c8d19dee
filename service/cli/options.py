"""What the client commands share: the connection options, the sampling options' parsing, the error
of bad local input, and the run that turns every failure into a sentence and an exit code."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from ..client import API_KEY_ENV, DEFAULT_URL, URL_ENV, APIError, AsyncClient, ConnectionFailed

EXIT_BAD_INPUT = 2  # flags, files, or the service's 4xx: the user can fix it
EXIT_FAILED = 1  # the service (5xx) or the network failed, or 429 after the retries: try later


class UsageError(Exception):
    """Bad input found on this side: a missing file, a folder of other samples, no model folder."""


def temperature_arg(text: str) -> float | list[float]:
    """'0.8' (every layer) or '1,1,0.9,...' (one per latent layer, top-down)."""
    try:
        values = [float(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number or a list of numbers: {text!r}") from None
    return values[0] if len(values) == 1 and "," not in text else values


def guidance_arg(text: str) -> float | tuple[float, float]:
    """'W' (mean and variance weights both W) or 'MEAN,VARIANCE'."""
    try:
        values = [float(t) for t in text.split(",")]
    except ValueError:
        values = []
    if len(values) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected W or MEAN,VARIANCE (e.g. 1,1), got {text!r}")
    return values[0] if len(values) == 1 else (values[0], values[1])


def connection_parser() -> argparse.ArgumentParser:
    """The options every client command takes (a parent parser)."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("service")
    where = g.add_mutually_exclusive_group()
    where.add_argument(
        "--url",
        default=os.environ.get(URL_ENV) or DEFAULT_URL,
        help=f"the service (default: ${URL_ENV}, else {DEFAULT_URL})",
    )
    where.add_argument(
        "--local",
        metavar="FOLDER",
        help="no service: run it in this process on a model folder (e.g. weights/mnist) or a folder "
        "of model folders; the same seeds give the same image bytes as the service",
    )
    g.add_argument(
        "--api-key",
        default=os.environ.get(API_KEY_ENV),
        help=f"sent as 'Authorization: Bearer KEY' (default: ${API_KEY_ENV})",
    )
    g.add_argument(
        "--priority",
        choices=["low", "normal", "high"],
        help="the requests' priority (X-Priority): low for bulk work, high only with a key allowed it "
        "(default: normal)",
    )
    g.add_argument("--model", help="model name (default: the service's default model)")
    g.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="deadline of each request, retries included (default: the service's)",
    )
    return p


# `--label none`, `--guidance none`: sent as null (the unconditional prior, no guidance), where
# leaving the flag out sends nothing and the model's sampling defaults apply.
NONE = "none"


def class_arg(text: str) -> int | str:
    """A class: its index, or one of its names (sent as typed; the service matches the model's)."""
    text = text.strip()
    if not text:
        raise argparse.ArgumentTypeError("expected a class index or name, got an empty string")
    return int(text) if text.isdigit() else text


def label_arg(text: str) -> int | str:
    """A class label (index or name), or 'none' for the unconditional prior."""
    return NONE if text.strip().lower() == NONE else class_arg(text)


def guidance_or_none(text: str) -> float | tuple[float, float] | str:
    """Guidance weights (guidance_arg), or 'none' for no guidance."""
    return NONE if text.lower() == NONE else guidance_arg(text)


def add_sampling_options(p: argparse.ArgumentParser, guidance: bool = True) -> None:
    """--temperature, --seed, --label (and --guidance); left out, the model's sampling defaults
    apply (for a class-conditional model, each image's label from its seed)."""
    p.add_argument(
        "--temperature", type=temperature_arg, help="prior temperature: one number, or one per latent layer"
    )
    p.add_argument("--seed", type=int, help="seed (of the first image; image i uses seed + i)")
    p.add_argument(
        "--label",
        type=label_arg,
        metavar="LABEL|none",
        help="class label (class-conditional models): an index or a class name (`vdvae models` lists "
        "them); none: the unconditional prior",
    )
    if guidance:
        p.add_argument(
            "--guidance",
            type=guidance_or_none,
            metavar="W|MEAN,VAR|none",
            help="classifier-free guidance weights (needs a label); none: no guidance",
        )


def call_options(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The named request options the user gave, with the model and the timeout ('none' as None)."""
    given = {n: getattr(args, n) for n in ("model", "timeout", *names) if getattr(args, n) is not None}
    return {n: None if v == NONE else v for n, v in given.items()}


async def with_client(args: argparse.Namespace, run: Callable[[AsyncClient], Awaitable[None]]) -> None:
    """run(client) against --url, or against the service started in this process for --local."""
    if args.local is None:
        context = AsyncClient(args.url, api_key=args.api_key, priority=args.priority)
    else:
        from .local import local_client  # imports torch: only for --local

        context = local_client(args.local, api_key=args.api_key, priority=args.priority)
    async with context as client:
        await run(client)


def run_client_command(
    prog: str, args: argparse.Namespace, run: Callable[[AsyncClient], Awaitable[None]]
) -> int:
    """Run a client command; its exit code, every failure told in one sentence on stderr."""

    def fail(message: str, code: int) -> int:
        print(f"{prog}: error: {message}", file=sys.stderr)
        return code

    try:
        asyncio.run(with_client(args, run))
    except UsageError as e:
        return fail(str(e), EXIT_BAD_INPUT)
    except APIError as e:
        return fail(e.detail, EXIT_BAD_INPUT if e.bad_input else EXIT_FAILED)
    except ConnectionFailed as e:
        hint = "" if args.local else " (is it running? `vdvae serve`, or --local weights/mnist)"
        return fail(f"{e}{hint}", EXIT_FAILED)
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    except BrokenPipeError:  # stdout closed early (`| head`): stop quietly, as a pipeline expects
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    return 0
