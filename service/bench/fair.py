"""Fair-share benchmark: do one-image requests wait behind large ones, and do weighted keys get
their shares of the model?

Three phases against each server, every client in a closed loop (its next request as soon as the
last is answered), each phase a warm-up and then a measured window:

- alone: --small-clients clients looping one-image /sample requests;
- mixed: the same clients beside --heavy-clients clients looping --heavy-n-image requests;
- keys (with --keys A,B): --key-clients clients per key, each looping --key-n-image requests
  with its key; both keys keep several passes' worth of images queued. Each key's images/s is the
  server's own count (vae_client_images_total, of a key without a name= in the keys file) where it
  keeps one, else from the answers.

Printed per phase: the small clients' requests/s and p50/p99 latency, the heavy clients' images/s,
each key's images/s and their ratio, the answers other than 200, and the mean pass size (from
/metrics). With several servers (--url LABEL=URL, repeated), the rounds alternate between them, so
a change of load on a shared machine hits each alike, and the summary gives each target per server
(medians over rounds, then each round): mixed p50 over alone p50 (at most 2), mixed p99 over alone
p99 (at most 3), the heavy clients' images/s over the first server's (at least 0.9), and the keys'
ratio against --weights (within 10%).

    # two servers started beforehand, e.g. before and after a change, with the same two keys
    vdvae bench fair --url before=http://127.0.0.1:8101 --url after=http://127.0.0.1:8102 \\
        --keys KEY_A,KEY_B --weights 3,1 --rounds 3

    # this checkout, spawned with a keys file giving two generated keys the weights 3 and 1
    vdvae bench fair --spawn --weights 3,1
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import random
import secrets
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from service.http.callers import key_label

from .loadgen import HttpConnection, head_lines, load_line, percentile, spawned_server
from .service import run_async, scrape

PROG = "vdvae bench fair"
SMALL, HEAVY = "small", "heavy"


@dataclass(frozen=True)
class Group:
    """Clients that send the same kind of request: `clients` of them in closed loops, or (`rate`)
    requests at random times at that many a second; `n` images each time."""

    name: str
    n: int
    clients: int
    headers: dict[str, str] = field(default_factory=dict)
    rate: float | None = None
    label: str | None = None  # its key's name in the server's per-key metrics


@dataclass
class GroupResult:
    """What one group's clients saw in the measured window."""

    n: int
    latencies_s: list[float] = field(default_factory=list)  # answered (200) requests that began in it
    completed: int = 0  # answered requests that ended in it (throughput)
    other: Counter[str] = field(default_factory=Counter)  # answers other than 200, by status
    computed: float | None = None  # its key's images computed in it, from /metrics (when the server has them)

    def rps(self, seconds: float) -> float:
        return self.completed / seconds

    def ips(self, seconds: float) -> float:
        """Images per second: its key's images computed in the window, by the server's count where
        it keeps one per key; else those of its requests answered in the window (in steps of n
        images: a long window for a large n)."""
        if self.computed is not None:
            return self.computed / seconds
        return self.n * self.completed / seconds

    def ms(self, q: float) -> float:
        return 1000 * percentile(self.latencies_s, q)

    def record(self, status: str, t0: float, t1: float, t_measure: float, t_stop: float) -> None:
        """One answer: counted if the request began in the window (its latency, or its status)
        and, for the throughput, if it was answered in it."""
        if status != "200":
            if t0 >= t_measure:
                self.other[status] += 1
            return
        if t0 >= t_measure:
            self.latencies_s.append(t1 - t0)
        if t_measure <= t1 < t_stop:
            self.completed += 1


@dataclass
class PhaseResult:
    seconds: float
    groups: dict[str, GroupResult]
    passes: float
    pass_images: float  # every image the server computed in the window (from /metrics)

    @property
    def mean_pass(self) -> float:
        return self.pass_images / self.passes if self.passes else math.nan

    def heavy_ips(self) -> float:
        """The heavy clients' images/s: every image computed in the window but the small clients'.
        Counting the heavy answers instead would move in steps of a whole request's images."""
        small = self.groups.get(SMALL)
        return (self.pass_images - (small.completed if small else 0)) / self.seconds


async def run_phase(
    url: str, groups: Sequence[Group], duration_s: float, warmup_s: float, observer_headers: dict[str, str]
) -> PhaseResult:
    """Every group's clients in a closed loop for warm-up + duration; the window's figures."""
    t_measure = time.monotonic() + warmup_s
    t_stop = t_measure + duration_s
    results = {g.name: GroupResult(g.n) for g in groups}
    observer = HttpConnection(url)
    head = head_lines(observer_headers)
    try:
        model = await default_model(observer, head)

        async def metrics_at(t: float) -> tuple[dict[str, float], dict[str, float]]:
            await asyncio.sleep(max(0.0, t - time.monotonic()))
            text = (await observer.request("GET", "/metrics", headers=head))[1].decode()
            return scrape(text, model, "sample"), per_key_images(text)

        async def measured() -> tuple[tuple[dict[str, float], dict[str, float]], ...]:
            return await metrics_at(t_measure), await metrics_at(t_stop)

        loops = [
            client_loop(url, g, results[g.name], t_measure, t_stop)
            for g in groups
            if g.rate is None
            for _ in range(g.clients)
        ]
        loops += [open_loop(url, g, results[g.name], t_measure, t_stop) for g in groups if g.rate is not None]
        ((before, keys_before), (after, keys_after)), *_ = await asyncio.gather(measured(), *loops)
    finally:
        observer.close()
    for g in groups:
        if g.label is not None and g.label in keys_after:
            results[g.name].computed = keys_after[g.label] - keys_before.get(g.label, 0.0)
    return PhaseResult(
        seconds=duration_s,
        groups=results,
        passes=after["batches"] - before["batches"],
        pass_images=after["batch_images"] - before["batch_images"],
    )


def per_key_images(text: str) -> dict[str, float]:
    """vae_client_images_total by key name, from a /metrics page (none on a server without it)."""
    return {
        s.labels["client"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "vae_client_images_total"
    }


async def default_model(observer: HttpConnection, head: str) -> str:
    status, body = await observer.request("GET", "/v1/models", headers=head)
    if status != 200:
        raise SystemExit(f"GET /v1/models answered {status}: {body[:200]!r} (a key needed? --keys)")
    return next(m["id"] for m in json.loads(body)["data"] if m["default"])


async def client_loop(url: str, group: Group, result: GroupResult, t_measure: float, t_stop: float) -> None:
    """One client: the next request as soon as the last is answered, until t_stop."""
    rng = random.Random()
    connection = HttpConnection(url)
    head = head_lines(group.headers)
    try:
        while (t0 := time.monotonic()) < t_stop:
            status = await send(connection, group.n, head, rng)
            result.record(status, t0, time.monotonic(), t_measure, t_stop)
            if status != "200":
                await asyncio.sleep(0.05)  # a refusal comes back at once: no busy loop
    finally:
        connection.close()


async def open_loop(url: str, group: Group, result: GroupResult, t_measure: float, t_stop: float) -> None:
    """Requests at random (Poisson) times, `group.rate` a second until t_stop, whether or not the
    earlier ones were answered; each on an idle connection of a pool, its latency from the time it
    was due."""
    assert group.rate is not None
    rng = random.Random()
    head = head_lines(group.headers)
    idle: list[HttpConnection] = []
    sent: set[asyncio.Task] = set()

    async def one(due: float) -> None:
        connection = idle.pop() if idle else HttpConnection(url)
        status = await send(connection, group.n, head, rng)
        idle.append(connection)
        result.record(status, due, time.monotonic(), t_measure, t_stop)

    due = time.monotonic()
    try:
        while (due := due + rng.expovariate(group.rate)) < t_stop:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            sent.add(asyncio.create_task(one(due)))
        await asyncio.gather(*sent)
    finally:
        for connection in idle:
            connection.close()


async def send(connection: HttpConnection, n: int, head: str, rng: random.Random) -> str:
    """POST /sample for n images at a fresh seed; the status, or the error's name."""
    body = json.dumps({"n": n, "seed": rng.randrange(2**31)}).encode()
    try:
        code, _ = await connection.request("POST", "/sample", body, "application/json", headers=head)
    except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as e:
        return type(e).__name__
    return str(code)


# --------------------------------------------------------------------------------------------
# Phases and rounds
# --------------------------------------------------------------------------------------------


def key_header(key: str | None) -> dict[str, str]:
    return {} if key is None else {"Authorization": f"Bearer {key}"}


def phases(args: argparse.Namespace, keys: list[str]) -> dict[str, list[Group]]:
    """The groups of each phase. With keys, the alone and mixed phases use the first key."""
    first = key_header(keys[0] if keys else None)
    small = dict(key_header(keys[0] if keys else None))
    if args.small_priority:
        small["X-Priority"] = args.small_priority
    smalls = Group(SMALL, 1, args.small_clients, small, rate=args.small_rate)
    out = {
        "alone": [smalls],
        "mixed": [smalls, Group(HEAVY, args.heavy_n, args.heavy_clients, first)],
    }
    if keys:
        out["keys"] = [
            Group(f"key {i}", args.key_n, args.key_clients, key_header(k), label=key_label(k))
            for i, k in enumerate(keys)
        ]
    return out


def row(label: str, phase: str, r: PhaseResult) -> str:
    parts = [f"{label:>10} {phase:>6}:"]
    small = r.groups.get(SMALL)
    if small is not None:
        parts.append(
            f"small {small.rps(r.seconds):6.1f} req/s p50 {small.ms(50):7.1f} ms p99 {small.ms(99):7.1f} ms"
        )
    heavy = r.groups.get(HEAVY)
    if heavy is not None:
        parts.append(f"| heavy {r.heavy_ips():6.1f} img/s p50 {heavy.ms(50):7.0f} ms")
    keyed = [(name, g) for name, g in r.groups.items() if name.startswith("key ")]
    if keyed:
        rates = [g.ips(r.seconds) for _, g in keyed]
        shown = " ".join(f"{name} {v:6.1f} img/s" for (name, _), v in zip(keyed, rates))
        parts.append(f"{shown} | ratio {key_ratio(rates):5.2f}")
    parts.append(f"| all {r.pass_images / r.seconds:6.1f} img/s, passes {r.mean_pass:5.1f} img")
    other = sum((g.other for g in r.groups.values()), Counter())
    if other:
        parts.append(f"| not 200: {dict(other)}")
    return " ".join(parts)


def key_ratio(rates: Sequence[float]) -> float:
    return rates[0] / rates[1] if len(rates) > 1 and rates[1] else math.nan


def summarize(results: dict[str, list[dict[str, PhaseResult]]], weights: list[float] | None) -> None:
    """Each target per server: the median over rounds, then each round's figure."""
    base = next(iter(results))
    print("targets (median over rounds; each round in brackets):")
    for label, rounds in results.items():
        p50 = [r["mixed"].groups[SMALL].ms(50) / r["alone"].groups[SMALL].ms(50) for r in rounds]
        p99 = [r["mixed"].groups[SMALL].ms(99) / r["alone"].groups[SMALL].ms(99) for r in rounds]
        refused = sum(sum(r["mixed"].groups[SMALL].other.values()) for r in rounds)
        heavy = [r["mixed"].heavy_ips() for r in rounds]
        line = (
            f"  {label}: small p50 mixed/alone x{_median(p50)}, p99 mixed/alone x{_median(p99)}, "
            f"{refused} small requests not answered 200; heavy {_median(heavy, '.1f')} img/s"
        )
        if label != base:
            ref = [r["mixed"].heavy_ips() for r in results[base]]
            line += f" = x{_median(ratios(heavy, ref))} of {base}'s"
            every = [r["mixed"].pass_images for r in rounds]
            line += f"; all images x{_median(ratios(every, [r['mixed'].pass_images for r in results[base]]))}"
        if "keys" in rounds[0]:
            shares = [
                key_ratio([g.ips(r["keys"].seconds) for g in r["keys"].groups.values()]) for r in rounds
            ]
            line += f"; key 0 : key 1 = {_median(shares)}"
            if weights is not None and len(weights) > 1:
                line += f" (weights {weights[0] / weights[1]:g})"
        print(line)


def ratios(values: Sequence[float], bases: Sequence[float]) -> list[float]:
    return [a / b if b else math.nan for a, b in zip(values, bases, strict=True)]


def _median(values: Sequence[float], fmt: str = ".2f") -> str:
    return f"{statistics.median(values):{fmt}} [{', '.join(f'{v:{fmt}}' for v in values)}]"


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def parse_server(text: str) -> tuple[str, str]:
    label, sep, url = text.partition("=")
    return (label, url) if sep and not label.startswith("http") else (text, text)


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog,
        description=__doc__.replace(PROG, prog),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = p.add_argument
    add(
        "--url",
        type=parse_server,
        action="append",
        default=[],
        help="[LABEL=]URL of a server; repeat to compare",
    )
    add(
        "--spawn",
        action="store_true",
        help="start this checkout's `python -m service` with two generated keys",
    )
    add("--keys", default="", help="comma-separated API keys: the keys phase gives each its own clients")
    add("--weights", default="", help="the keys' weights (for --spawn's keys file, and the target's ratio)")
    add("--small-clients", type=int, default=8)
    add(
        "--small-rate",
        type=float,
        help="one-image requests a second at random times, instead of --small-clients closed loops "
        "(the same demand whatever the latency, to compare the heavy clients' images/s at equal load)",
    )
    add("--heavy-clients", type=int, default=4)
    add("--heavy-n", type=int, default=64, help="images per heavy request")
    add("--key-clients", type=int, default=6, help="clients per key in the keys phase")
    add("--key-n", type=int, default=16, help="images per request in the keys phase")
    add("--small-priority", choices=["low", "normal", "high"], help="sent as X-Priority by the small clients")
    add("--duration", type=float, default=20.0, help="measured seconds per phase")
    add("--warmup", type=float, default=3.0, help="unmeasured seconds before each phase's window")
    add("--rounds", type=int, default=1, help="repeat every phase, alternating between the servers")
    add("--phases", default="alone,mixed,keys", help="which phases to run")
    add("server_flags", nargs=argparse.REMAINDER, help="after `--`: extra flags for the spawned server")
    return p


def main(argv: Sequence[str] | None = None, prog: str = PROG) -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if not args.url and not args.spawn:
        parser.error("give --url (repeatable) or --spawn")
    keys = [k.strip() for k in args.keys.split(",") if k.strip()]
    weights = [float(w) for w in args.weights.split(",") if w.strip()] or None
    wanted = {p.strip() for p in args.phases.split(",")}
    small = (
        f"1-image requests {args.small_rate:g} a second at random times"
        if args.small_rate
        else f"closed loop: {args.small_clients} clients of 1 image"
    )
    print(
        f"{small}, {args.heavy_clients} clients of {args.heavy_n}; "
        f"{args.duration:g} s measured after {args.warmup:g} s per phase"
    )
    print(load_line())
    with contextlib.ExitStack() as stack:
        servers = dict(args.url)
        if args.spawn:
            keys = keys or [secrets.token_urlsafe(24), secrets.token_urlsafe(24)]
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            keys_file = folder / "keys"
            w = weights or [1.0] * len(keys)
            keys_file.write_text("".join(f"{k} weight={w[i]:g}\n" for i, k in enumerate(keys)))
            flags = ["--api-keys-file", str(keys_file), "--metrics-access", "open"]
            flags += [f for f in args.server_flags if f != "--"]
            servers["spawned"] = stack.enter_context(spawned_server(flags))[0]
        groups = {name: gs for name, gs in phases(args, keys).items() if name in wanted}
        observer = key_header(keys[0] if keys else None)
        results: dict[str, list[dict[str, PhaseResult]]] = {label: [] for label in servers}
        for _ in range(args.rounds):
            for label, url in servers.items():
                done = {}
                for name, phase_groups in groups.items():
                    done[name] = run_async(run_phase(url, phase_groups, args.duration, args.warmup, observer))
                    print(row(label, name, done[name]), f" [{load_line()}]", flush=True)
                results[label].append(done)
    if {"alone", "mixed"} <= wanted:
        summarize(results, weights)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
