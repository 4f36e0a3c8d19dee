"""Service settings: one pydantic-settings class, read from `VDVAE_*` environment variables and,
for `python -m service`, from matching command-line flags (`--max-batch-size 32` sets
`max_batch_size`; flags beat environment variables, which beat the defaults).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from model.bundled import bundled_weights

ENV_PREFIX = "VDVAE_"


class Settings(BaseSettings):
    """Everything an operator can tune. Each field is also the CLI flag `--field-name`."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", validate_default=True)

    # --- models -----------------------------------------------------------------------------
    # The bundled models wherever the package is (a checkout's weights/, or an installed copy), so
    # that `vdvae serve` serves something from any working directory.
    model_dir: Path = Field(
        default_factory=bundled_weights,
        description="Folder of model folders (<model_dir>/<name>/model.safetensors + config.json); "
        "every one of them is served, under its folder name. Default: the bundled models.",
    )
    default_model: str = Field(
        "mnist",
        description="Model used when a request names none; when absent, the first model by name.",
    )
    device: str = Field(
        "auto",
        pattern=r"^(auto|cpu|cuda(:\d+)?)$",
        description="auto (the GPU when there is one, else the CPU), cpu, cuda or cuda:N.",
    )
    # Full precision by default: sampling goes through dozens of stochastic layers and users compare
    # images by seed, so the default favours exact reproducibility; bf16 is the fast opt-in on GPU.
    amp: Literal["none", "bf16", "fp16"] = Field(
        "none", description="Autocast dtype for CUDA inference (ignored on CPU)."
    )
    # Off by default: compiling costs minutes at start-up and per new batch size, and on CPU the
    # compiled blocks are slower than eager ones (vdvae bench model --compile).
    compile: bool = Field(False, description="torch.compile the model's residual blocks.")
    # Off by default: each bucket's graph is captured at its first batch (two passes and a private
    # pool of GPU memory), and what replay gains over launching kernels one by one is measured on
    # the GPU that serves (vdvae bench gpu).
    cuda_graphs: bool = Field(
        False,
        description="Replay sampling passes from CUDA graphs, one per batch size bucket (powers of two "
        "up to max_batch_size, a batch padded to its bucket); CUDA only, ignored on CPU.",
    )
    # A GPU pass can take less time than the host takes to draw its images' noise on one core.
    draw_threads: int = Field(
        1,
        ge=1,
        le=256,
        description="Host threads that draw a batch's per-image noise (the same images for any count).",
    )
    # More torch threads than free cores make every pass stall while the threads wait for each other,
    # and the event loop needs a core of its own to parse and answer requests.
    cpu_threads: int = Field(
        0,
        ge=0,
        description="torch intra-op threads for CPU inference; 0: one fewer than the physical cores "
        "(at least 1). Lower it on a CPU shared with other work.",
    )
    warmup: bool = Field(
        True, description="Run one small batch per model and operation before reporting ready."
    )

    # --- HTTP -------------------------------------------------------------------------------
    # Loopback by default so a laptop run is not exposed; the Docker images set VDVAE_HOST=0.0.0.0.
    host: str = Field("127.0.0.1", description="Interface to listen on.")
    port: int = Field(8000, ge=0, le=65535, description="TCP port to listen on (0: any free port).")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = Field(
        "info", description="Log level of the service and uvicorn."
    )
    access_log: bool = Field(True, description="Log one line per request (uvicorn's access log).")
    # 16 MiB holds a base64 PNG of a 1024x1024 FFHQ image (~4 MiB) or a /decode body with the
    # latents of all layers of the small models, with room to spare; larger bodies get 413.
    max_body_bytes: int = Field(16 * 2**20, ge=1024, description="Largest request body accepted (413).")
    # Reading and scanning a body to max_body_bytes before its 413 costs CPU in proportion to its
    # size; refused by its Content-Length it costs the read alone, no parsing.
    endpoint_body_limits: bool = Field(
        True,
        description="Refuse (413) a body larger than its endpoint can need for the served models' "
        "shapes (each limit at most max_body_bytes).",
    )
    # A client looping oversized bodies is held to a few a second per connection, so it cannot take
    # the cores from normal requests (vdvae bench stress measures the effect).
    oversized_body_delay_s: float = Field(
        0.25,
        ge=0.0,
        le=10.0,
        description="Pause before answering 413 to a body whose Content-Length is over its limit.",
    )

    # The layers a direct dispatch skips do nothing these routes need, and their event-loop CPU per
    # request is a large share of a small request's (docs/performance.md has the figure).
    direct_dispatch: bool = Field(
        True,
        description="Hand the model endpoints' POSTs to their routes from the app's innermost "
        "middleware, past Starlette's exception middleware and the router (the same answers); off: "
        "through the router, as any route.",
    )

    # --- batching ---------------------------------------------------------------------------
    # Batches count images. 32 fills a CPU's cores and a GPU's SMs for the small models; the
    # batch runs in one pass, so larger values mostly add latency on a CPU.
    max_batch_size: int = Field(32, ge=1, le=4096, description="Most images in one model pass.")
    # The window opens at the first queued arrival and closes early when no other request is in
    # the service, so a lone client pays nothing for it. Under load it hardly matters: the next
    # batch gathers in the queue while the previous one computes. 2 ms catches clients that answer
    # a finished batch together.
    max_batch_delay_ms: float = Field(
        2.0, ge=0.0, le=60_000, description="Longest a batch waits for more images after its first."
    )
    batch_early_close: bool = Field(
        True,
        description="Close a batch window as soon as no other request in the service could join it; "
        "off: every window runs its full max_batch_delay_ms (larger batches, more latency).",
    )
    # Bounded per model and operation: 8 full batches. Beyond that a client waits longer than
    # it would by retrying, so it gets 503 + Retry-After at once.
    max_queue_images: int = Field(
        256, ge=1, description="Images waiting per model and operation before 503 (queue full)."
    )
    max_images_per_request: int = Field(
        64, ge=1, le=4096, description="Largest n of one /sample request (422 above)."
    )

    # --- fair share and per-key limits ------------------------------------------------------
    # Passes take the queued requests' images in a fair order (one image of each request in turn,
    # weighted keys in turn, higher priorities first), so a small request joins the next pass; it
    # still waits for the pass running when it came, then its own. Cut to 100 ms, those two passes
    # stay near a small request's own quiet latency on a CPU, where a full pass can take several
    # times that; the bulk work pays with smaller passes while small requests are about
    # (docs/fair-share.md has the trade). A full pass that takes less than this is never cut.
    small_pass_ms: float = Field(
        100.0,
        ge=0.0,
        le=60_000,
        description="While small requests are served beside larger ones, cut each pass to about "
        "this long (the model's measured time per image; never below one image of each queued "
        "request); a small request is one that a cut pass holds whole. 0: passes always fill to "
        "max_batch_size.",
    )
    rate_limit: float = Field(
        0.0,
        ge=0.0,
        description="Images per second each API key (without keys: each client address) may have "
        "computed, on average (429 with Retry-After above it); 0: no limit. A key's rate= in the "
        "keys file overrides it.",
    )
    rate_limit_burst: int = Field(
        0,
        ge=0,
        description="Images a key may ask for at once beyond its rate (its token bucket's size); 0: "
        "max_images_per_request. A key's burst= overrides it.",
    )
    max_queued_images_per_key: int = Field(
        0,
        ge=0,
        description="Images one API key (without keys: one client address) may have waiting or "
        "computing at once, over all models (429 with Retry-After above it); 0: no cap but "
        "max_queue_images. A key's queued= overrides it.",
    )

    # --- limits -----------------------------------------------------------------------------
    request_timeout_s: float = Field(
        60.0,
        gt=0.0,
        description="End-to-end deadline of a request (504 after it); a client may only shorten it "
        "with timeout_ms.",
    )
    min_temperature: float = Field(0.0, ge=0.0, description="Smallest temperature accepted.")
    # Past ~1.5 the prior's tails give noise; 2 leaves room for experiments.
    max_temperature: float = Field(2.0, gt=0.0, le=100.0, description="Largest temperature accepted.")
    max_guidance: float = Field(
        20.0, ge=0.0, description="Largest classifier-free guidance weight (mean or variance)."
    )
    # Matches Triton and LitServe: 30 s to finish queued and in-flight work after SIGTERM.
    shutdown_timeout_s: float = Field(
        30.0, ge=0.0, description="Longest the service drains queued and in-flight work on SIGTERM."
    )
    # After the drain, the last answers are written and the connections closed; whatever still runs
    # then is cancelled (its client gets a 503 problem). Drain + this stays under compose's 40 s and
    # Kubernetes' 60 s grace periods.
    shutdown_close_s: float = Field(
        3.0, ge=0.1, le=30.0, description="Longest the last answers may take once the drain has ended."
    )

    # --- connections (checked before a request reaches the app) ----------------------------
    # 16 KiB is what h11 and Node accept; our requests need a few hundred bytes of headers.
    max_header_bytes: int = Field(
        16 * 2**10, ge=1024, description="Largest request line plus headers (431 above it)."
    )
    # A client on a slow link sends its headers in well under a second; slowloris clients that
    # trickle them are cut here (nginx allows 60 s, Apache's mod_reqtimeout 20-40 s).
    header_timeout_s: float = Field(
        10.0, gt=0.0, description="Longest a client may take to send its request headers (408)."
    )
    # The whole body, not the gap between reads: a client sending one byte a second never idles.
    # 30 s moves the largest body (16 MiB) at 4.5 Mbit/s. The request deadline also covers it.
    body_timeout_s: float = Field(
        30.0, gt=0.0, description="Longest a client may take to send its request body (408)."
    )
    # uvicorn's default. Also closes connections that never send a request.
    keepalive_timeout_s: float = Field(
        5.0, gt=0.0, description="Idle connections (between requests, or before the first) close after this."
    )
    # Below the usual limit of 1,024 open files, with room for the model files and the log.
    max_connections: int = Field(
        1000, ge=1, description="Open connections; requests on connections beyond it get 503 and a close."
    )
    # Eight of the largest bodies at once: request bodies and what is parsed from them stay a few
    # hundred MB at most beside the model, under the cpu overlay's 2 GiB limit.
    max_body_bytes_in_flight: int = Field(
        128 * 2**20,
        ge=1024,
        description="Request body bytes held at once, over all requests (503 with Retry-After above it).",
    )

    # --- parsing (cheap caps, checked before the expensive work) ----------------------------
    # The deepest valid body is 4 levels ({"latents": [{"shape": [...]}]}).
    max_json_depth: int = Field(32, ge=4, le=200, description="Deepest JSON nesting accepted (413).")
    # The largest valid bodies list one temperature or one latent tensor per latent layer (a few
    # hundred at most, each tensor 5 values); a 16 MiB list of floats would be 4 million.
    max_json_values: int = Field(
        4096, ge=64, description="Most JSON values (array items and object members) in one body (413)."
    )
    # PNG ancillary chunks / JPEG APPn and COM segments: colour profiles, EXIF, text. Pillow reads
    # each one in Python before the first pixel; a real photo has a handful of a few KB each.
    max_image_metadata_chunks: int = Field(
        64, ge=1, description="Most metadata chunks (PNG ancillary, JPEG APPn/COM) in an image (422)."
    )
    max_image_metadata_bytes: int = Field(
        2**20, ge=1024, description="Most bytes of metadata chunks in an image (422)."
    )
    # A 16 MiB PNG written in 8 KiB IDAT chunks (a common encoder default) has 2,048.
    max_image_chunks: int = Field(
        4096, ge=16, description="Most chunks (PNG) or segments (JPEG) of any kind in an image (422)."
    )

    # --- memory -----------------------------------------------------------------------------
    # The model's allocator setting keeps freed memory in the heap (faster passes); after a burst
    # of large bodies that memory is handed back to the OS once the service has been quiet this long.
    memory_trim_after_s: float = Field(
        1.0,
        ge=0.0,
        description="Return freed heap memory to the OS this long after the last large "
        "request body (0: never).",
    )

    # --- access -----------------------------------------------------------------------------
    api_keys: SecretStr = Field(
        SecretStr(""),
        description="Comma-separated API keys; when set (or api_keys_file), every endpoint but health, "
        "problem pages and the playground's static page needs one (Authorization: Bearer KEY or "
        "X-API-Key: KEY).",
    )
    api_keys_file: Path | None = Field(
        None,
        description="File of API keys, one a line (blank lines and # comments ignored), each "
        "optionally followed by its policy: name=NAME weight=W rate=IMAGES_PER_S burst=IMAGES "
        "queued=IMAGES priority=high.",
    )
    # Metrics tell who uses the service how much: behind the key once there are keys.
    metrics_access: Literal["open", "key", "closed"] = Field(
        "key", description="/metrics: open, key (needs an API key when keys are set) or closed (404)."
    )
    # The docs describe an open-source API and a browser cannot send a key with a page load; their
    # "Authorize" button takes the key for "Try it out".
    docs_access: Literal["open", "key", "closed"] = Field(
        "open", description="/docs, /redoc and /openapi.json: open, key or closed (404)."
    )
    cors_origins: str = Field(
        "",
        description="Comma-separated origins allowed to call the API from a browser (CORS); none when "
        "empty, * for any.",
    )

    @model_validator(mode="after")
    def _check_ranges(self) -> Settings:
        if self.min_temperature > self.max_temperature:
            raise ValueError(
                f"min_temperature {self.min_temperature} is above max_temperature {self.max_temperature}"
            )
        if self.max_images_per_request > self.max_queue_images:
            raise ValueError(
                f"max_images_per_request {self.max_images_per_request} is above max_queue_images "
                f"{self.max_queue_images}: such a request could never be queued"
            )
        if 0 < self.rate_limit_burst < self.max_images_per_request:
            raise ValueError(
                f"rate_limit_burst {self.rate_limit_burst} is below max_images_per_request "
                f"{self.max_images_per_request}: the largest requests could never be served"
            )
        if 0 < self.max_queued_images_per_key < self.max_images_per_request:
            raise ValueError(
                f"max_queued_images_per_key {self.max_queued_images_per_key} is below "
                f"max_images_per_request {self.max_images_per_request}: the largest requests could never "
                "be queued"
            )
        if self.max_body_bytes_in_flight < self.max_body_bytes:
            raise ValueError(
                f"max_body_bytes_in_flight {self.max_body_bytes_in_flight} is below max_body_bytes "
                f"{self.max_body_bytes}: the largest body could never be read"
            )
        return self

    def non_default(self) -> dict[str, Any]:
        """Settings that differ from their defaults (logged at start)."""
        defaults = {
            name: f.get_default(call_default_factory=True) for name, f in type(self).model_fields.items()
        }
        return {k: v for k, v in self.model_dump().items() if v != defaults[k]}


# --------------------------------------------------------------------------------------------
# Command line: one flag per field, generated so that the two can never disagree
# --------------------------------------------------------------------------------------------


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """An argparse parser with one flag per Settings field; unset flags are absent from the result."""
    if prog is None:
        prog = "vdvae-serve" if Path(sys.argv[0]).name == "vdvae-serve" else "python -m service"
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve every Very Deep VAE model folder under --model-dir over HTTP.",
        epilog=f"examples:\n  {prog}                                  # the bundled models on http://127.0.0.1:8000\n"
        f"  {prog} --model-dir my_models --port 9000\n"
        f"  VDVAE_MAX_BATCH_SIZE=64 {prog} --host 0.0.0.0 --cpu-threads 4",
        argument_default=argparse.SUPPRESS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    for name, field in Settings.model_fields.items():
        env = ENV_PREFIX + name.upper()
        help_text = f"{field.description} [env {env}; default {field.get_default(call_default_factory=True)}]"
        if field.annotation is bool:
            parser.add_argument(flag_name(name), action=argparse.BooleanOptionalAction, help=help_text)
        else:
            choices = getattr(field.annotation, "__args__", None) if _is_literal(field.annotation) else None
            parser.add_argument(flag_name(name), metavar=name.upper(), choices=choices, help=help_text)
    return parser


def _is_literal(annotation: Any) -> bool:
    return getattr(annotation, "__origin__", None) is Literal


def settings_from_cli(argv: Sequence[str] | None = None, prog: str | None = None) -> Settings:
    """Settings from environment variables overridden by the flags in `argv`; exits 2 on bad values."""
    parser = build_parser(prog)
    flags = vars(parser.parse_args(argv))
    try:
        return Settings(**flags)
    except ValidationError as e:
        lines = [
            f"{flag_name(str(err['loc'][0])) if err['loc'] else 'settings'}: {err['msg']}"
            for err in e.errors()
        ]
        parser.error("invalid settings:\n  " + "\n  ".join(lines))
        raise  # unreachable: parser.error exits


def log_settings(settings: Settings, logger: logging.Logger) -> None:
    """Log the settings that differ from their defaults, so a run's log says how it was configured."""
    changed = settings.non_default()
    if changed:
        logger.info("non-default settings: %s", ", ".join(f"{k}={v}" for k, v in sorted(changed.items())))
    else:
        logger.info("all settings at their defaults")
