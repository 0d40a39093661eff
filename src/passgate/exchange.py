"""One pass-through call, as every stage of the pipeline sees it.

The relay fills an ``Exchange`` as the call proceeds; guards read it before the
upstream is contacted, observers read it once the call has ended. It carries no
secret: the principal holds the key's hash id, never the key.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from passgate.principal import Principal


def new_call_id() -> str:
    """A fresh 32-hex-digit id for one call: nanoseconds since the epoch, then 64 random bits."""
    # Time first, so ids sort by creation: the spend_logs key (and request_id) indexes
    # grow at their end instead of dirtying a random page per row, whose cost per stored
    # row on SQLite is large and grows with the table (docs/performance.md).
    # Unique, not secret: the Mersenne Twister (reseeded after fork) costs no system
    # call, where uuid4 reads the OS's random source on every request.
    # 16 bytes as hex: cheaper than an f-string, where each ``:016x`` is a format call.
    return ((time.time_ns() << 64) | random.getrandbits(64)).to_bytes(16).hex()


T = TypeVar("T")


class Slot(Generic[T]):
    """A typed place for one feature's state on a call (the limits' ticket, say), owned by
    that feature: only code holding the ``Slot`` object reads or writes it."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name  # for reading a call's state while debugging

    def get(self, ex: Exchange) -> T | None:
        """The state held for this call, if any."""
        slots = ex.slots
        return None if slots is None else slots.get(self)

    def put(self, ex: Exchange, value: T) -> None:
        """Hold ``value`` for this call."""
        if ex.slots is None:
            ex.slots = {self: value}
        else:
            ex.slots[self] = value

    def take(self, ex: Exchange) -> T | None:
        """The state held for this call, removed from it."""
        slots = ex.slots
        return None if slots is None else slots.pop(self, None)


@dataclass(slots=True)
class Usage:
    """What the upstream said a call consumed; a field is None when not reported."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    total_tokens: int | None = None
    pages: int | None = None
    annotated_pages: int | None = None
    audio_seconds: float | None = None
    characters: int | None = None
    # input tokens written to a prompt cache (priced at their own rate); part of prompt_tokens
    cache_write_tokens: int | None = None
    # output tokens spent on reasoning ("thinking"); part of completion_tokens
    reasoning_tokens: int | None = None
    search_units: int | None = None  # rerank searches, as the provider bills them
    images: int | None = None  # images generated
    # of cache_write_tokens, those written for an hour (priced above the default lifetime's)
    cache_write_1h_tokens: int | None = None

    def tokens(self) -> int:
        """Tokens to count against a token rate limit."""
        if self.total_tokens is not None:
            return self.total_tokens
        return (self.prompt_tokens or 0) + (self.completion_tokens or 0)


@dataclass(frozen=True, slots=True)
class Metered:
    """How the usage of one metered call is read and priced (its provider decides)."""

    kind: str = "tokens"  # the provider's own label, passed back to its usage functions
    discount: float = 1.0  # multiplier on the cost (a batch API at half price: 0.5)
    free: bool = False  # metered but never charged (token counting): cost 0.0
    fixed: Usage | None = None  # usage known from the request alone; the body is not read
    json_lines: bool = False  # the answer is JSON lines whatever its content type says


@dataclass(slots=True)
class RequestInfo:
    """Fields read from the request body (a copy; the body itself is never changed)."""

    model: str | None = None
    stream: bool = False
    max_tokens: int | None = None
    input_chars: int | None = None
    annotations: bool = False
    body: Any = None  # the parsed JSON body, when it was small enough to parse


@dataclass(slots=True)
class Exchange:
    """State of one pass-through call from arrival to the last byte."""

    request_id: str  # the client's x-request-id, else the same as call_id
    method: str
    route: str  # the gateway path, e.g. /mistral/v1/chat/completions
    upstream_path: str  # the path sent upstream, base path included
    provider: str
    start_time: float  # wall clock, seconds since the epoch
    start: float  # perf_counter at arrival
    api_path: str = ""  # the provider API's own path, e.g. /v1/chat/completions
    query: bytes = b""  # the query string sent upstream (a caller's key taken out of it)
    principal: Principal | None = None
    end_user: str | None = None
    tags: list[str] = field(default_factory=list)
    info: RequestInfo = field(default_factory=RequestInfo)
    model: str | None = None  # request model, else the one the response named
    stream: bool = False
    status: int = 0
    first_byte: float | None = None  # perf_counter of the upstream's first byte
    end: float | None = None  # perf_counter when the last byte was relayed
    bytes_in: int = 0
    bytes_out: int = 0
    usage: Usage | None = None
    cost: float | None = None
    priced: bool = True  # False when the model has no price in the catalog
    interrupted: bool = False
    error: str | None = None
    upstream_request_id: str | None = None
    deployment: str | None = None  # the named upstream deployment that answered
    attempts: int = 0  # upstream deployments tried (more than one after a failover)
    metered: Metered | None = None  # how the call's usage is read; None: it reports none
    # per-call state of the features, each under a ``Slot`` the feature owns; None until one
    # stores something (most calls carry none)
    slots: dict[Slot[Any], Any] | None = None
    settled: bool = False  # cost has been computed by the metering (which sets it)
    # The gateway's own id of this call: unique even when clients reuse x-request-id,
    # so a spend row can never be mistaken for another call's (and dropped as a duplicate).
    call_id: str = field(default_factory=new_call_id)

    @property
    def latency_ms(self) -> float | None:
        """Milliseconds from arrival to the last byte."""
        return None if self.end is None else (self.end - self.start) * 1000.0

    @property
    def ttfb_ms(self) -> float | None:
        """Milliseconds from arrival to the upstream's first byte."""
        return None if self.first_byte is None else (self.first_byte - self.start) * 1000.0
