"""The top-level ASGI app: routes ``/mistral/...`` to the relay, the rest to the admin app."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from passgate.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("passgate")


class Component(Protocol):
    """Something with a life: opened at start-up, closed (and flushed) at shutdown."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class Gateway:
    """Dispatches on the raw path, so an encoded prefix can never reach the relay or skip it."""

    def __init__(
        self,
        relays: dict[bytes, ASGIApp],
        admin: ASGIApp,
        components: Sequence[Component],
    ) -> None:
        self._relays = {prefix + b"/": app for prefix, app in relays.items()}
        self._admin = admin
        self._components = tuple(components)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            raw: bytes = scope.get("raw_path") or scope["path"].encode()
            for prefix, relay in self._relays.items():
                if raw.startswith(prefix):
                    await relay(scope, receive, send)
                    return
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        await self._admin(scope, receive, send)

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

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
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
