"""One keep-alive HTTP/1.1 connection to the upstream, as an ``asyncio.Protocol``.

Parsing is llhttp's (through ``httptools.HttpResponseParser``); request framing is
aiohttp's ``StreamWriter`` (``passgate.proxy.upstream``), which needs this protocol to be
an aiohttp ``BaseProtocol`` for its write flow control. What is written here is only
what a protocol must do itself: keep the parsed head, queue body bytes for one reader,
and stop reading the socket while that reader is behind.

Why not aiohttp's client: under load it cost about half of the CPU a relayed call takes
(a ``ClientRequest``, a ``ClientResponse``, multidicts, timer contexts, a task per
call; ``docs/performance.md``). This connection holds one reusable parser and a deque.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from aiohttp.base_protocol import BaseProtocol
from httptools import HttpParserError, HttpResponseParser

# Body bytes queued for the reader before the socket stops being read.
HIGH_WATER = 256 * 1024


class UpstreamError(Exception):
    """The upstream connection failed; ``str()`` says how, naming no secret."""


class UpstreamConnectError(UpstreamError):
    """No connection could be opened to the upstream."""


class UpstreamDisconnected(UpstreamError):
    """The upstream closed or broke the connection before its answer was complete."""


class UpstreamProtocolError(UpstreamError):
    """The upstream sent bytes that are not a valid HTTP/1.1 answer."""


class UpstreamConnection(BaseProtocol):
    """One connection; one request at a time, its answer read through ``head`` and ``chunk``."""

    __slots__ = (
        "_body_waiter",
        "_buffered",
        "_chunks",
        "_head_waiter",
        "_http",
        "_in_flight",
        "_informational",
        "_on_lost",
        "_read_paused",
        "closed",
        "complete",
        "error",
        "head_received",
        "headers",
        "idle_since",
        "keep_alive",
        "received_any",
        "reused",
        "status",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        on_lost: Callable[[UpstreamConnection], None],
    ) -> None:
        super().__init__(loop)
        self._on_lost = on_lost
        self._http = HttpResponseParser(self)
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._head_waiter: asyncio.Future[None] | None = None
        self._body_waiter: asyncio.Future[None] | None = None
        self._in_flight = False
        self._informational = False
        self._read_paused = False
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_received = False
        self.complete = False
        self.keep_alive = False
        self.received_any = False  # a byte of the current answer has arrived
        self.error: UpstreamError | None = None
        self.closed = False
        self.reused = False
        self.idle_since = 0.0

    # -- the caller's side -------------------------------------------------------------

    def begin(self) -> None:
        """A request is about to be written: forget the previous answer."""
        self._in_flight = True
        self._chunks.clear()
        self._buffered = 0
        self.status = 0
        self.headers = []
        self.head_received = False
        self.complete = False
        self.keep_alive = False
        self.received_any = False
        self.error = None

    async def head(self) -> None:
        """Wait until the answer's status and headers have arrived."""
        while not self.head_received:
            if self.error is not None:
                raise self.error
            self._head_waiter = self._loop.create_future()
            await self._head_waiter

    async def chunk(self) -> bytes:
        """The body bytes that have arrived since the last call; ``b""`` once the body ended."""
        while True:
            chunks = self._chunks
            if chunks:
                data = chunks.popleft() if len(chunks) == 1 else b"".join(chunks)
                chunks.clear()
                self._buffered = 0
                if self._read_paused:
                    self._read_paused = False
                    if self.transport is not None:
                        self.transport.resume_reading()
                return data
            if self.complete:
                return b""
            if self.error is not None:
                raise self.error
            self._body_waiter = self._loop.create_future()
            await self._body_waiter

    def reusable(self) -> bool:
        """Whether the answer ended cleanly and the connection may carry another request."""
        return self.complete and self.keep_alive and not self.closed and not self._chunks

    def done(self) -> None:
        """The request's answer is no longer read (it ended, or the connection is dropped)."""
        self._in_flight = False

    def abort(self) -> None:
        """Drop the connection at once."""
        self._in_flight = False
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    # -- asyncio.Protocol ----------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        """Parse what arrived; the parser calls back below."""
        if not self._in_flight:
            # Bytes with no request outstanding: the connection cannot be trusted.
            self.abort()
            return
        try:
            self._http.feed_data(data)
        except HttpParserError as exc:
            self._fail(UpstreamProtocolError(f"invalid answer from the upstream: {exc}"))
            self.abort()

    def connection_lost(self, exc: BaseException | None) -> None:
        """The socket closed: a close-delimited body ends here; anything else was cut."""
        super().connection_lost(exc)
        self.closed = True
        if self._in_flight and not self.complete:
            if self.head_received and exc is None and not _framed(self.headers):
                self.complete = True  # no Content-Length, not chunked: the body ends at close
                self._wake_body()
            else:
                self._fail(UpstreamDisconnected("the upstream closed the connection"))
        self._on_lost(self)

    # -- httptools callbacks -------------------------------------------------------------

    def on_message_begin(self) -> None:
        """An answer (or an interim 1xx head) starts."""
        self.received_any = True
        self.headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        """Keep each header as sent."""
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        """The head is in: hand it to ``head`` (an interim 1xx answer is skipped)."""
        status = self._http.get_status_code()
        if 100 <= status < 200:
            self._informational = True
            return
        self.status = status
        self.head_received = True
        waiter = self._head_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def on_body(self, body: bytes) -> None:
        """Queue body bytes for ``chunk``; stop reading while too much waits."""
        self._chunks.append(body)
        self._buffered += len(body)
        if self._buffered > HIGH_WATER and not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()
        self._wake_body()

    def on_message_complete(self) -> None:
        """The answer ended; the connection is reusable if both sides keep it alive."""
        if self._informational:
            self._informational = False
            return
        self.complete = True
        self.keep_alive = self._http.should_keep_alive()
        self._wake_body()

    # -- internals -----------------------------------------------------------------------

    def _wake_body(self) -> None:
        waiter = self._body_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _fail(self, error: UpstreamError) -> None:
        if self.error is None:
            self.error = error
        for waiter in (self._head_waiter, self._body_waiter):
            if waiter is not None and not waiter.done():
                waiter.set_result(None)


def _framed(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether an answer's body has a length or chunked framing (else it ends at close).

    Read only when a connection closes mid-answer, so the hot path never pays for it.
    """
    for name, value in headers:
        lower = name.lower()
        if lower == b"content-length":
            return True
        if lower == b"transfer-encoding" and value.rstrip().lower().endswith(b"chunked"):
            return True
    return False
