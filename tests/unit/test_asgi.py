"""The pieces raw ASGI middleware is built from."""

from __future__ import annotations

from passgate.asgi import HttpMiddleware, on_response_start
from passgate.types import Message, Receive, Scope, Send


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


class _Tagging(HttpMiddleware):
    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["tagged"] = True
        await self._app(scope, receive, send)


async def test_only_http_requests_reach_the_middleware() -> None:
    seen: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)

    async def send(message: Message) -> None:
        pass

    middleware = _Tagging(app)
    await middleware({"type": "lifespan"}, _receive, send)
    await middleware({"type": "http"}, _receive, send)
    assert seen == [{"type": "lifespan"}, {"type": "http", "tagged": True}]


async def test_only_the_response_start_is_edited() -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    def add_header(message: Message) -> Message:
        return {**message, "headers": [*message["headers"], (b"x-added", b"1")]}

    edited = on_response_start(send, add_header)
    await edited({"type": "http.response.start", "status": 200, "headers": []})
    await edited({"type": "http.response.body", "body": b"ok", "headers": []})
    assert sent == [
        {"type": "http.response.start", "status": 200, "headers": [(b"x-added", b"1")]},
        {"type": "http.response.body", "body": b"ok", "headers": []},
    ]
