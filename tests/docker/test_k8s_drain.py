"""Two replicas of `python -m service` behind a round-robin load balancer (written here, in the client
threads), under closed-loop /sample load; one replica gets SIGTERM mid-load while the balancer still
sends it requests: the worst case of a Kubernetes stop, one where the preStop sleep was too short for
the load balancer to drop the endpoint. No request is lost: each is answered 200, or refused before the
replica accepted it (connection refused, or 503 shutting-down) and then answered by the other replica,
as a load balancer retries; none is cut off, and the stopped replica finishes what it had accepted and
exits 0."""

from __future__ import annotations

import base64
import collections
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

from ..service.test_shutdown import start_service

CLIENTS = 8
# Every batch window runs its 100 ms course, so that the replica has queued work to drain when the
# signal comes; with the default early close a lone request would often finish first.
REPLICA_FLAGS = ("--max-batch-delay-ms", "100", "--no-batch-early-close", "--no-access-log")
LOAD_BEFORE_S, LOAD_AFTER_S = 2.0, 1.5


@dataclass
class Attempt:
    backend: int
    sent: float
    done: float = float("inf")
    outcome: str = ""  # "200", "refused" or "cut off: ..." / "status ...": a lost request


class Balancer:
    """Round robin over the replicas in rotation, with a load balancer's passive health check: an
    attempt refused before the replica accepted the request takes that replica out of rotation and
    goes to the next one. Anything else that is not a 200 (a reset, a truncated answer, another
    status) loses the request. A fresh connection per attempt, so that "refused" is unambiguous."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.in_rotation = list(range(len(urls)))
        self.turn = 0
        self.lock = threading.Lock()
        self.attempts: list[Attempt] = []
        self.requests = collections.Counter()

    def pick(self) -> int | None:
        with self.lock:
            if not self.in_rotation:
                return None
            self.turn += 1
            return self.in_rotation[self.turn % len(self.in_rotation)]

    def take_out(self, backend: int) -> None:
        with self.lock:
            if backend in self.in_rotation:
                self.in_rotation.remove(backend)

    def sample(self, client: httpx.Client, seed: int) -> None:
        """One request, retried on the next replica while refused; counted as answered or lost."""
        while (backend := self.pick()) is not None:
            attempt = Attempt(backend, time.monotonic())
            with self.lock:
                self.attempts.append(attempt)
            attempt.outcome = self.attempt(client, self.urls[backend], seed)
            attempt.done = time.monotonic()
            if attempt.outcome != "refused":
                break
            self.take_out(backend)
        else:
            attempt = None
        with self.lock:
            self.requests["answered" if attempt and attempt.outcome == "200" else "lost"] += 1

    @staticmethod
    def attempt(client: httpx.Client, url: str, seed: int) -> str:
        try:
            response = client.post(url + "/sample", json={"n": 1, "seed": seed})
        except httpx.ConnectError:
            return "refused"  # nothing listens: the request never reached the replica
        except httpx.HTTPError as e:  # reset, closed mid-answer, timed out: cut off
            return f"cut off: {type(e).__name__}: {e}"
        if response.status_code == 503 and response.json().get("type") == "/problems/shutting-down":
            return "refused"
        if response.status_code != 200:
            return f"status {response.status_code}: {response.text[:200]}"
        (image,) = response.json()["data"]
        complete = image["seed"] == seed and base64.b64decode(image["b64_json"]).startswith(b"\x89PNG")
        return "200" if complete else "incomplete answer"


def test_sigterm_on_one_replica_under_load_loses_no_request(model_dir: Path) -> None:
    started = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        starting = [pool.submit(start_service, model_dir, *REPLICA_FLAGS) for _ in range(2)]
    replicas = [f.result() for f in starting if f.exception() is None]
    try:
        assert len(replicas) == 2, [f.exception() for f in starting]
        (stopped, stopped_url), (_, other_url) = replicas
        balancer = Balancer([stopped_url, other_url])
        stop_load = threading.Event()

        def client(k: int) -> None:
            # No keep-alive: each attempt opens its own connection.
            with httpx.Client(timeout=30, limits=httpx.Limits(max_keepalive_connections=0)) as c:
                i = 0
                while not stop_load.is_set():
                    balancer.sample(c, seed=1000 * k + i)
                    i += 1

        clients = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
        for c in clients:
            c.start()
        time.sleep(LOAD_BEFORE_S)
        # Signal while requests are queued at the replica (its 100 ms windows hold them there).
        deadline = time.monotonic() + 10
        while sum(a.backend == 0 and a.done == float("inf") for a in list(balancer.attempts)) < 2:
            assert time.monotonic() < deadline, "no request ever waited at the first replica"
            time.sleep(0.005)
        signalled = time.monotonic()
        stopped.send_signal(signal.SIGTERM)
        output, _ = stopped.communicate(timeout=30)
        exited = time.monotonic()
        time.sleep(LOAD_AFTER_S)  # the other replica carries the load alone
        stop_load.set()
        for c in clients:
            c.join(timeout=30)
        assert not any(c.is_alive() for c in clients)

        attempts = balancer.attempts
        sent = sum(balancer.requests.values())
        answered, lost = balancer.requests["answered"], balancer.requests["lost"]
        refused = sum(a.outcome == "refused" for a in attempts)
        # Requests waiting at the stopped replica when it was signalled, answered by it afterwards.
        drained = sum(a.backend == 0 and a.sent < signalled < a.done and a.outcome == "200" for a in attempts)
        after_exit = sum(a.backend == 1 and a.sent > exited and a.outcome == "200" for a in attempts)
        print(
            f"\nsent {sent}, answered {answered}, refused {refused} (then retried on the other replica), "
            f"lost {lost}; drained by the stopped replica after SIGTERM {drained}; answered by the "
            f"other replica after the stopped one exited {after_exit}; SIGTERM to exit "
            f"{exited - signalled:.2f} s; whole test {time.monotonic() - started:.1f} s"
        )
        failures = collections.Counter(a.outcome for a in attempts if a.outcome not in ("200", "refused"))
        assert lost == 0 and not failures, failures
        assert answered == sent > 0
        assert refused >= 1, "the balancer never met the stopping replica: the test showed nothing"
        assert all(a.backend == 0 for a in attempts if a.outcome == "refused")
        assert drained >= 1 and after_exit >= 1
        assert stopped.returncode == 0, output
        assert "draining" in output and "drained" in output
    finally:
        for proc, _ in replicas:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
