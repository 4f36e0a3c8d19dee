"""Hostile-load benchmark: does the service stay responsive while clients loop the worst inputs?

Two phases of equal length against one server: "quiet" (normal clients looping one-image /sample
requests, and a probe of /health/live every 20 ms) and "hostile" (the same, plus clients looping the
most expensive bodies we know: a PNG of a million tiny text chunks, a 15.6 MB temperature list,
JSON nested 100,000 deep, in a body and in a form field). Printed per phase: the probe's p50/p99/max
latency (target: p99 <= 100 ms under hostile load) and the normal requests' p50/p99 (target: within
2x of quiet), and how the hostile requests were answered.

    vdvae bench stress --spawn                      # starts `python -m service` itself
    vdvae bench stress --url http://127.0.0.1:8000 --hostile-clients 4 --duration 20

The normal clients and the probe run in this process, each hostile client in a process of its own;
on a small machine they all share the cores with the server.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import multiprocessing
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence

import httpx

from .hostile import hostile_requests
from .loadgen import load_line, percentile, spawned_server

# --------------------------------------------------------------------------------------------
# Load
# --------------------------------------------------------------------------------------------


def loop_until(stop: threading.Event, url: str, step: Callable[[httpx.Client], None]) -> threading.Thread:
    def run() -> None:
        with httpx.Client(base_url=url, timeout=120) as client:
            while not stop.is_set():
                step(client)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def attack(url: str, seconds: float, worker: int, answers: multiprocessing.Queue) -> None:
    """One hostile client, in a process of its own (its GIL is not the normal clients')."""
    requests = hostile_requests()
    codes: Counter[str] = Counter()
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=url, timeout=120) as client:
        for path, kw in itertools.islice(itertools.cycle(requests), worker, None):
            if time.monotonic() >= deadline:
                break
            try:
                codes[f"{path} {client.post(path, **kw).status_code}"] += 1
            except httpx.HTTPError as e:
                codes[f"{path} {type(e).__name__}"] += 1
    answers.put(codes)


def phase(url: str, duration_s: float, normal_clients: int, hostile_clients: int) -> dict:
    """Run one phase; latencies in seconds and answer counts."""
    stop = threading.Event()
    probe_s: list[float] = []
    normal_s: list[float] = []
    normal_codes: Counter[str] = Counter()
    hostile_codes: Counter[str] = Counter()
    # Hostile clients first, forked before this process starts any thread.
    context = multiprocessing.get_context("fork")
    answers = context.Queue()
    attackers = [
        context.Process(target=attack, args=(url, duration_s, i, answers), daemon=True)
        for i in range(hostile_clients)
    ]
    for a in attackers:
        a.start()

    def timed(client: httpx.Client, method: str, path: str, **kw) -> tuple[str, float]:
        t0 = time.perf_counter()
        try:
            code = str(client.request(method, path, **kw).status_code)
        except httpx.HTTPError as e:
            code = type(e).__name__
        return code, time.perf_counter() - t0

    def probe(client: httpx.Client) -> None:
        code, seconds = timed(client, "GET", "/health/live")
        probe_s.append(seconds if code == "200" else float("inf"))
        time.sleep(0.02)

    def normal(client: httpx.Client) -> None:
        code, seconds = timed(client, "POST", "/sample", json={"n": 1})
        normal_codes[code] += 1
        if code == "200":
            normal_s.append(seconds)

    threads = [loop_until(stop, url, probe)]
    threads += [loop_until(stop, url, normal) for _ in range(normal_clients)]
    time.sleep(duration_s)
    stop.set()
    for t in threads:
        t.join(timeout=120)
    for a in attackers:
        hostile_codes.update(answers.get(timeout=300))
        a.join(timeout=60)
    return {
        "probe": probe_s,
        "normal": normal_s,
        "normal_codes": normal_codes,
        "hostile_codes": hostile_codes,
    }


def report(name: str, result: dict, quiet: dict | None) -> None:
    probe, normal = result["probe"], result["normal"]
    ms = lambda values, q: 1000 * percentile(values, q)  # noqa: E731
    line = (
        f"{name:>8}: /health/live p50 {ms(probe, 50):7.1f} ms  p99 {ms(probe, 99):7.1f} ms  "
        f"max {1000 * max(probe, default=float('nan')):7.1f} ms ({len(probe)} probes) | "
        f"/sample p50 {ms(normal, 50):7.1f} ms  p99 {ms(normal, 99):7.1f} ms ({len(normal)} answered)"
    )
    if quiet is not None and quiet["normal"] and normal:
        line += f"  x{percentile(normal, 50) / percentile(quiet['normal'], 50):.2f} p50 vs quiet"
    print(line)
    others = {k: v for k, v in result["normal_codes"].items() if k != "200"}
    if others:
        print(f"{'':>10}/sample answers other than 200: {dict(others)}")
    if result["hostile_codes"]:
        print(f"{'':>10}hostile answers: {dict(sorted(result['hostile_codes'].items()))}")


def build_parser(prog: str = "vdvae bench stress") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("--url", help="a running server (default: --spawn one)")
    p.add_argument("--spawn", action="store_true", help="start `python -m service` for the run")
    p.add_argument("--duration", type=float, default=15.0, help="seconds per phase")
    p.add_argument("--normal-clients", type=int, default=4)
    p.add_argument("--hostile-clients", type=int, default=4)
    p.add_argument("server_flags", nargs="*", help="extra flags for the spawned server (after --)")
    return p


def main(argv: Sequence[str] | None = None, prog: str = "vdvae bench stress") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if not args.url and not args.spawn:
        parser.error("give --url or --spawn")
    print(load_line())
    with contextlib.ExitStack() as stack:
        url = args.url or stack.enter_context(spawned_server(["--cpu-threads", "1", *args.server_flags]))[0]
        hostile_requests()  # built before the clock starts
        quiet = phase(url, args.duration, args.normal_clients, 0)
        report("quiet", quiet, None)
        hostile = phase(url, args.duration, args.normal_clients, args.hostile_clients)
        report("hostile", hostile, quiet)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
