"""``x-request-id`` on every response of the admin app (health, metrics, admin, errors, 404s).

The pass-through relay sets its own; this wraps the rest, with the same rule
(``passgate.request_id``): the caller's id when it is sane, else a fresh one.
"""

from __future__ import annotations

from passgate.asgi import HttpMiddleware, on_response_start
from passgate.request_id import HEADER, SCOPE_KEY, request_id_for
from passgate.types import Message, Receive, Scope, Send


class RequestIdHeader(HttpMiddleware):
    """Raw ASGI middleware adding ``x-request-id`` to each HTTP response of ``app``."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request, its id in its scope and on its response."""
        request_id = request_id_for(scope)
        scope[SCOPE_KEY] = request_id

        def with_id(message: Message) -> Message:
            headers = [(n, v) for n, v in message.get("headers", ()) if n.lower() != HEADER]
            headers.append((HEADER, request_id))
            return {**message, "headers": headers}

        await self._app(scope, receive, on_response_start(send, with_id))
