"""uvicorn's httptools protocol with bounds on what one client connection may hold.

uvicorn's protocol accepts a request head of any size, waits for it forever, and
holds any number of connections. This subclass enforces ``ServerLimits`` before any
routing, counting what the parser has already framed (never parsing anything itself):

- a head over ``max_head_bytes``, a header line over ``max_header_line_bytes`` or more
  than ``max_headers`` fields: ``431`` (a request target over the line limit: ``414``);
- a head not complete ``head_timeout`` seconds after the connection opened or the head's
  first byte arrived: ``408`` (the connection is closed without a word if it sent nothing);
- a request body that stays silent ``body_idle_timeout`` seconds while the gateway is
  reading it: the connection is closed (the app sees the client go);
- a connection beyond ``max_connections`` of this worker: ``503`` and closed at once.

Each answer is the gateway's JSON error with an ``x-request-id`` and ``Connection:
close``, and the app never sees the request. A request that is not HTTP gets the same
JSON shape (``400``) instead of uvicorn's plain text.

Only a head that arrives in pieces costs a timer: the usual request, whose head and
body arrive in one read, costs a few attribute checks.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from passgate.errors import GatewayError, error_headers
from passgate.exchange import new_call_id
from passgate.proxy import server_limits as reasons
from passgate.proxy.server_limits import STATE_KEY, ServerLimits

# The request line around its target: "GET " and " HTTP/1.1\r\n".
_REQUEST_LINE_EXTRA = 16
_HEADER_LINE_EXTRA = 4  # ": " and CRLF
# While the gateway itself has stopped reading a body (flow control), the client is not
# idle: the body timer checks again this often and counts idleness from then on.
_PAUSED_RECHECK = 1.0

_WAITING_HEAD = 1
_READING_BODY = 2


class _HeadRejected(Exception):
    """Raised from a parser callback to stop parsing a head that broke a limit."""


def _head_error(status: int, code: str, message: str) -> GatewayError:
    return GatewayError(status, message, "invalid_request_error", code)


def _too_large(limits: ServerLimits) -> GatewayError:
    return _head_error(
        431,
        "request_header_fields_too_large",
        f"The request head is over a limit of this gateway: {limits.max_headers} "
        f"header fields, {limits.max_header_line_bytes} bytes per line, "
        f"{limits.max_head_bytes} bytes in all.",
    )


def closing_response(err: GatewayError) -> bytes:
    """``err`` as a complete HTTP/1.1 response that closes the connection."""
    body = err.body()
    lines = [STATUS_LINE[err.status]]
    headers = error_headers(err, body, new_call_id().encode())
    lines.extend(name + b": " + value + b"\r\n" for name, value in headers)
    lines.append(b"connection: close\r\n\r\n")
    lines.append(body)
    return b"".join(lines)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's ``httptools`` protocol enforcing the worker's ``ServerLimits``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limits: ServerLimits | None = self.app_state.get(STATE_KEY)
        self._timer: asyncio.TimerHandle | None = None
        self._phase = 0  # what the timer watches: _WAITING_HEAD, _READING_BODY, or nothing
        self._head_bytes = 0  # bytes of the head being received, counted so far
        self._chunk = 0  # size of the data being parsed
        self._body_seen = 0.0  # loop time when body bytes last arrived

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Register the connection; refuse it over the cap, else start the head deadline."""
        super().connection_made(transport)
        limits = self._limits
        if limits is None:
            return
        if len(self.connections) > limits.max_connections:
            limits.on_refused()
            self._answer_and_close(
                GatewayError(
                    503,
                    "This gateway worker holds its maximum number of connections; retry shortly.",
                    "service_unavailable",
                    "too_many_connections",
                    ((b"retry-after", b"1"),),
                )
            )
            return
        self._arm(_WAITING_HEAD, limits.head_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        """Drop the timer, then let uvicorn tear the connection down."""
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Parse ``data`` (as uvicorn does), then account for the head or body it carried."""
        self._unset_keepalive_if_required()
        self._chunk = len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError as exc:
            if isinstance(exc.__context__, _HeadRejected):
                return  # answered already
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
            return
        limits = self._limits
        if limits is None:
            return
        scope = self.scope
        if scope is not None and "method" in scope:  # the newest head is complete
            if self.cycle.more_body:
                self._body_seen = self.loop.time()
                if self._phase != _READING_BODY:
                    self._arm(_READING_BODY, limits.body_idle_timeout)
            elif self._timer is not None:
                self._disarm()
            return
        self._head_pending(limits, len(data))

    def _head_pending(self, limits: ServerLimits, received: int) -> None:
        """A head is under way (or none has started): bound its size and its time."""
        if self.transport.is_closing():
            return
        if self._phase == _WAITING_HEAD:
            self._head_bytes += received
        else:  # a head began in this data, maybe after the end of the previous request
            self._arm(_WAITING_HEAD, limits.head_timeout)
            self._head_bytes = self._parsed_head_bytes()
        headers = self.headers
        if self._head_bytes > limits.max_head_bytes or (
            headers is not None and len(headers) > limits.max_headers
        ):
            self._reject(limits, _too_large(limits))

    def on_headers_complete(self) -> None:
        """Check the head against the limits before uvicorn hands the request to the app."""
        limits = self._limits
        if limits is not None:
            # The head is no larger than what arrived while it was pending: only a large
            # arrival or many fields need the exact count.
            if (
                self._head_bytes + self._chunk > limits.max_header_line_bytes
                or len(self.headers) > limits.max_headers
            ):
                error = self._exact_check(limits)
                if error is not None:
                    self._reject(limits, error)
                    raise _HeadRejected
            self._head_bytes = 0
            if self._phase == _WAITING_HEAD:  # in time: a pipelined next head starts afresh
                self._disarm()
        super().on_headers_complete()

    def _exact_check(self, limits: ServerLimits) -> GatewayError | None:
        if len(self.url) + _REQUEST_LINE_EXTRA > limits.max_header_line_bytes:
            return _head_error(
                414,
                "target_too_long",
                f"The request target is longer than {limits.max_header_line_bytes} bytes.",
            )
        if len(self.headers) > limits.max_headers:
            return _too_large(limits)
        total = len(self.url) + _REQUEST_LINE_EXTRA
        for name, value in self.headers:
            line = len(name) + len(value) + _HEADER_LINE_EXTRA
            if line > limits.max_header_line_bytes:
                return _too_large(limits)
            total += line
        if total > limits.max_head_bytes:
            return _too_large(limits)
        return None

    def _parsed_head_bytes(self) -> int:
        """Bytes of the pending head the parser has handed over (its partial field aside)."""
        if self.scope is None:
            return 0
        total = len(self.url) + _REQUEST_LINE_EXTRA
        for name, value in self.headers:
            total += len(name) + len(value) + _HEADER_LINE_EXTRA
        return total

    def _reject(self, limits: ServerLimits, error: GatewayError) -> None:
        limits.on_rejected(
            reasons.TARGET_TOO_LONG if error.status == 414 else reasons.HEAD_TOO_LARGE
        )
        self._answer_and_close(error)

    def send_400_response(self, msg: str) -> None:
        """Answer a request the parser refused with the gateway's JSON error, then close."""
        if self._limits is not None:
            self._limits.on_rejected(reasons.MALFORMED)
        self._answer_and_close(_head_error(400, "bad_request", msg))

    def _answer_and_close(self, error: GatewayError) -> None:
        self._disarm()
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            self.transport.write(closing_response(error))
        # else a response is still being written (pipelining, or a body the parser
        # refused mid-call): an answer now would corrupt it, so the close says it all
        self.transport.close()

    def _arm(self, phase: int, delay: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._phase = phase
        self._timer = self.loop.call_later(delay, self._expired)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._phase = 0

    def _expired(self) -> None:
        self._timer = None
        limits = self._limits
        if limits is None or self.transport.is_closing():
            return
        if self._phase == _WAITING_HEAD:
            self._phase = 0
            limits.on_rejected(reasons.HEAD_TIMEOUT)
            if self.scope is None and self._head_bytes == 0:
                self.transport.close()  # nothing was sent: nothing to answer
            else:
                self._answer_and_close(
                    _head_error(
                        408,
                        "request_header_timeout",
                        f"The request head did not arrive within {limits.head_timeout} s.",
                    )
                )
            return
        if not self.cycle.more_body:  # the body ended since
            self._phase = 0
            return
        now = self.loop.time()
        if self.flow.read_paused or self.cycle.waiting_for_100_continue:
            # the gateway is not reading, or the client waits for its go-ahead: not idle
            self._body_seen = now
            self._arm(_READING_BODY, min(_PAUSED_RECHECK, limits.body_idle_timeout))
            return
        idle = now - self._body_seen
        if idle < limits.body_idle_timeout:
            self._arm(_READING_BODY, limits.body_idle_timeout - idle)
            return
        self._phase = 0
        limits.on_rejected(reasons.BODY_TIMEOUT)
        self.transport.close()  # the app reads a disconnect and ends the call
