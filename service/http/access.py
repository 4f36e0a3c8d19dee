"""Who may call the service: optional API keys, and CORS for browsers.

Keys come from VDVAE_API_KEYS (comma-separated) and/or the file named by api_keys_file (one a line,
optionally followed by the key's policy: callers.py). With none configured the service is open, as
bound to 127.0.0.1 by default: the bind address is the first line of defence. With keys, every
request needs one, as `Authorization: Bearer KEY` or `X-API-Key: KEY`, except the paths anyone may
read: health checks (for probes), the problem pages, and the playground's static page (its own API
calls carry the key the user types). /metrics and the docs follow metrics_access and docs_access.

A key is compared in constant time against every configured key (SHA-256 digests, so neither a
key's length nor which key matched shows in the timing). The caller of a valid key (its policy) is
left in the request's state for the scheduler.
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
from .callers import CALLER_STATE, Caller, KeyLineError, default_policy, key_caller, parse_key_line
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


def load_keys(settings: Settings) -> dict[str, Caller]:
    """The configured API keys and their callers: api_keys (the settings' policy), then the lines of
    api_keys_file (blank and # lines skipped), each with its own options over that policy."""
    defaults = default_policy(settings)
    keys = {
        k.strip(): key_caller(k.strip(), {}, defaults, settings)
        for k in settings.api_keys.get_secret_value().split(",")
        if k.strip()
    }
    if settings.api_keys_file is not None:
        try:
            text = settings.api_keys_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise KeyFileError(f"cannot read api_keys_file {settings.api_keys_file}: {e}") from None
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip() or line.startswith("#"):
                continue
            try:
                key, options = parse_key_line(line)
                keys[key] = key_caller(key, options, defaults, settings)
            except KeyLineError as e:  # the message never shows the key
                raise KeyFileError(f"api_keys_file {settings.api_keys_file}, line {number}: {e}") from None
        if not keys:
            raise KeyFileError(f"api_keys_file {settings.api_keys_file} holds no key")
    names = [c.label for c in keys.values()]
    if len(set(names)) < len(names):
        raise KeyFileError("two API keys have the same name= (each key's metrics need their own)")
    short = sum(len(k) < MIN_KEY_LENGTH for k in keys)
    if short:
        log.warning("%d API key(s) shorter than %d characters: easy to guess", short, MIN_KEY_LENGTH)
    return keys


class KeyRing:
    """SHA-256 digests of the accepted keys, each with its caller."""

    def __init__(self, keys: dict[str, Caller]) -> None:
        self._digests = [(hashlib.sha256(k.encode()).digest(), caller) for k, caller in keys.items()]

    def __len__(self) -> int:
        return len(self._digests)

    def caller(self, key: bytes) -> Caller | None:
        """The caller of `key`, None when it is not a configured key."""
        digest = hashlib.sha256(key).digest()
        found = None
        for known, caller in self._digests:  # no early exit: every request takes the same time
            if hmac.compare_digest(digest, known):
                found = caller
        return found


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
        caller = self.keys.caller(key) if key else None
        if caller is not None:
            scope.setdefault("state", {})[CALLER_STATE] = caller
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
            allow_headers=[
                "Authorization",
                "X-API-Key",
                "Content-Type",
                "Accept",
                "X-Request-ID",
                "X-Priority",
            ],
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
