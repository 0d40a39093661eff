"""Keep-alive connections to one upstream origin: reused newest first, dropped when stale.

A connection goes straight to the origin, or through an egress proxy: a ``CONNECT``
tunnel with TLS inside it for an https origin (the tunnel is pooled like any other
connection), a plain connection to the proxy for an http one (``upstream`` then writes
its requests in absolute form).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
from urllib.parse import urlsplit

from passgate.proxy.connection import UpstreamConnectError, UpstreamConnection
from passgate.proxy.egress import EgressProxy
from passgate.proxy.tunnel import EgressProxyError, connect_to_proxy, open_tunnel


class ConnectionPool:
    """Idle connections to ``origin`` (``scheme://host[:port]``), opened on demand.

    Newest first, so that under light load the same few connections stay warm and the
    rest age out. A connection idle longer than ``keepalive`` is closed rather than
    reused: servers close idle keep-alive connections after a few seconds, and a request
    written onto one they are closing is lost. While any connection is idle, a timer
    closes the stale ones every ``keepalive`` seconds, so that after a burst the pool does
    not keep its sockets open against an upstream that never closes them itself.
    """

    __slots__ = (
        "_connect_timeout",
        "_host",
        "_idle",
        "_keepalive",
        "_loop",
        "_port",
        "_proxy",
        "_ssl",
        "_sweep",
    )

    def __init__(
        self,
        origin: str,
        loop: asyncio.AbstractEventLoop,
        *,
        connect_timeout: float,
        keepalive: float,
        tls: ssl.SSLContext | None = None,
        proxy: EgressProxy | None = None,
    ) -> None:
        """``tls`` is the context for an https origin (the system's defaults if None)."""
        parts = urlsplit(origin)
        if parts.hostname is None:
            raise ValueError(f"upstream origin without a host: {origin!r}")
        https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if https else 80)
        self._ssl: ssl.SSLContext | None = None
        if https:
            self._ssl = tls if tls is not None else ssl.create_default_context()
        self._proxy = proxy
        self._loop = loop
        self._connect_timeout = connect_timeout
        self._keepalive = keepalive
        self._idle: list[UpstreamConnection] = []  # oldest first
        self._sweep: asyncio.TimerHandle | None = None

    async def acquire(self, *, fresh: bool = False) -> UpstreamConnection:
        """An idle connection (unless ``fresh``), else a new one."""
        if not fresh:
            idle = self._idle
            stale_before = self._loop.time() - self._keepalive
            while idle:
                conn = idle.pop()
                if conn.closed:
                    continue
                if conn.idle_since < stale_before:
                    conn.abort()
                    continue
                conn.reused = True
                return conn
        return await self._connect()

    def release(self, conn: UpstreamConnection) -> None:
        """Take a connection back after its answer was read whole, or drop it if it can't be."""
        conn.done()
        if not conn.reusable():
            conn.abort()
            return
        now = self._loop.time()
        conn.idle_since = now
        idle = self._idle
        # The oldest idle connection is the first to go stale; one check per release keeps
        # the list from holding dead sockets when the load falls.
        if idle and idle[0].idle_since < now - self._keepalive:
            idle.pop(0).abort()
        idle.append(conn)
        if self._sweep is None:
            self._sweep = self._loop.call_later(self._keepalive, self._close_stale)

    def close(self) -> None:
        """Close every idle connection."""
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.abort()

    def _close_stale(self) -> None:
        self._sweep = None
        idle = self._idle
        stale_before = self._loop.time() - self._keepalive
        while idle and idle[0].idle_since <= stale_before:
            idle.pop(0).abort()
        if idle:  # the oldest left goes stale keepalive seconds after it went idle
            delay = idle[0].idle_since + self._keepalive - self._loop.time()
            self._sweep = self._loop.call_later(max(delay, 0.0), self._close_stale)

    def _lost(self, conn: UpstreamConnection) -> None:
        # The upstream closed an idle connection (its keep-alive timeout): forget it now.
        with contextlib.suppress(ValueError):  # not idle: in use, or already dropped
            self._idle.remove(conn)

    async def _connect(self) -> UpstreamConnection:
        try:
            return await asyncio.wait_for(self._open(), self._connect_timeout)
        except TimeoutError as exc:
            raise UpstreamConnectError("connect timed out") from exc
        except UpstreamConnectError:
            raise
        except ssl.SSLError as exc:  # before OSError: its errno says nothing here
            raise UpstreamConnectError(f"TLS failed: {exc.reason or type(exc).__name__}") from exc
        except OSError as exc:
            # The reason only (asyncio writes the address into strerror): the upstream's
            # address is not the client's business.
            reason = os.strerror(exc.errno) if exc.errno else type(exc).__name__
            raise UpstreamConnectError(reason) from exc

    async def _open(self) -> UpstreamConnection:
        def protocol() -> UpstreamConnection:
            return UpstreamConnection(self._loop, self._lost)

        proxy, tls, host = self._proxy, self._ssl, self._host
        if proxy is None:
            _, conn = await self._loop.create_connection(
                protocol,
                host,
                self._port,
                ssl=tls,
                server_hostname=host if tls is not None else None,
            )
            return conn
        if tls is None:  # an http origin: requests go to the proxy in absolute form
            _, conn = await connect_to_proxy(self._loop, proxy, protocol)
            return conn
        tunnel = await open_tunnel(self._loop, proxy, host, self._port)
        conn = protocol()
        try:
            transport = await self._loop.start_tls(tunnel, conn, tls, server_hostname=host)
        except BaseException:
            tunnel.abort()
            raise
        if transport is None:  # the proxy closed the tunnel during the handshake
            raise EgressProxyError("the egress proxy closed the tunnel")
        conn.connection_made(transport)  # start_tls hands the protocol over without calling it
        return conn
