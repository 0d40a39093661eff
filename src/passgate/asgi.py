"""What raw ASGI middleware is built from: HTTP requests only, and a response's start on
its way out."""

from __future__ import annotations

from collections.abc import Callable

from passgate.types import ASGIApp, Message, Receive, Scope, Send

# The scope extension the server's protocol offers to end a response short: its ``close``
# closes the client's connection (``runtime.transport``).
CLOSE_CONNECTION = "passgate.close_connection"


class HttpMiddleware:
    """Raw ASGI middleware over ``app`` that sees HTTP requests only (``http``); anything
    else (lifespan, websockets) goes to ``app`` as it came."""

    def __init__(self, app: ASGIApp) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        await self.http(scope, receive, send)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Handle one HTTP request (by calling ``self._app`` in the end)."""
        raise NotImplementedError


def on_response_start(send: Send, edit: Callable[[Message], Message]) -> Send:
    """``send``, but an ``http.response.start`` message goes out as ``edit`` returns it
    (``edit`` may also just note that the response started, and return the message)."""

    async def send_edited(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = edit(message)
        await send(message)

    return send_edited
