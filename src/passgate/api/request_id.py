"""``x-request-id`` on every response of the admin app (health, metrics, admin, errors, 404s).

The pass-through relay sets its own; this wraps the rest, with the same rule
(``passgate.request_id``): the caller's id when it is sane, else a fresh one.
"""

from __future__ import annotations

from passgate.request_id import HEADER, SCOPE_KEY, response_request_id
from passgate.types import ASGIApp, Message, Receive, Scope, Send


class RequestIdHeader:
    """Raw ASGI middleware adding ``x-request-id`` to each HTTP response of ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        sent = None
        for name, value in scope["headers"]:
            if name == HEADER:
                sent = value
                break
        request_id = response_request_id(sent)
        scope[SCOPE_KEY] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(n, v) for n, v in message.get("headers", ()) if n.lower() != HEADER]
                headers.append((HEADER, request_id))
                message = {**message, "headers": headers}
            await send(message)

        await self._app(scope, receive, send_with_id)
