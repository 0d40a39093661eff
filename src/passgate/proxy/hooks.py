"""The seams between the relay and the features built around it.

The relay knows these protocols only; authentication, limits, accounting and
observability are objects that implement them (like mitmproxy addons), wired
together by the app factory. A failing observer is logged and the relay goes on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from passgate.exchange import Exchange, Usage
from passgate.principal import Principal


class Authenticator(Protocol):
    async def authenticate(self, token: str | None, ex: Exchange) -> Principal:
        """Return the caller for a bearer token, or raise ``GatewayError`` (401)."""
        ...


class Guard(Protocol):
    async def admit(self, ex: Exchange) -> None:
        """Refuse the call by raising ``GatewayError``; runs before any upstream connection."""
        ...


class UsageReader(Protocol):
    def feed(self, chunk: bytes) -> None:
        """See a relayed chunk (a copy of the bytes; never alters them)."""
        ...

    def result(self) -> tuple[Usage | None, str | None]:
        """Usage seen so far and the model the response named."""
        ...


class Metering(Protocol):
    def reader(
        self, ex: Exchange, content_type: bytes, content_encoding: bytes | None
    ) -> UsageReader | None:
        """A usage reader for this response (its body as relayed, still in its
        ``Content-Encoding``), or None when the route has no usage."""
        ...

    def settle(self, ex: Exchange) -> None:
        """Set ``ex.cost`` and ``ex.priced`` from ``ex.model`` and ``ex.usage``."""
        ...


class Observer(Protocol):
    async def finished(self, ex: Exchange) -> None:
        """Called once per call after the last byte; must not block (enqueue, don't write)."""
        ...


@dataclass(slots=True)
class Pipeline:
    """Everything the relay calls around a forwarded request."""

    authenticator: Authenticator
    guards: Sequence[Guard] = ()
    metering: Metering | None = None
    observers: Sequence[Observer] = field(default_factory=tuple)
