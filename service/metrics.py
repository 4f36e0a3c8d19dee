"""Prometheus metrics of one app, on its own CollectorRegistry (several apps can share a process).

Names use the `vae_` prefix and base units, as Prometheus recommends: durations in seconds, batch
sizes in images. `endpoint` is the route template ("/sample"), never the raw path, to bound cardinality.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# Latency buckets from 1 ms (a tiny model on a GPU) to 2 minutes (a 1024x1024 batch on a CPU).
SECONDS_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)  # fmt: skip


def batch_size_buckets(max_batch_size: int) -> tuple[float, ...]:
    """Powers of two up to max_batch_size, and max_batch_size itself."""
    buckets, b = [], 1
    while b < max_batch_size:
        buckets.append(float(b))
        b *= 2
    buckets.append(float(max_batch_size))
    return tuple(buckets)


@dataclass(frozen=True)
class BatchMetrics:
    """The metrics of one (model, operation), already labelled: `labels()` costs a lock and a dict
    lookup per call, several times per request and once per queued image."""

    queue_depth: Any
    queue_duration: Any
    compute_duration: Any
    batch_size: Any
    images: Any
    batches: Any


@dataclass(frozen=True)
class ClientMetrics:
    """The metrics of one caller (an API key's name or hash; "open" without keys), labelled."""

    client: str
    images: Any
    queued: Any
    refused_by_reason: Any  # vae_client_refused_images, its client and reason labels still to give

    def refused(self, reason: str) -> Any:
        return self.refused_by_reason.labels(client=self.client, reason=reason)


class Metrics:
    """Every metric the service reports, created on a fresh registry."""

    def __init__(self, max_batch_size: int) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "vae_requests",
            "HTTP requests answered, by endpoint and status code.",
            ["endpoint", "code"],
            registry=r,
        )
        self.failures = Counter(
            "vae_request_failures",
            "Requests that failed, by reason (invalid, not_found, too_large, queue_full, rate_limited, "
            "forbidden, deadline, cancelled, not_ready, shutting_down, oom, backend).",
            ["reason"],
            registry=r,
        )
        self.request_duration = Histogram(
            "vae_request_duration_seconds",
            "Time from request arrival to the response, by endpoint.",
            ["endpoint"],
            buckets=SECONDS_BUCKETS,
            registry=r,
        )
        self.queue_duration = Histogram(
            "vae_queue_duration_seconds",
            "Time an image waited in the queue before its batch formed.",
            ["model", "operation"],
            buckets=SECONDS_BUCKETS,
            registry=r,
        )
        self.compute_duration = Histogram(
            "vae_compute_duration_seconds",
            "Time of one model pass over a batch.",
            ["model", "operation"],
            buckets=SECONDS_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "vae_batch_size",
            "Images per model pass.",
            ["model", "operation"],
            buckets=batch_size_buckets(max_batch_size),
            registry=r,
        )
        self.queue_depth = Gauge(
            "vae_queue_depth", "Images waiting for a batch.", ["model", "operation"], registry=r
        )
        self.inflight = Gauge("vae_inflight_requests", "Model requests being served now.", registry=r)
        self.images = Counter(
            "vae_images", "Images produced or processed by model passes.", ["model", "operation"], registry=r
        )
        self.batches = Counter(
            "vae_batch_executions", "Model passes (batches) run.", ["model", "operation"], registry=r
        )
        self.stream_stages = Counter(
            "vae_stream_stages",
            "Previews (one per resolution) of streaming samples computed for a request: sent, or "
            "dropped because its client had gone or its deadline had passed. A pass whose every "
            "request has dropped a stage stops there.",
            ["model", "outcome"],
            registry=r,
        )
        self.ready = Gauge(
            "vae_ready", "1 when every model is loaded and warmed up and not draining.", registry=r
        )
        # Per caller: an API key's name= (the keys file), else "sha256:" and a prefix of the key's
        # hash, never the key; one "open" for every caller of a service without keys.
        self.client_images = Counter(
            "vae_client_images", "Images computed for each API key.", ["client"], registry=r
        )
        self.client_refused = Counter(
            "vae_client_refused_images",
            "Images of each API key's requests refused, by reason (rate_limited: over its rate; "
            "too_many_queued: over its queued images; queue_full: the model's queue was full).",
            ["client", "reason"],
            registry=r,
        )
        self.client_queued = Gauge(
            "vae_client_queued_images",
            "Images of each API key waiting for a pass or being computed.",
            ["client"],
            registry=r,
        )
        self._answers: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._batch: dict[tuple[str, str], BatchMetrics] = {}
        self._clients: dict[str, ClientMetrics] = {}

    def answered(self, endpoint: str, code: str, seconds: float) -> None:
        """Count one answer of `endpoint` (a route template) and its duration."""
        children = self._answers.get((endpoint, code))
        if children is None:  # endpoints are templates and codes few: the cache stays small
            children = (
                self.requests.labels(endpoint=endpoint, code=code),
                self.request_duration.labels(endpoint),
            )
            self._answers[(endpoint, code)] = children
        children[0].inc()
        children[1].observe(seconds)

    def batch_metrics(self, model: str, operation: str) -> BatchMetrics:
        """The batch and queue metrics of one model and operation."""
        found = self._batch.get((model, operation))
        if found is None:
            labels = {"model": model, "operation": operation}
            found = BatchMetrics(
                *(m.labels(**labels) for m in (self.queue_depth, self.queue_duration, self.compute_duration)),
                *(m.labels(**labels) for m in (self.batch_size, self.images, self.batches)),
            )
            self._batch[(model, operation)] = found
        return found

    def client_metrics(self, client: str) -> ClientMetrics:
        """The metrics of one caller (its label: a key's name or hash, or "open")."""
        found = self._clients.get(client)
        if found is None:
            found = ClientMetrics(
                client,
                self.client_images.labels(client),
                self.client_queued.labels(client),
                self.client_refused,
            )
            self._clients[client] = found
        return found

    def render(self) -> bytes:
        return generate_latest(self.registry)
