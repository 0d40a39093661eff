"""A ``CONNECT`` tunnel through an egress proxy, over which TLS to the upstream then starts.

The proxy's answer is parsed by llhttp (``httptools.HttpResponseParser``), as every
answer passgate reads. A ``2xx`` opens the tunnel: from then on the proxy relays bytes,
and the caller starts TLS with the upstream's name (SNI and verification are the
upstream's, never the proxy's). Anything else is the proxy refusing; the caller is
told its status only, since the proxy's own words may echo what it was sent.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import TypeVar

from httptools import HttpParserError, HttpResponseParser

from passgate.proxy.connection import UpstreamConnectError
from passgate.proxy.egress import EgressProxy

P = TypeVar("P", bound=asyncio.BaseProtocol)


class EgressProxyError(UpstreamConnectError):
    """The egress proxy could not be reached, or refused to open the tunnel."""


async def open_tunnel(
    loop: asyncio.AbstractEventLoop, proxy: EgressProxy, host: str, port: int
) -> asyncio.Transport:
    """A connection to the proxy that now relays bytes to ``host:port``.

    Raises ``EgressProxyError`` when the proxy is unreachable, refuses, or answers
    something that is not HTTP; the connection is closed then.
    """
    transport, head = await connect_to_proxy(loop, proxy, lambda: _ConnectAnswer(loop))
    try:
        transport.write(proxy.connect_request(host, port))
        status = await head.status
    except BaseException:
        transport.abort()
        raise
    if not 200 <= status < 300:
        transport.abort()
        raise EgressProxyError(f"the egress proxy refused the tunnel with status {status}")
    return transport


async def connect_to_proxy(
    loop: asyncio.AbstractEventLoop, proxy: EgressProxy, factory: Callable[[], P]
) -> tuple[asyncio.Transport, P]:
    """A plain TCP connection to ``proxy`` speaking ``factory()``'s protocol."""
    try:
        transport, protocol = await loop.create_connection(factory, proxy.host, proxy.port)
    except OSError as exc:
        # The reason only: asyncio writes the address into strerror.
        reason = os.strerror(exc.errno) if exc.errno else type(exc).__name__
        raise EgressProxyError(f"the egress proxy is unreachable: {reason}") from exc
    return transport, protocol


class _ConnectAnswer(asyncio.Protocol):
    """Reads the head of the proxy's answer to ``CONNECT``; ``status`` resolves to its code."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.status: asyncio.Future[int] = loop.create_future()
        self._parser = HttpResponseParser(self)

    def data_received(self, data: bytes) -> None:
        """Parse the answer's head."""
        try:
            self._parser.feed_data(data)
        except HttpParserError:
            self._fail("the egress proxy's answer to CONNECT is not HTTP")

    def connection_lost(self, exc: BaseException | None) -> None:
        """The proxy hung up before answering."""
        self._fail("the egress proxy closed the connection before answering CONNECT")

    def on_headers_complete(self) -> None:
        """The head is in; an interim 1xx answer is skipped.

        The proxy sends nothing after a 2xx head until TLS starts (the upstream speaks
        only once it has the client's hello), so no byte of the tunnel is parsed here.
        """
        status = self._parser.get_status_code()
        if status >= 200 and not self.status.done():
            self.status.set_result(status)

    def _fail(self, message: str) -> None:
        if not self.status.done():
            self.status.set_exception(EgressProxyError(message))
