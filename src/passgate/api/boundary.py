"""The admin app's one error boundary: every failure of an admin route becomes the JSON error shape.

Routes raise; nothing in them turns errors into responses. ``ErrorBoundary`` sits inside
Starlette's own last-resort handler (which answers ``text/plain`` and re-raises to the
server, which then logs a second traceback and drops the keep-alive connection), so no
exception from a route ever reaches either:

- ``GatewayError``: its status and JSON body, as the route meant;
- a database failure: 503 ``service_unavailable``;
- anything else: 500 ``internal_error``, logged once with the request id.

A failure before the response started is answered in full, so the keep-alive connection
stays usable (the server discards whatever of the request body was not read). A failure
after the head went out cannot be answered any more: the response is left incomplete,
and the server closes the connection, so the client sees a cut response, never a
silently short one.

Logs carry the exception's type and stack, never its message: a database error's text
can hold SQL parameters (key hashes), and a validation error's text the value given.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Sequence

from sqlalchemy.exc import SQLAlchemyError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import Lifespan

from passgate import errors
from passgate.asgi import HttpMiddleware, on_response_start
from passgate.errors import GatewayError
from passgate.request_id import SCOPE_KEY, request_id_for
from passgate.types import Message, Receive, Scope, Send

log = logging.getLogger(__name__)

UNAVAILABLE = "The database is unavailable; try again shortly."


def request_id_of(scope: Scope) -> str:
    """The id the response carries (set by ``RequestIdHeader``), else the same rule's own."""
    chosen: bytes | None = scope.get(SCOPE_KEY)
    if chosen is None:
        chosen = request_id_for(scope)
    return chosen.decode("ascii")


def internal_error(request_id: str) -> GatewayError:
    """The 500 for a failure nobody anticipated; the id finds its log line."""
    return GatewayError(
        500,
        f"The gateway failed to handle this request (request id {request_id}); it was logged.",
        "internal_error",
        "internal_error",
    )


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's routing errors (404, 405) become a ``GatewayError`` for the boundary,
    which renders it as every other error."""
    assert isinstance(exc, HTTPException)
    kind = "not_found" if exc.status_code == 404 else "http_error"
    headers = tuple(
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in (exc.headers or {}).items()
    )
    raise GatewayError(exc.status_code, str(exc.detail), "invalid_request_error", kind, headers)


def _log_failure(scope: Scope, exc: Exception, what: str) -> str:
    request_id = request_id_of(scope)
    stack = "".join(traceback.format_tb(exc.__traceback__))
    log.error(
        "admin request %s %s (request id %s) failed %s: %s\n%s",
        scope["method"],
        scope["path"],
        request_id,
        what,
        type(exc).__name__,
        stack.rstrip(),
    )
    return request_id


class ErrorBoundary(HttpMiddleware):
    """ASGI middleware: no exception from the app below escapes it (see the module doc)."""

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request behind the boundary (see the module doc)."""
        started = False

        def note_start(message: Message) -> Message:
            nonlocal started
            started = True
            return message

        try:
            await self._app(scope, receive, on_response_start(send, note_start))
            return
        except ClientDisconnect:
            return  # nobody is left to answer
        except GatewayError as exc:
            error = exc
            if started:
                _log_failure(scope, exc, "after its response started")
        except (SQLAlchemyError, OSError) as exc:
            _log_failure(scope, exc, "in the database")
            error = errors.unavailable(UNAVAILABLE)
        except Exception as exc:
            what = "after its response started" if started else "unexpectedly"
            error = internal_error(_log_failure(scope, exc, what))
        if not started:
            await errors.send_error(send, error)


def admin_app(
    routes: Sequence[BaseRoute], lifespan: Lifespan[Starlette] | None = None
) -> Starlette:
    """A Starlette app serving ``routes`` behind the error boundary."""
    return Starlette(
        routes=list(routes),
        middleware=[Middleware(ErrorBoundary)],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
