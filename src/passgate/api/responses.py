"""JSON responses of the admin API, and the error boundary around its endpoints."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import Response

from passgate import errors
from passgate.errors import GatewayError

log = logging.getLogger(__name__)

Endpoint = Callable[[Request], Awaitable[Response]]


def json_response(data: Any, status: int = 200) -> Response:
    """A JSON response (datetimes as ISO 8601)."""
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def error_response(error: GatewayError) -> Response:
    """The gateway's error JSON for ``error``."""
    headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in error.headers}
    return Response(
        error.body(), status_code=error.status, media_type="application/json", headers=headers
    )


def guarded(endpoint: Endpoint) -> Endpoint:
    """Turn ``GatewayError`` into its JSON, and database failures into a bare 503.

    Database exception texts can carry SQL parameters (key hashes), so only the
    exception's type is logged and nothing of it is returned.
    """

    @functools.wraps(endpoint)
    async def wrapper(request: Request) -> Response:
        try:
            return await endpoint(request)
        except GatewayError as exc:
            return error_response(exc)
        except (SQLAlchemyError, OSError) as exc:
            log.error("admin route %s failed: %s", request.url.path, type(exc).__name__)
            return error_response(
                errors.unavailable("The database is unavailable; try again shortly.")
            )

    return wrapper
