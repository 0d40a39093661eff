"""The seams between the relay and the features built around it.

The relay knows these protocols only; authentication, limits, accounting and
observability are objects that implement them (like mitmproxy addons), wired
together by the app factory. A feature is registered once (``Pipeline.of``) and takes
part in each phase whose method it has:

1. ``admit`` (a ``Guard``): before any upstream connection, in registration order; raising
   ``GatewayError`` refuses the call.
2. The call is forwarded and its answer relayed; the metering settles its cost.
3. ``cleanup`` (a ``Cleanup``): always, for every call, refused, failed or interrupted ones
   included, before the observers: what must never be skipped (releasing a reservation or a
   parallel slot). Each is isolated: one failing is logged and the others still run.
4. ``finished`` (an ``Observer``): best effort, after the cleanups; must not block (enqueue,
   don't write). A failing observer is logged and the relay goes on.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from passgate.exchange import Exchange, Usage
from passgate.principal import Principal


class Authenticator(Protocol):
    async def authenticate(self, token: str | None, ex: Exchange) -> Principal:
        """Return the caller for a gateway key, or raise ``GatewayError`` (401)."""
        ...


@runtime_checkable
class Guard(Protocol):
    async def admit(self, ex: Exchange) -> None:
        """Refuse the call by raising ``GatewayError``; runs before any upstream connection."""
        ...


@runtime_checkable
class Cleanup(Protocol):
    async def cleanup(self, ex: Exchange) -> None:
        """Release what ``admit`` took for this call; runs for every call, always."""
        ...


@runtime_checkable
class Observer(Protocol):
    async def finished(self, ex: Exchange) -> None:
        """Called once per call after the last byte; must not block (enqueue, don't write)."""
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
        """Set ``ex.cost`` and ``ex.priced`` from ``ex.model`` and ``ex.usage``, and mark the
        call settled (``ex.settled``); settling again changes nothing."""
        ...


@dataclass(slots=True)
class Pipeline:
    """Everything the relay calls around a forwarded request, phase by phase."""

    authenticator: Authenticator
    guards: Sequence[Guard] = ()
    metering: Metering | None = None
    cleanups: Sequence[Cleanup] = ()
    observers: Sequence[Observer] = field(default_factory=tuple)

    @classmethod
    def of(
        cls,
        authenticator: Authenticator,
        features: Iterable[object],
        metering: Metering | None = None,
    ) -> Pipeline:
        """The pipeline of ``features``, each registered once and taking part in the phases
        whose method it has (``admit``, ``cleanup``, ``finished``), in the order given."""
        listed = tuple(features)
        if len({id(f) for f in listed}) != len(listed):
            raise ValueError("a feature is registered twice: each takes part once per phase")
        pipeline = cls(
            authenticator,
            guards=tuple(f for f in listed if isinstance(f, Guard)),
            metering=metering,
            cleanups=tuple(f for f in listed if isinstance(f, Cleanup)),
            observers=tuple(f for f in listed if isinstance(f, Observer)),
        )
        idle = [type(f).__name__ for f in listed if not isinstance(f, Guard | Cleanup | Observer)]
        if idle:
            raise TypeError(f"{', '.join(idle)} implement no hook of the pipeline")
        return pipeline
