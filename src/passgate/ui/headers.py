"""Security headers on every UI response: a CSP without inline scripts, no framing, no
caching (pages show keys' settings and a new key's plaintext)."""

from __future__ import annotations

from starlette.types import Message, Receive, Scope, Send

from passgate.asgi import HttpMiddleware, on_response_start

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


class SecurityHeaders(HttpMiddleware):
    """ASGI middleware adding ``_HEADERS`` to every response of the app it wraps."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request, its response with the headers added."""
        await self._app(scope, receive, on_response_start(send, _with_headers))


def _with_headers(message: Message) -> Message:
    names = {name.lower() for name, _ in message.get("headers", [])}
    extra = [(n, v) for n, v in _HEADERS if n not in names]
    message["headers"] = [*message.get("headers", []), *extra]
    return message
