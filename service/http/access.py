"""Who may call the service: optional API keys, and CORS for browsers.

Keys come from VDVAE_API_KEYS (comma-separated) and/or the file named by api_keys_file (one a line).
With none configured the service is open, as bound to 127.0.0.1 by default: the bind address is the
first line of defence. With keys, every request needs one, as `Authorization: Bearer KEY` or
`X-API-Key: KEY`, except the paths anyone may read: health checks (for probes), the problem pages,
and the playground's static page (its own API calls carry the key the user types). /metrics and the
docs follow metrics_access and docs_access.

A key is compared in constant time against every configured key (SHA-256 digests, so neither a
key's length nor which key matched shows in the timing).
"""

from __future__ import annotations

import hashlib
import hmac
import logging

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import Unauthorized
from ..metrics import Metrics
from ..settings import Settings
from .middleware import send_problem

log = logging.getLogger("service")

# Readable without a key (GET and HEAD only).
OPEN_PATHS = frozenset(
    {
        "/health/live",
        "/health/ready",
        "/v2/health/live",
        "/v2/health/ready",
        "/",
        "/playground",
        "/favicon.ico",
    }
)
OPEN_PREFIXES = ("/problems/", "/playground/", "/static/")
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})
DOCS_ASSETS = "/docs/assets"  # Swagger UI's and ReDoc's files, served by the service
# Keys shorter than this can be guessed; they work, with a warning at start.
MIN_KEY_LENGTH = 16


class KeyFileError(ValueError):
    """The api_keys_file cannot be read."""


def load_keys(settings: Settings) -> list[str]:
    """The configured API keys: api_keys, then the lines of api_keys_file (blank and # lines skipped)."""
    keys = [k.strip() for k in settings.api_keys.get_secret_value().split(",") if k.strip()]
    if settings.api_keys_file is not None:
        try:
            text = settings.api_keys_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise KeyFileError(f"cannot read api_keys_file {settings.api_keys_file}: {e}") from None
        keys += [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]
        if not keys:
            raise KeyFileError(f"api_keys_file {settings.api_keys_file} holds no key")
    short = sum(len(k) < MIN_KEY_LENGTH for k in keys)
    if short:
        log.warning("%d API key(s) shorter than %d characters: easy to guess", short, MIN_KEY_LENGTH)
    return keys


class KeyRing:
    """SHA-256 digests of the accepted keys."""

    def __init__(self, keys: list[str]) -> None:
        self._digests = [hashlib.sha256(k.encode()).digest() for k in keys]

    def __len__(self) -> int:
        return len(self._digests)

    def accepts(self, key: bytes) -> bool:
        digest = hashlib.sha256(key).digest()
        match = False
        for known in self._digests:  # no early exit: every request takes the same time
            match |= hmac.compare_digest(digest, known)
        return match


def presented_key(scope: Scope) -> bytes | None:
    """The key of `Authorization: Bearer KEY` or `X-API-Key: KEY`, if any."""
    for name, value in scope["headers"]:
        if name == b"x-api-key":
            return value.strip()
        if name == b"authorization":
            scheme, _, key = value.strip().partition(b" ")
            if scheme.lower() == b"bearer":
                return key.strip()
    return None


class AccessMiddleware:
    """401 problem (with WWW-Authenticate) for requests without a valid key, before the body is read."""

    def __init__(self, app: ASGIApp, keys: KeyRing, settings: Settings, metrics: Metrics) -> None:
        self.app = app
        self.keys = keys
        self.metrics = metrics
        self.open_paths = OPEN_PATHS
        self.open_prefixes = OPEN_PREFIXES
        if settings.docs_access == "open":
            self.open_paths |= DOCS_PATHS
            self.open_prefixes += (DOCS_ASSETS + "/",)
        if settings.metrics_access == "open":
            self.open_paths |= {"/metrics"}

    def is_open(self, scope: Scope) -> bool:
        if scope["method"] not in ("GET", "HEAD"):
            return False
        path = scope["path"]
        return path in self.open_paths or path.startswith(self.open_prefixes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.is_open(scope):
            await self.app(scope, receive, send)
            return
        key = presented_key(scope)
        if key and self.keys.accepts(key):
            await self.app(scope, receive, send)
            return
        detail = (
            "this service needs an API key: send Authorization: Bearer KEY or X-API-Key: KEY"
            if key is None
            else "the API key is not valid"
        )
        error = Unauthorized(detail, headers={"WWW-Authenticate": 'Bearer realm="vdvae-serve"'})
        await send_problem(send, scope, error, self.metrics)


def cors_origins(settings: Settings) -> list[str]:
    return [o.strip() for o in settings.cors_origins.split(",") if o.strip()]


def add_access_control(app: FastAPI, settings: Settings, metrics: Metrics) -> KeyRing:
    """Install the key check and, when origins are configured, CORS (outside it: preflights carry no
    key). Returns the key ring (empty: the service is open)."""
    keys = KeyRing(load_keys(settings))
    if keys:
        app.add_middleware(AccessMiddleware, keys=keys, settings=settings, metrics=metrics)
        log.info("API keys required (%d configured)", len(keys))
    origins = cors_origins(settings)
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "Accept", "X-Request-ID"],
            expose_headers=[
                "X-Request-ID",
                "X-Seed",
                "X-Seeds",
                "X-Labels",
                "X-Grid-Columns",
                "X-Bits",
                "Retry-After",
            ],
            max_age=600,
        )
    return keys
