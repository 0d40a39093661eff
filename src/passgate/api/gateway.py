"""The top-level ASGI app: routes each provider's prefix to its relay, the rest to the admin app.

It also sheds load: past ``max_calls_in_flight`` pass-through calls in this worker, a
new one is answered at once with ``503 overloaded`` (and ``Retry-After``) instead of
queueing behind the others on the event loop, so the calls already admitted, and the
health, metrics and admin routes (never capped), keep their latency.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from passgate.api.request_id import RequestIdHeader
from passgate.errors import GatewayError, send_error
from passgate.request_id import request_id_for
from passgate.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("passgate")


class Component(Protocol):
    """Something with a life: opened at start-up, closed (and flushed) at shutdown."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


OVERLOADED = GatewayError(
    503,
    "This gateway worker is at its limit of calls in flight; retry shortly.",
    "service_unavailable",
    "overloaded",
    ((b"retry-after", b"1"),),
)


def _no_count() -> None:
    return None


class Gateway:
    """Dispatches on the raw path, so an encoded prefix can never reach the relay or skip it.

    ``server_state`` is published in the ASGI lifespan state at start-up, where the
    server's protocol finds it (``passgate.proxy.server_limits``).
    """

    def __init__(
        self,
        relays: Mapping[bytes, ASGIApp],
        admin: ASGIApp,
        components: Sequence[Component],
        *,
        max_calls_in_flight: int = 0,
        on_overload: Callable[[], None] = _no_count,
        server_state: Mapping[str, Any] | None = None,
    ) -> None:
        self._relays = {prefix + b"/": app for prefix, app in relays.items()}
        self._admin = admin
        self._admin_with_id = RequestIdHeader(admin)
        self._components = tuple(components)
        self._max_in_flight = max_calls_in_flight or sys.maxsize
        self._in_flight = 0
        self._on_overload = on_overload
        self._server_state = dict(server_state or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw: bytes = scope.get("raw_path") or scope["path"].encode()
            for prefix, relay in self._relays.items():
                if raw.startswith(prefix):
                    if self._in_flight >= self._max_in_flight:
                        await self._shed(scope, send)
                        return
                    self._in_flight += 1
                    try:
                        await relay(scope, receive, send)
                    finally:
                        self._in_flight -= 1
                    return
        elif scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        await self._admin_with_id(scope, receive, send)

    async def _shed(self, scope: Scope, send: Send) -> None:
        self._on_overload()
        await send_error(send, OVERLOADED, request_id_for(scope))

    @property
    def admin(self) -> ASGIApp:
        """The app serving everything that is not a pass-through route."""
        return self._admin

    async def start(self) -> None:
        """Start every component in order (also used by tests without a server)."""
        for component in self._components:
            await component.start()

    async def stop(self) -> None:
        """Stop components in reverse order; one failing does not keep the others open."""
        for component in reversed(self._components):
            try:
                await component.stop()
            except Exception:
                log.exception("stopping %s failed", type(component).__name__)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                state = scope.get("state")
                if state is not None:
                    state.update(self._server_state)
                try:
                    await self.start()
                except Exception as exc:
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return
