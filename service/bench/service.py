"""Closed-loop load generator and batching comparison for the service.

Each of C clients sends its next request as soon as the previous one is answered (closed loop,
as perf_analyzer's concurrency mode), for a warm-up period and then a measured one. Reported per
concurrency: requests/s, images/s, p50/p90/p99 latency, errors, and, from /metrics deltas, the mean
batch size and the server's mean queue and compute time per batch.

    # against a running server
    vdvae bench service --url http://127.0.0.1:8000 --concurrency 1,4,16,32 --duration 20

    # batching on vs off at equal load: starts `python -m service` once per batch size and
    # alternates between them for 3 rounds (robust to a machine whose load changes)
    vdvae bench service --spawn --max-batch-sizes 32,1 --concurrency 32 --duration 20 --rounds 3

    # plus the model's own throughput (vae.sample in-process) at the same batch sizes
    vdvae bench service --spawn --max-batch-sizes 32,1 --concurrency 32 --model-throughput

    # the same images through each endpoint that samples: the server's CPU per request of each
    vdvae bench service --spawn --max-batch-sizes 32 --endpoints sample,openai,v2-json,v2-binary

Extra server flags go after `--`, e.g. `-- --cpu-threads 1 --max-batch-delay-ms 2`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import statistics
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from prometheus_client.parser import text_string_to_metric_families

from model.bundled import bundled_weights

from .endpoints import ENDPOINTS
from .loadgen import CpuSample, HttpConnection, ThreadCpu, load_line, percentile, spawned_server
from .model import ModelTimer

T = TypeVar("T")
PROG = "vdvae bench service"

# --------------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------------


@dataclass
class RunResult:
    concurrency: int
    seconds: float
    requests: int
    images: int
    errors: dict[str, int]
    latencies_s: list[float] = field(repr=False)
    batches: float = 0.0
    batch_images: float = 0.0
    queue_s_per_image: float = math.nan
    compute_s_per_batch: float = math.nan
    # CPU this load generator spent per measured request: on a small machine it competes with the
    # server for the same cores, and this says by how much.
    client_cpu_s_per_request: float = math.nan
    # CPU of the server per measured request (a local server whose process id is known): its event
    # loop (the main thread) and its other threads (the engine's device thread, torch's workers).
    loop_cpu_s_per_request: float = math.nan
    compute_cpu_s_per_request: float = math.nan

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def ips(self) -> float:
        return self.images / self.seconds

    @property
    def mean_batch(self) -> float:
        return self.batch_images / self.batches if self.batches else math.nan

    def percentile_ms(self, q: float) -> float:
        return 1000 * percentile(self.latencies_s, q)

    def summary(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if k != "latencies_s"}
        d.update(
            rps=self.rps, ips=self.ips, mean_batch=self.mean_batch,
            p50_ms=self.percentile_ms(50), p90_ms=self.percentile_ms(90), p99_ms=self.percentile_ms(99),
        )  # fmt: skip
        return d


def scrape(text: str, model: str, operation: str) -> dict[str, float]:
    """Batch counters of one model and operation from a /metrics page."""
    wanted = {
        "vae_batch_size_count": "batches",
        "vae_batch_size_sum": "batch_images",
        "vae_queue_duration_seconds_sum": "queue_s",
        "vae_queue_duration_seconds_count": "queued",
        "vae_compute_duration_seconds_sum": "compute_s",
    }
    out = dict.fromkeys(wanted.values(), 0.0)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = wanted.get(s.name)
            if key and s.labels.get("model") == model and s.labels.get("operation") == operation:
                out[key] = s.value
    return out


@dataclass
class Window:
    """The measured part of a run, and what the clients saw in it."""

    t_measure: float  # requests that start from here on are counted
    t_end: float  # no request starts after this
    latencies: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)


@dataclass
class Snapshot:
    """The counters read at the start and at the end of the measured window."""

    client_cpu_s: float  # this process's CPU time
    server_cpu: CpuSample | None  # the server's CPU per thread (a local server)
    metrics: dict[str, float]  # scrape() of the server's /metrics


async def closed_loop(
    url: str,
    concurrency: int,
    duration_s: float,
    warmup_s: float,
    payload: dict,
    timeout_s: float = 120.0,
    server_pid: int | None = None,
    endpoint: str = "sample",
) -> RunResult:
    """C clients in a closed loop; only requests that start after the warm-up are counted. With
    `server_pid` (a local server), its event loop's and other threads' CPU per request too.
    payload: n, temperature and model, asked of `endpoint` (endpoints.ENDPOINTS)."""
    # Metrics are read on their own connection, so they never wait behind (or delay) the load.
    observer = HttpConnection(url)
    try:
        model = payload.get("model")
        if model is None:
            models = json.loads((await observer.request("GET", "/v1/models"))[1])["data"]
            model = next(m["id"] for m in models if m["default"])
        cpu = ThreadCpu(server_pid) if ThreadCpu.available(server_pid) else None
        t_measure = time.monotonic() + warmup_s
        window = Window(t_measure, t_measure + duration_s)

        async def snapshot_at_measure_start() -> Snapshot:
            await asyncio.sleep(max(0.0, t_measure - time.monotonic()))
            return await snapshot(observer, cpu, model)

        spec = {k: v for k, v in payload.items() if k != "model"}
        clients = (client_loop(url, endpoint, spec, model, window, timeout_s) for _ in range(concurrency))
        before, *_ = await asyncio.gather(snapshot_at_measure_start(), *clients)
        elapsed = time.monotonic() - t_measure
        after = await snapshot(observer, cpu, model)
    finally:
        observer.close()
    return run_result(concurrency, int(payload.get("n", 1)), window, elapsed, before, after)


async def client_loop(
    url: str, endpoint: str, spec: dict, model: str, window: Window, timeout_s: float
) -> None:
    """One client: the next request as soon as the last is answered, until the window ends; each
    request that starts inside the window is counted (its latency, or its error)."""
    rng = random.Random()
    build = ENDPOINTS[endpoint]
    connection = HttpConnection(url)
    try:
        while (t0 := time.monotonic()) < window.t_end:
            r = build(spec, model, rng.randrange(2**31))
            try:
                code, _ = await connection.request(
                    "POST", r.path, r.body, r.content_type, timeout_s, r.headers
                )
                status = str(code)
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as e:
                status = type(e).__name__
            if t0 >= window.t_measure:
                if status == "200":
                    window.latencies.append(time.monotonic() - t0)
                else:
                    window.errors[status] = window.errors.get(status, 0) + 1
    finally:
        connection.close()


async def snapshot(observer: HttpConnection, cpu: ThreadCpu | None, model: str) -> Snapshot:
    client_cpu_s = time.process_time()
    server_cpu = cpu.sample() if cpu is not None else None
    metrics = scrape((await observer.request("GET", "/metrics"))[1].decode(), model, "sample")
    return Snapshot(client_cpu_s, server_cpu, metrics)


def run_result(
    concurrency: int, n_images: int, window: Window, elapsed: float, before: Snapshot, after: Snapshot
) -> RunResult:
    """The run's figures: the clients' counts, and the differences of the counters across the window."""
    delta = {k: after.metrics[k] - before.metrics.get(k, 0.0) for k in after.metrics}
    n = len(window.latencies)
    result = RunResult(
        concurrency=concurrency,
        seconds=elapsed,
        requests=n,
        images=n * n_images,
        errors=window.errors,
        latencies_s=window.latencies,
        batches=delta["batches"],
        batch_images=delta["batch_images"],
        queue_s_per_image=delta["queue_s"] / delta["queued"] if delta["queued"] else math.nan,
        compute_s_per_batch=delta["compute_s"] / delta["batches"] if delta["batches"] else math.nan,
        client_cpu_s_per_request=(after.client_cpu_s - before.client_cpu_s) / n if n else math.nan,
    )
    if after.server_cpu is not None and before.server_cpu is not None and n:
        result.loop_cpu_s_per_request = (after.server_cpu.loop_s - before.server_cpu.loop_s) / n
        result.compute_cpu_s_per_request = (after.server_cpu.others_s - before.server_cpu.others_s) / n
    return result


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------

HEADER = (
    f"{'label':>14} {'conc':>5} {'req/s':>8} {'img/s':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} "
    f"{'batch':>6} {'queue ms':>9} {'pass ms':>8} {'loop ms/req':>11} {'loop ms/img':>11} "
    f"{'compute ms/img':>14} {'client ms/req':>13} {'errors':>7}"
)
# The CPU columns are CPU time per measured request (or image): the server's event loop (its main
# thread), its other threads (engine, torch), and this load generator. The server's are known for a
# spawned server or with --server-pid.


def row(label: str, r: RunResult) -> str:
    errors = sum(r.errors.values())
    n = r.images / r.requests if r.requests else math.nan
    return (
        f"{label:>14} {r.concurrency:>5} {r.rps:>8.1f} {r.ips:>8.1f} {r.percentile_ms(50):>8.1f} "
        f"{r.percentile_ms(90):>8.1f} {r.percentile_ms(99):>8.1f} {r.mean_batch:>6.2f} "
        f"{1000 * r.queue_s_per_image:>9.1f} {1000 * r.compute_s_per_batch:>8.1f} "
        f"{1000 * r.loop_cpu_s_per_request:>11.3f} {1000 * r.loop_cpu_s_per_request / n:>11.3f} "
        f"{1000 * r.compute_cpu_s_per_request / n:>14.3f} {1000 * r.client_cpu_s_per_request:>13.3f} "
        f"{errors:>7}"
    )


def sweep(url: str, label: str, args: argparse.Namespace, pid: int | None, endpoint: str) -> list[RunResult]:
    payload = {"n": args.n, "temperature": args.temperature}
    if args.model:
        payload["model"] = args.model
    results = []
    for c in args.concurrency:
        r = run_async(
            closed_loop(url, c, args.duration, args.warmup, payload, server_pid=pid, endpoint=endpoint)
        )
        print(row(label, r), f"  [{load_line()}]", flush=True)
        results.append(r)
    return results


def parse_ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_names(text: str) -> list[str]:
    names = [x.strip() for x in text.split(",") if x.strip()]
    unknown = [n for n in names if n not in ENDPOINTS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown endpoint {unknown[0]!r}; known: {', '.join(ENDPOINTS)}")
    return names


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description=__doc__.replace(PROG, prog),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = p.add_argument
    add("--url", default="http://127.0.0.1:8000", help="Server to drive (without --spawn).")
    add("--server-pid", type=int, default=None, help="With --url: its process, for its threads' CPU.")
    add("--concurrency", type=parse_ints, default=[1, 4, 16, 32], help="Comma-separated client counts.")
    add("--duration", type=float, default=20.0, help="Measured seconds per concurrency.")
    add("--warmup", type=float, default=3.0, help="Unmeasured seconds before each measurement.")
    add("--n", type=int, default=1, help="Images per request.")
    add("--temperature", type=float, default=1.0)
    add("--model", default=None, help="Model name (default: the server's default model).")
    add(
        "--endpoints",
        type=parse_names,
        default=["sample"],
        help=f"Comma-separated: the same images asked of each of {', '.join(ENDPOINTS)} in turn.",
    )
    add("--spawn", action="store_true", help="Start `python -m service` once per --max-batch-sizes.")
    add("--model-dir", type=Path, default=bundled_weights(), help="For --spawn and --model-throughput.")
    add("--max-batch-sizes", type=parse_ints, default=[32, 1], help="With --spawn: one server each.")
    add("--rounds", type=int, default=1, help="Repeat the measurements, alternating between servers.")
    add("--model-throughput", action="store_true", help="Also time vae.sample in-process per batch size.")
    add("--cpu-threads", type=int, default=0, help="torch threads of --model-throughput (0: as the service).")
    add("--json", type=Path, default=None, help="Write all results to this JSON file.")
    add("server_flags", nargs=argparse.REMAINDER, help="After `--`: extra flags for spawned servers.")
    return p


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    args = build_parser(prog).parse_args(argv)
    server_flags = [f for f in args.server_flags if f != "--"]
    print(f"closed loop: {args.n} image(s) per request, {args.duration:g} s measured after {args.warmup:g} s")
    print(load_line())
    # runs[label][round][i]: the summary of concurrency args.concurrency[i] in that round;
    # model_throughput[round], model_cpu_ms_per_image[round]: {batch size: img/s or CPU ms per image} of
    # vae.sample in this process, timed after that round.
    report: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "runs": {}}
    report.update(model_throughput=[], model_cpu_ms_per_image=[])
    timer = None
    if args.model_throughput:
        from service.batching.engine import cpu_threads  # the service's rule for its torch threads

        folder = args.model_dir / (args.model or default_model(args.model_dir))
        timer = ModelTimer(folder, cpu_threads(args.cpu_threads))
        print(f"model in-process: vae.sample with {timer.threads} torch thread(s), as the service")
    with contextlib.ExitStack() as stack:
        if args.spawn:
            servers = {}
            for size in args.max_batch_sizes:
                flags = ["--model-dir", str(args.model_dir), "--max-batch-size", str(size), *server_flags]
                servers[f"max_batch_size={size}"] = stack.enter_context(spawned_server(flags))
        else:
            servers = {args.url: (args.url, args.server_pid)}
        print(HEADER)
        # Rounds alternate between the servers (and the model), so a change of load on a shared
        # machine hits every configuration alike.
        for r in range(args.rounds):
            for label, (url, pid) in servers.items():
                for endpoint in args.endpoints:
                    shown = label.replace("_size", "") if args.spawn else "server"
                    key = label
                    if args.endpoints != ["sample"]:  # one row label, and one report entry, per endpoint
                        shown, key = endpoint, f"{label} {endpoint}"
                    results = sweep(url, shown, args, pid, endpoint)
                    report["runs"].setdefault(key, []).append([x.summary() for x in results])
            if timer is not None:
                tput = timer.images_per_s(round_batches(report["runs"], r), max(3.0, args.duration / 4))
                cpu = timer.cpu_ms_per_image
                print(
                    "  model: "
                    + ", ".join(f"batch {b} {v:.1f} img/s (cpu {cpu[b]:.3f} ms/img)" for b, v in tput.items())
                )
                report["model_throughput"].append(tput)
                report["model_cpu_ms_per_image"].append(cpu)
    if args.spawn:
        compare_batching(report, args)
    if timer is not None:
        compare_with_model(report, args)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    return 0


def compare_batching(report: dict, args: argparse.Namespace) -> None:
    """Images/s of each max_batch_size against the last one (batching off: 1), median over rounds."""
    if len(args.max_batch_sizes) < 2:
        return
    runs = report["runs"]
    base = args.max_batch_sizes[-1]
    for size in args.max_batch_sizes[:-1]:
        for i, c in enumerate(args.concurrency):
            on = [rnd[i]["ips"] for rnd in runs[f"max_batch_size={size}"]]
            off = [rnd[i]["ips"] for rnd in runs[f"max_batch_size={base}"]]
            ratios = [a / b if b else math.nan for a, b in zip(on, off)]
            print(
                f"concurrency {c}: max_batch_size={size} {statistics.median(on):.1f} img/s, "
                f"max_batch_size={base} {statistics.median(off):.1f} img/s (medians of {len(on)} rounds): "
                f"x{statistics.median(ratios):.2f} (per round: {', '.join(f'x{r:.2f}' for r in ratios)})"
            )


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run on uvloop when it is installed: the load generator's own CPU per request is less."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        return asyncio.run(coro)
    return uvloop.run(coro)


# --------------------------------------------------------------------------------------------
# Against the model in-process
# --------------------------------------------------------------------------------------------


def round_batches(runs: dict, round_index: int) -> set[int]:
    """Batch 1 and every run's rounded mean batch size in one round."""
    out = {1}
    for rounds in runs.values():
        for r in rounds[round_index]:
            if not math.isnan(r["mean_batch"]):
                out.add(max(1, round(r["mean_batch"])))
    return out


def compare_with_model(report: dict, args: argparse.Namespace) -> None:
    """Each run against vae.sample at the run's rounded mean batch, timed in the same round (so a
    shared machine's changing load hits both alike), twice: images per second, and images per CPU
    second (the server's threads against the model's process: the images/s ratio on a machine that
    gives both the same CPU). Also each batched server's gain over the last max_batch_size (1)
    against the model's own gain between batch 1 and that batch. Medians over rounds, then each
    round's figure."""
    per_cpu_s = [{b: 1000 / ms for b, ms in rnd.items()} for rnd in report["model_cpu_ms_per_image"]]
    for what, model, value in (
        ("img/s", report["model_throughput"], lambda run: run["ips"]),
        ("images per CPU second", per_cpu_s, _images_per_cpu_s),
    ):
        print(f"service against the model in-process, timed in the same rounds, in {what}:")
        _compare(report, args, model, value)


def _images_per_cpu_s(run: dict) -> float:
    server_s = run["loop_cpu_s_per_request"] + run["compute_cpu_s_per_request"]  # NaN when unknown
    return run["images"] / run["requests"] / server_s if run["requests"] else math.nan


def _compare(
    report: dict, args: argparse.Namespace, model: list[dict], value: Callable[[dict], float]
) -> None:
    base_label = f"max_batch_size={args.max_batch_sizes[-1]}" if args.spawn else None
    for label, rounds in report["runs"].items():
        base = report["runs"].get(base_label) if label != base_label else None
        for i, c in enumerate(args.concurrency):
            ratios, gains = [], []
            for r, rnd in enumerate(rounds):
                run = rnd[i]
                if math.isnan(run["mean_batch"]) or math.isnan(value(run)):
                    continue
                b = max(1, round(run["mean_batch"]))
                ratios.append(value(run) / model[r][b])
                if base is not None:
                    gains.append((value(run) / value(base[r][i])) / (model[r][b] / model[r][1]))
            if not ratios:
                continue
            batch = statistics.median([rnd[i]["mean_batch"] for rnd in rounds])
            line = f"  {label} concurrency {c} (mean batch {batch:.1f}): x{_summary(ratios)} of the model's"
            if gains:
                line += f"; its gain over {base_label}: x{_summary(gains)} of the model's gain"
            print(line)


def _summary(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} (rounds: {', '.join(f'{v:.2f}' for v in values)})"


def default_model(model_dir: Path) -> str:
    """The model a server of `model_dir` serves by default: the settings' default_model when that
    folder is there, else the first model folder."""
    from model.checkpoint import model_folders
    from service.settings import Settings

    names = [p.name for p in model_folders(model_dir)]
    wanted = Settings.model_fields["default_model"].default
    return wanted if wanted in names else names[0]


if __name__ == "__main__":
    sys.exit(main())
