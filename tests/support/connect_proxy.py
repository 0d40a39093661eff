"""A small HTTP egress proxy on loopback, run in a thread: ``CONNECT`` tunnels and absolute form.

Requests are parsed and answers framed by h11 (a library parser, independent of the
gateway's llhttp). Every request line it receives is kept in ``log`` (``"CONNECT
127.0.0.1:PORT"``, ``"POST http://127.0.0.1:PORT/v1/..."``), and every head in
``heads``, so tests can see what went through it.

    with ConnectProxy(credentials=("user", "pa:ss")) as proxy:
        proxy.url_with("user", "pa:ss")   # http://user:pa%3Ass@127.0.0.1:PORT
        proxy.log, proxy.tunnels          # what it saw, tunnels it opened

``refuse=403`` (or setting ``proxy.refuse`` later) answers every request with that
status; with ``credentials``, a request without the matching ``Proxy-Authorization:
Basic`` gets ``407``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import threading
from types import TracebackType
from urllib.parse import quote, urlsplit

import h11

_READ = 65536


class ConnectProxy:
    """The proxy; a context manager (``start`` and ``stop`` otherwise)."""

    def __init__(
        self, *, credentials: tuple[str, str] | None = None, refuse: int | None = None
    ) -> None:
        self._credentials = credentials
        self.refuse = refuse
        self.log: list[str] = []
        self.heads: list[list[tuple[bytes, bytes]]] = []
        self.tunnels = 0
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        """The proxy's URL, without credentials."""
        return f"http://127.0.0.1:{self.port}"

    def url_with(self, user: str, password: str) -> str:
        """The proxy's URL with credentials, quoted as a URL must hold them."""
        return f"http://{quote(user, safe='')}:{quote(password, safe='')}@127.0.0.1:{self.port}"

    def requests(self) -> list[str]:
        """Every request line received (``"CONNECT host:port"``, ``"GET http://..."``)."""
        return list(self.log)

    def connects(self) -> list[str]:
        """The ``CONNECT host:port`` requests received, in order."""
        return [line for line in self.log if line.startswith("CONNECT ")]

    def start(self) -> ConnectProxy:
        """Listen on a free loopback port."""
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop
        )
        self._server = future.result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        """Close the listener and every connection, then the loop."""

        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for writer in list(self._writers):
                writer.transport.abort()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> ConnectProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- serving -----------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request = await _next(conn, reader)
                if not isinstance(request, h11.Request):
                    return
                self.log.append(f"{request.method.decode()} {request.target.decode()}")
                self.heads.append(list(request.headers.raw_items()))
                status = self._verdict(request)
                if status is not None:
                    await _refuse(conn, writer, status)
                    return
                if request.method == b"CONNECT":
                    await self._tunnel(conn, request, reader, writer)
                    return
                if not await _forward(conn, request, reader, writer):
                    return
                conn.start_next_cycle()
        except (OSError, h11.ProtocolError):
            return
        finally:
            self._writers.discard(writer)
            writer.transport.abort()

    def _verdict(self, request: h11.Request) -> int | None:
        if self.refuse is not None:
            return self.refuse
        if self._credentials is None:
            return None
        expected = b"Basic " + base64.b64encode(":".join(self._credentials).encode())
        given = [v for n, v in request.headers if n == b"proxy-authorization"]
        return None if given == [expected] else 407

    async def _tunnel(
        self,
        conn: h11.Connection,
        request: h11.Request,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        host, _, port = request.target.decode().rpartition(":")
        try:
            up_reader, up_writer = await asyncio.open_connection(host.strip("[]"), int(port))
        except OSError:
            await _refuse(conn, writer, 502)
            return
        self.tunnels += 1
        self._writers.add(up_writer)
        writer.write(conn.send(h11.Response(status_code=200, headers=[])))
        leftover, _ = conn.trailing_data
        if leftover:
            up_writer.write(leftover)
        try:
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            self._writers.discard(up_writer)
            up_writer.transport.abort()


async def _next(conn: h11.Connection, reader: asyncio.StreamReader) -> object:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        conn.receive_data(await reader.read(_READ))


async def _refuse(conn: h11.Connection, writer: asyncio.StreamWriter, status: int) -> None:
    headers = [("Content-Length", "0"), ("Connection", "close")]
    if status == 407:
        headers.append(("Proxy-Authenticate", 'Basic realm="test"'))
    writer.write(conn.send(h11.Response(status_code=status, headers=headers)))
    writer.write(conn.send(h11.EndOfMessage()))
    await writer.drain()


async def _forward(
    conn: h11.Connection,
    request: h11.Request,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> bool:
    """Relay one absolute-form request to its origin, in origin form; True if kept alive."""
    target = urlsplit(request.target.decode())
    path = (target.path or "/") + (f"?{target.query}" if target.query else "")
    headers = [
        (n, v)
        for n, v in request.headers.raw_items()
        if n.lower() not in (b"proxy-authorization", b"proxy-connection")
    ]
    up_reader, up_writer = await asyncio.open_connection(target.hostname, target.port or 80)
    up = h11.Connection(h11.CLIENT)
    try:
        up_writer.write(up.send(h11.Request(method=request.method, target=path, headers=headers)))
        while True:  # the request body, as it comes
            event = await _next(conn, reader)
            if isinstance(event, h11.Data):
                up_writer.write(up.send(event))
            elif isinstance(event, h11.EndOfMessage):
                up_writer.write(up.send(h11.EndOfMessage()))
                break
            else:
                return False
        while True:  # the answer, as it comes
            event = await _next(up, up_reader)
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                writer.write(
                    conn.send(h11.Response(status_code=event.status_code, headers=event.headers))
                )
            elif isinstance(event, h11.Data):
                writer.write(conn.send(event))
                await writer.drain()
            elif isinstance(event, h11.EndOfMessage):
                writer.write(conn.send(h11.EndOfMessage()))
                await writer.drain()
                return conn.our_state is h11.DONE and conn.their_state is h11.DONE
            else:
                return False
    finally:
        up_writer.transport.abort()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):
        while data := await reader.read(_READ):
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(OSError, RuntimeError):
        writer.write_eof()
