"""Who a model request is from, what it may ask for, and at which priority.

A caller is an API key, or, on a service without keys, a client address. Each has a policy: a name
for the metrics (never the key itself: a key's `name=`, else a prefix of its SHA-256), a weight in
the fair share of the model (batching/fairness.py), an image rate with a burst (a token bucket) and
a cap on its images queued at once (batching/quotas.py), and the highest priority it may ask for.
The settings give every caller's defaults; a line of the keys file may override them for its key:

    KEY name=NAME weight=W rate=IMAGES_PER_S burst=IMAGES queued=IMAGES priority=high

A request's priority is its `X-Priority` header (low, normal or high; normal when absent): high
only for keys whose line says `priority=high` and, having no keys to tell callers apart, on a
service without keys.
"""

from __future__ import annotations

import enum
import hashlib
import math
import re
from dataclasses import dataclass, replace

from starlette.types import Scope

from ..errors import InvalidInput, PriorityNotAllowed
from ..settings import Settings

PRIORITY_HEADER = "X-Priority"
# A key's name is a metric label value: short and plain.
NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
# What a service without keys calls every caller in its metrics (addresses are unbounded).
OPEN_LABEL = "open"


class Priority(enum.IntEnum):
    """A request's priority: passes take the higher ones' images first (fairly within each)."""

    LOW = 0
    NORMAL = 1
    HIGH = 2

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Caller:
    """A caller and its policy. `id` is what the fair share and the limits count by."""

    id: str
    label: str  # its name in the metrics
    weight: float = 1.0  # its share of the model against other callers at the same priority
    rate: float = 0.0  # images per second it may have computed, on average (0: no limit)
    burst: int = 1  # images it may ask for at once above the rate (the bucket's size)
    max_queued: int = 0  # images it may have waiting or computing at once (0: no cap of its own)
    highest: Priority = Priority.NORMAL  # the highest priority it may ask for


# The caller of a request that came in without an address (tests, an in-process transport).
UNKNOWN = Caller("address:unknown", OPEN_LABEL, highest=Priority.HIGH)


class KeyLineError(ValueError):
    """A line of the keys file that cannot be read: which line, and why."""


def default_policy(settings: Settings) -> Caller:
    """Every caller's policy before its key's line overrides it (an id and label are given later)."""
    return Caller(
        id="",
        label="",
        rate=settings.rate_limit,
        burst=settings.rate_limit_burst or settings.max_images_per_request,
        max_queued=settings.max_queued_images_per_key,
    )


def key_label(key: str) -> str:
    """A key's name in the metrics when its line gives none: enough of its hash to tell keys apart,
    nothing that helps to guess it."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()[:12]


def key_caller(key: str, options: dict[str, str], defaults: Caller, settings: Settings) -> Caller:
    """The caller of `key`, its line's `options` (name=..., weight=...) over the defaults."""
    label = options.pop("name", None) or key_label(key)
    if not NAME.match(label):
        raise KeyLineError(f"name={label!r}: use 1-64 letters, digits or _.:-")
    caller = replace(defaults, id="key:" + label, label=label)
    try:
        if "weight" in options:
            caller = replace(caller, weight=float(options.pop("weight")))
        if "rate" in options:
            caller = replace(caller, rate=float(options.pop("rate")))
        if "burst" in options:
            caller = replace(caller, burst=int(options.pop("burst")))
        if "queued" in options:
            caller = replace(caller, max_queued=int(options.pop("queued")))
    except ValueError as e:
        raise KeyLineError(f"not a number: {e}") from None
    if "priority" in options:
        value = options.pop("priority")
        try:
            caller = replace(caller, highest=Priority[value.upper()])
        except KeyError:
            raise KeyLineError(f"priority={value!r}: low, normal or high") from None
    if options:
        raise KeyLineError(
            f"unknown option(s) {', '.join(sorted(options))}: name, weight, rate, burst, queued, priority"
        )
    if not caller.weight > 0:
        raise KeyLineError(f"weight={caller.weight:g}: a weight must be above 0")
    if caller.rate < 0 or caller.max_queued < 0:
        raise KeyLineError("rate and queued are 0 (no limit) or more")
    for option, value in (("burst", caller.burst), ("queued", caller.max_queued or math.inf)):
        if value < settings.max_images_per_request:
            raise KeyLineError(
                f"{option}={value} is below max_images_per_request {settings.max_images_per_request}: "
                "its largest requests could never be served"
            )
    return caller


def parse_key_line(line: str) -> tuple[str, dict[str, str]]:
    """`KEY opt=value ...` -> (KEY, {opt: value})."""
    key, *rest = line.split()
    options: dict[str, str] = {}
    for word in rest:
        name, sep, value = word.partition("=")
        if not sep or not value:  # never quoted: it may be part of a key holding a space
            raise KeyLineError("expected option=value after the key (a key holds no spaces)")
        if name in options:
            raise KeyLineError(f"{name} given twice")
        options[name] = value
    return key, options


# Where the access check leaves the caller of a valid key (the request's scope["state"]).
CALLER_STATE = "caller"


def caller_of(scope: Scope, defaults: Caller) -> Caller:
    """The request's caller: its key's, as the access check found it, or on a service without keys
    its client address's, under the `defaults` (default_policy)."""
    found = scope.get("state", {}).get(CALLER_STATE)
    if found is not None:
        return found
    client = scope.get("client")
    where = f"address:{client[0]}" if client else UNKNOWN.id
    return replace(defaults, id=where, label=OPEN_LABEL, highest=Priority.HIGH)


def request_priority(scope: Scope, caller: Caller) -> Priority:
    """The priority the request asks for (X-Priority), within what its caller may ask for. The value
    is one of the documented enum's, exactly: an empty or other value is refused, not taken as
    normal, so a misspelt header never silently loses its priority."""
    value = None
    for name, raw in scope["headers"]:
        if name == b"x-priority":
            value = raw.decode("latin-1").strip()
            break
    if value is None:
        return Priority.NORMAL
    try:
        priority = Priority[value.upper()]
        if priority.label != value:
            raise KeyError(value)
    except KeyError:
        raise InvalidInput(
            f"{PRIORITY_HEADER}: {value!r} is not a priority: low, normal or high",
            errors=[{"loc": ["header", "x-priority"], "msg": "low, normal or high", "type": "enum"}],
        ) from None
    if priority > caller.highest:
        raise PriorityNotAllowed(
            f"{PRIORITY_HEADER}: {priority.label} is not allowed for this API key (at most "
            f"{caller.highest.label}); ask the operator, or send normal or low"
        )
    return priority
