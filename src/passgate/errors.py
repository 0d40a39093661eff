"""The gateway's own errors and their JSON shape.

Every error the gateway itself produces is a ``GatewayError``; the relay and the
admin API turn it into ``{"error": {"message", "type", "code"}}``. Upstream
errors are never wrapped: they are relayed as they are.
"""

from __future__ import annotations

import orjson

from passgate.types import Send


class GatewayError(Exception):
    """An error answered by the gateway itself, never by the upstream."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str,
        code: str,
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.headers = headers

    def body(self) -> bytes:
        """The JSON body clients receive."""
        return orjson.dumps(
            {"error": {"message": self.message, "type": self.type, "code": self.code}}
        )


def bad_request(message: str, code: str = "bad_request") -> GatewayError:
    return GatewayError(400, message, "invalid_request_error", code)


def unauthorized(message: str, code: str = "invalid_api_key") -> GatewayError:
    return GatewayError(401, message, "authentication_error", code)


def forbidden(message: str, code: str = "forbidden") -> GatewayError:
    return GatewayError(403, message, "permission_error", code)


def not_found(message: str, code: str = "not_found") -> GatewayError:
    return GatewayError(404, message, "invalid_request_error", code)


def too_large(message: str) -> GatewayError:
    return GatewayError(413, message, "invalid_request_error", "body_too_large")


def too_many(
    message: str, code: str, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> GatewayError:
    return GatewayError(429, message, "rate_limit_error", code, headers)


def bad_gateway(message: str) -> GatewayError:
    return GatewayError(502, message, "upstream_error", "upstream_unreachable")


def upstream_interrupted(message: str) -> GatewayError:
    return GatewayError(502, message, "upstream_error", "upstream_interrupted")


def unavailable(message: str, code: str = "service_unavailable") -> GatewayError:
    return GatewayError(503, message, "service_unavailable", code)


def gateway_timeout(message: str) -> GatewayError:
    return GatewayError(504, message, "upstream_error", "upstream_timeout")


def error_headers(
    err: GatewayError, body: bytes, request_id: bytes | None = None
) -> list[tuple[bytes, bytes]]:
    """The response headers of ``err`` answered with ``body``: JSON, its length, the request
    id when given (the admin app's middleware adds its own), and the error's own."""
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if request_id is not None:
        headers.append((b"x-request-id", request_id))
    headers.extend(err.headers)
    return headers


async def send_error(send: Send, err: GatewayError, request_id: bytes | None = None) -> None:
    """Answer an ASGI HTTP request with ``err`` in the JSON shape (the one renderer of the
    gateway's errors, for the relay and the admin app alike)."""
    body = err.body()
    headers = error_headers(err, body, request_id)
    await send({"type": "http.response.start", "status": err.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
