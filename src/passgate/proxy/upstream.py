"""The upstream HTTP client: one pool per origin, requests framed by aiohttp's ``StreamWriter``.

Framing (the head's serialisation with its control-character check, Content-Length
clipping, chunked encoding, write flow control) is aiohttp's; parsing the answer is
llhttp's (``passgate.proxy.connection``). What is passgate's own is the order of
things: take a connection, write the request, wait for the head, hand the body out,
and give the connection back only once its answer was read whole.

Each origin's route (direct, or through the egress proxy ``passgate.proxy.egress``
chooses) is settled when its pool is made; a direct call pays two ``is None`` checks.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aiohttp import ClientError
from aiohttp.http import StreamWriter
from multidict import CIMultiDict

from passgate.config import Settings, proxy_environment
from passgate.proxy.connection import UpstreamConnection, UpstreamDisconnected
from passgate.proxy.egress import EgressRoutes
from passgate.proxy.pool import ConnectionPool
from passgate.proxy.tls import UpstreamTls, upstream_tls_context
from passgate.proxy.tunnel import EgressProxyError

# Servers close idle keep-alive connections after 5 s (uvicorn) to 75 s (nginx); reusing
# one they are closing loses the request, so passgate lets them go first.
KEEPALIVE = 4.0
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class UpstreamResponse:
    """An answer whose head has arrived; its body is read with ``read`` or ``chunks``.

    ``close`` must follow (the relay does it in ``finally``): it returns the connection
    to the pool when the body was read whole, and drops it otherwise.
    """

    __slots__ = ("_conn", "_pool", "_slot", "raw_headers", "status")

    def __init__(
        self,
        conn: UpstreamConnection,
        pool: ConnectionPool,
        slot: asyncio.Semaphore | None,
    ) -> None:
        self._conn = conn
        self._pool = pool
        self._slot = slot
        self.status = conn.status
        self.raw_headers: tuple[tuple[bytes, bytes], ...] = tuple(conn.headers)

    @property
    def arrived(self) -> bool:
        """Whether the whole body is already here (``read`` will not wait)."""
        return self._conn.complete

    async def read(self) -> bytes:
        """The whole body."""
        parts = []
        while chunk := await self._conn.chunk():
            parts.append(chunk)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives: each piece is what came since the previous one."""
        while chunk := await self._conn.chunk():
            yield chunk

    def close(self) -> None:
        """Give the connection back (or drop it) and free the pool slot."""
        self._pool.release(self._conn)
        if self._slot is not None:
            self._slot.release()
            self._slot = None


@dataclass(frozen=True, slots=True)
class UpstreamOptions:
    """What the upstream client is told: timeouts, pool bound, egress proxy and TLS."""

    connect_timeout: float
    pool_size: int = 0  # concurrent requests per origin; 0: unbounded
    keepalive: float = KEEPALIVE
    proxy: str | None = field(default=None, repr=False)  # may carry the proxy's credentials
    tls: UpstreamTls = field(default_factory=UpstreamTls)

    @classmethod
    def from_settings(cls, settings: Settings) -> UpstreamOptions:
        """The upstream options ``settings`` set."""
        proxy = settings.upstream_proxy
        return cls(
            connect_timeout=settings.connect_timeout,
            pool_size=settings.upstream_pool_size,
            proxy=proxy.get_secret_value() if proxy is not None else None,
            tls=UpstreamTls.from_settings(settings),
        )


class Upstream:
    """Owns the pools; ``start`` and ``stop`` run in the app's lifespan."""

    def __init__(
        self,
        options: UpstreamOptions,
        proxies: Mapping[str, str] | None = None,
    ) -> None:
        """``proxies`` as ``urllib.request.getproxies_environment`` gives them (this
        process's environment if None); ``options.proxy`` overrides them."""
        self._connect_timeout = options.connect_timeout
        self._keepalive = options.keepalive
        self._limit = options.pool_size
        self._pools: dict[str, _Route] = {}  # origin -> (pool, Host, slot, forward)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tls_options = options.tls
        # built with the first https pool: loading the system's trust store costs a worker memory
        self._tls: ssl.SSLContext | None = None
        self._egress = EgressRoutes(
            options.proxy, proxy_environment() if proxies is None else proxies
        )

    async def start(self) -> None:
        """Bind to the running loop; connections open on first use."""
        self._loop = asyncio.get_running_loop()

    async def stop(self) -> None:
        """Close every idle connection."""
        for pool, _, _, _ in self._pools.values():
            pool.close()
        self._pools.clear()

    async def request(
        self,
        origin: str,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes | AsyncIterator[bytes],
        length: int | None = None,
    ) -> UpstreamResponse:
        """Send one request to ``origin`` and wait for the head of its answer.

        ``target`` is the path and query as sent; ``headers`` must hold no framing or Host
        header (both are set here). A streamed ``body`` goes with ``length`` as its
        Content-Length when the client gave one, chunked otherwise. A request written
        onto a kept-alive connection the upstream had just closed is sent once more on a
        new one, when nothing of an answer had arrived and the body was not streamed.
        """
        pool, host, slot, forward = self._pool(origin)
        if forward is not None:  # an http origin through a proxy: absolute form
            target, headers = forward.rewrite(target, headers)
        request = _Request(method, target, host, headers, body, length)
        if slot is not None:
            await slot.acquire()
        try:
            conn = await pool.acquire()
            try:
                await self._exchange(conn, request)
            except UpstreamDisconnected:
                if not (conn.reused and not conn.received_any and isinstance(body, bytes)):
                    raise
                conn = await pool.acquire(fresh=True)
                await self._exchange(conn, request)
            if forward is not None and conn.status == 407:
                # the proxy's answer, not the upstream's: the caller gets a gateway error
                conn.abort()
                raise EgressProxyError("the egress proxy refused the request with status 407")
        except BaseException:
            if slot is not None:
                slot.release()
            raise
        return UpstreamResponse(conn, pool, slot)

    async def _exchange(self, conn: UpstreamConnection, request: _Request) -> None:
        conn.begin()
        try:
            await _write(conn, self._loop_now(), request)
            await conn.head()
        except ClientError as exc:  # aiohttp's writer: the transport closed under it
            if conn.head_received:
                return  # the upstream answered early (an error, say) and closed: relay that
            conn.abort()
            raise UpstreamDisconnected("the upstream closed the connection") from exc
        except BaseException:
            # The upstream failed, or the call was cancelled (a deadline, the client left),
            # or the body failed mid-way: a half-written request spoils the connection.
            conn.abort()
            raise

    def _loop_now(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("upstream client used before start()")
        return self._loop

    def _pool(self, origin: str) -> _Route:
        route = self._pools.get(origin)
        if route is None:
            parts = urlsplit(origin)
            if parts.hostname is None:
                raise ValueError(f"upstream origin without a host: {origin!r}")
            port = parts.port or (443 if parts.scheme == "https" else 80)
            proxy = self._egress.proxy_for(parts.scheme, parts.hostname, port)
            if parts.scheme == "https" and self._tls is None:
                self._tls = upstream_tls_context(self._tls_options)
            pool = ConnectionPool(
                origin,
                self._loop_now(),
                connect_timeout=self._connect_timeout,
                keepalive=self._keepalive,
                tls=self._tls,
                proxy=proxy,
            )
            slot = asyncio.Semaphore(self._limit) if self._limit else None
            forward = None
            if proxy is not None and parts.scheme == "http":
                forward = _Forward.to(origin, proxy.authorization)
            route = (pool, parts.netloc, slot, forward)
            self._pools[origin] = route
        return route


@dataclass(frozen=True, slots=True)
class _Forward:
    """How requests to an http origin are written for the proxy that forwards them."""

    prefix: str  # "http://host:port", put before the path: the absolute form
    headers: tuple[tuple[str, str], ...]  # Proxy-Authorization, when the proxy URL has one

    @classmethod
    def to(cls, origin: str, authorization: bytes | None) -> _Forward:
        headers = (
            () if authorization is None else (("Proxy-Authorization", authorization.decode()),)
        )
        return cls(origin.rstrip("/"), headers)

    def rewrite(
        self, target: str, headers: list[tuple[str, str]]
    ) -> tuple[str, list[tuple[str, str]]]:
        """The request's target in absolute form, and its headers with the proxy's."""
        return self.prefix + target, [*headers, *self.headers] if self.headers else headers


_Route = tuple[ConnectionPool, str, asyncio.Semaphore | None, _Forward | None]


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    target: str
    host: str
    headers: list[tuple[str, str]]
    body: bytes | AsyncIterator[bytes]
    length: int | None


async def _write(
    conn: UpstreamConnection, loop: asyncio.AbstractEventLoop, request: _Request
) -> None:
    method, body, length = request.method, request.body, request.length
    line = f"{method} {request.target} HTTP/1.1"
    writer = StreamWriter(conn, loop)
    head: CIMultiDict[str] = CIMultiDict([("Host", request.host), *request.headers])
    if isinstance(body, bytes):
        if body or method in _BODY_METHODS:
            head.add("Content-Length", str(len(body)))
        writer.length = len(body)
        await writer.write_headers(line, head)
        await writer.write_eof(body)
        return
    if length is not None:
        head.add("Content-Length", str(length))
        writer.length = length
    else:
        head.add("Transfer-Encoding", "chunked")
        writer.enable_chunking()
    await writer.write_headers(line, head)
    async for chunk in body:
        await writer.write(chunk)
    await writer.write_eof()
