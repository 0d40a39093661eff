"""The lean upstream client against a scripted loopback server.

The server parses each request with h11 (an independent parser, so the framing the
client writes is checked by someone else's reading of it) and answers with exact bytes
from a script, so every framing and failure case is deterministic.
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import h11
import pytest

from passgate.proxy.connection import (
    HIGH_WATER,
    UpstreamConnectError,
    UpstreamDisconnected,
    UpstreamProtocolError,
)
from passgate.proxy.tls import UpstreamTls
from passgate.proxy.upstream import Upstream, UpstreamOptions

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


@dataclass
class Received:
    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    connection: int


# What the server does after reading a request: the bytes to send, then whether to close.
Step = tuple[bytes, bool]


@dataclass
class ScriptedServer:
    """Answers request N with ``script(N)``; records every request and connection."""

    script: Callable[[int], Step]
    received: list[Received] = field(default_factory=list)
    connections: int = 0
    closed_by_client: int = 0
    server: asyncio.Server | None = None

    @property
    def origin(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        number = self.connections
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request: h11.Request | None = None
                body = bytearray()
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        data = await reader.read(65536)
                        if not data:
                            self.closed_by_client += 1
                            return
                        conn.receive_data(data)
                        continue
                    if isinstance(event, h11.Request):
                        request = event
                    elif isinstance(event, h11.Data):
                        body += event.data
                    elif isinstance(event, h11.EndOfMessage):
                        break
                assert request is not None
                self.received.append(
                    Received(
                        request.method,
                        request.target,
                        [(n, v) for n, v in request.headers.raw_items()],
                        bytes(body),
                        number,
                    )
                )
                answer, close = self.script(len(self.received) - 1)
                writer.write(answer)
                await writer.drain()
                if close:
                    return
                # h11 tracks the server's side too; the scripted bytes bypassed it.
                conn = h11.Connection(h11.SERVER)
        finally:
            writer.close()


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    client = Upstream(UpstreamOptions(connect_timeout=10.0, pool_size=0))
    await client.start()
    yield client
    await client.stop()


async def serve(script: Callable[[int], Step]) -> ScriptedServer:
    server = ScriptedServer(script)
    await server.start()
    return server


async def test_a_small_json_answer_and_the_request_as_framed() -> None:
    server = await serve(lambda _: (OK, False))
    client = Upstream(UpstreamOptions(connect_timeout=10.0))
    await client.start()
    host = server.origin.removeprefix("http://").encode()
    try:
        response = await client.request(
            server.origin,
            "POST",
            "/v1/chat/completions?a=1&a=2",
            [("Content-Type", "application/json"), ("X-Custom", "v")],
            b'{"model":"m"}',
        )
        assert response.status == 200
        assert (b"Content-Type", b"application/json") in response.raw_headers
        assert await response.read() == b"{}"
        response.close()
    finally:
        await client.stop()
        await server.stop()
    got = server.received[0]
    assert (got.method, got.target, got.body) == (
        b"POST",
        b"/v1/chat/completions?a=1&a=2",
        b'{"model":"m"}',
    )
    assert got.headers[0] == (b"Host", host)
    assert (b"Content-Length", b"13") in got.headers
    assert (b"X-Custom", b"v") in got.headers


async def test_keep_alive_reuses_one_connection(upstream: Upstream) -> None:
    server = await serve(lambda _: (OK, False))
    try:
        for _ in range(5):
            response = await upstream.request(server.origin, "GET", "/v1/models", [], b"")
            assert await response.read() == b"{}"
            response.close()
    finally:
        await server.stop()
    assert server.connections == 1
    assert len(server.received) == 5
    # A GET without a body carries no Content-Length; a POST always does.
    assert all(n.lower() != b"content-length" for n, _ in server.received[0].headers)


async def test_an_answer_not_read_whole_never_goes_back_to_the_pool(upstream: Upstream) -> None:
    big = b"x" * 10_000
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 10000\r\n\r\n" + big
    server = await serve(lambda _: (answer, False))
    try:
        first = await upstream.request(server.origin, "GET", "/v1/files/f/content", [], b"")
        first.close()  # body left unread
        second = await upstream.request(server.origin, "GET", "/v1/files/f/content", [], b"")
        assert await second.read() == big
        second.close()
    finally:
        await server.stop()
    assert server.connections == 2


async def test_chunked_answer_is_handed_out_as_it_arrives(upstream: Upstream) -> None:
    events = [b"data: {}\n\n", b"data: [DONE]\n\n"]
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events) + b"0\r\n\r\n"
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n"
    server = await serve(lambda _: (head + b"\r\n" + chunked, False))
    try:
        response = await upstream.request(server.origin, "POST", "/v1/chat/completions", [], b"{}")
        got = b"".join([c async for c in response.chunks()])
        response.close()
        again = await upstream.request(server.origin, "POST", "/v1/chat/completions", [], b"{}")
        assert b"".join([c async for c in again.chunks()]) == b"".join(events)
        again.close()
    finally:
        await server.stop()
    assert got == b"".join(events)
    assert server.connections == 1  # a chunked answer read to its end leaves it reusable


async def test_a_body_without_framing_ends_when_the_upstream_closes(upstream: Upstream) -> None:
    server = await serve(
        lambda _: (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close", True)
    )
    try:
        response = await upstream.request(server.origin, "GET", "/v1/models", [], b"")
        assert await response.read() == b"until close"
        response.close()
        # The closed connection is not reused: the next request opens a new one.
        response = await upstream.request(server.origin, "GET", "/v1/models", [], b"")
        assert await response.read() == b"until close"
        response.close()
    finally:
        await server.stop()
    assert server.connections == 2


async def test_an_interim_100_answer_is_skipped(upstream: Upstream) -> None:
    server = await serve(lambda _: (b"HTTP/1.1 100 Continue\r\n\r\n" + OK, False))
    try:
        response = await upstream.request(server.origin, "POST", "/v1/files", [], b"x")
        assert response.status == 200
        assert await response.read() == b"{}"
        response.close()
    finally:
        await server.stop()


async def test_a_cut_body_raises_and_a_bad_answer_is_a_protocol_error(upstream: Upstream) -> None:
    cut = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly part"
    server = await serve(lambda n: (cut, True) if n == 0 else (b"NOT HTTP\r\n\r\n", True))
    try:
        response = await upstream.request(server.origin, "GET", "/v1/models", [], b"")
        with pytest.raises(UpstreamDisconnected):
            await response.read()
        response.close()
        with pytest.raises(UpstreamProtocolError):
            await upstream.request(server.origin, "GET", "/v1/models", [], b"")
    finally:
        await server.stop()


async def test_no_answer_at_all_is_a_disconnect(upstream: Upstream) -> None:
    server = await serve(lambda _: (b"", True))
    try:
        with pytest.raises(UpstreamDisconnected):
            await upstream.request(server.origin, "POST", "/v1/chat/completions", [], b"{}")
    finally:
        await server.stop()
    assert len(server.received) == 1  # a fresh connection is not retried


async def test_a_kept_alive_connection_closed_by_the_upstream_is_retried_once(
    upstream: Upstream,
) -> None:
    # The upstream closes right after its first answer without saying so: the next request
    # goes out on a connection that is already dead, and is sent again on a new one.
    server = await serve(lambda n: (OK, n == 0))
    try:
        first = await upstream.request(server.origin, "POST", "/v1/embeddings", [], b"1")
        assert await first.read() == b"{}"
        first.close()
        await asyncio.sleep(0.05)  # let the close arrive, or not: both paths end the same
        second = await upstream.request(server.origin, "POST", "/v1/embeddings", [], b"2")
        assert await second.read() == b"{}"
        second.close()
    finally:
        await server.stop()
    assert [r.body for r in server.received] == [b"1", b"2"]
    assert server.connections == 2


async def test_streamed_bodies_are_chunked_or_carry_the_given_length(upstream: Upstream) -> None:
    server = await serve(lambda _: (OK, False))

    async def parts() -> AsyncIterator[bytes]:
        for piece in (b"--b\r\n", b"x" * 100_000, b"--b--\r\n"):
            yield piece

    try:
        for length in (None, 100_012):
            response = await upstream.request(
                server.origin, "POST", "/v1/files", [], parts(), length
            )
            assert await response.read() == b"{}"
            response.close()
    finally:
        await server.stop()
    chunked, sized = server.received
    assert chunked.body == sized.body == b"--b\r\n" + b"x" * 100_000 + b"--b--\r\n"
    assert (b"Transfer-Encoding", b"chunked") in chunked.headers
    assert (b"Content-Length", b"100012") in sized.headers
    assert all(n != b"Transfer-Encoding" for n, _ in sized.headers)


async def test_a_header_with_a_line_break_is_refused_before_anything_is_sent(
    upstream: Upstream,
) -> None:
    server = await serve(lambda _: (OK, False))
    try:
        with pytest.raises(ValueError, match="control character"):
            await upstream.request(
                server.origin, "GET", "/v1/models", [("X-A", "v\r\nX-Injected: 1")], b""
            )
        await asyncio.sleep(0.05)
    finally:
        await server.stop()
    assert server.received == []


async def test_an_unreachable_upstream_is_a_connect_error(upstream: Upstream) -> None:
    server = await serve(lambda _: (OK, False))
    origin = server.origin
    await server.stop()
    with pytest.raises(UpstreamConnectError) as caught:
        await upstream.request(origin, "GET", "/v1/models", [], b"")
    assert "127.0.0.1" not in str(caught.value)  # the address stays out of client errors


async def test_a_slow_reader_stops_the_socket_being_read(upstream: Upstream) -> None:
    size = 8 * HIGH_WATER
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size + b"y" * size
    server = await serve(lambda _: (answer, False))
    try:
        response = await upstream.request(server.origin, "GET", "/v1/files/f/content", [], b"")
        await asyncio.sleep(0.2)  # the upstream sends as fast as it can; nobody reads
        conn = response._conn
        assert conn._buffered <= HIGH_WATER + 65536 * 4  # bounded by the high-water mark
        assert len(await response.read()) == size
        response.close()
    finally:
        await server.stop()


async def test_the_pool_limit_makes_a_second_request_wait() -> None:
    client = Upstream(UpstreamOptions(connect_timeout=10.0, pool_size=1))
    await client.start()
    server = await serve(lambda _: (OK, False))
    try:
        first = await client.request(server.origin, "GET", "/v1/models", [], b"")
        waiting = asyncio.ensure_future(client.request(server.origin, "GET", "/v1/models", [], b""))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        assert await first.read() == b"{}"
        first.close()
        second = await asyncio.wait_for(waiting, 5)
        assert await second.read() == b"{}"
        second.close()
    finally:
        await client.stop()
        await server.stop()
    assert server.connections == 1


async def test_a_cancelled_request_drops_its_connection(upstream: Upstream) -> None:
    silent = await serve(lambda _: (b"", False))  # reads the request, never answers
    try:
        task = asyncio.ensure_future(upstream.request(silent.origin, "GET", "/v1/models", [], b""))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        pool, _, _, _ = upstream._pool(silent.origin)
        assert pool._idle == []  # the half-used connection is not kept for the next request
    finally:
        await silent.stop()


async def test_an_https_origin_is_verified_and_served_over_tls(tmp_path: Path) -> None:
    # The real MISTRAL_API_BASE is https: the certificate must verify against the trust
    # store (here a self-signed one added through upstream_ca_bundle) and name the host.
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = ScriptedServer(lambda _: (OK, False))
    server.server = await asyncio.start_server(server._serve, "127.0.0.1", 0, ssl=context)
    origin = server.origin.replace("http://", "https://")
    trusting = Upstream(
        UpstreamOptions(connect_timeout=10.0, tls=UpstreamTls(ca_bundle=cert)), proxies={}
    )
    other = Upstream(UpstreamOptions(connect_timeout=10.0), proxies={})
    await trusting.start()
    await other.start()
    try:
        response = await trusting.request(origin, "POST", "/v1/chat/completions", [], b"{}")
        assert await response.read() == b"{}"
        response.close()
        assert server.received[0].body == b"{}"
        # Without the certificate in the trust store, nothing is sent.
        with pytest.raises(UpstreamConnectError, match="TLS failed: CERTIFICATE_VERIFY_FAILED"):
            await other.request(origin, "POST", "/v1/chat/completions", [], b"{}")
    finally:
        await trusting.stop()
        await other.stop()
        await server.stop()
    assert len(server.received) == 1


async def test_idle_connections_close_once_stale_with_no_further_call() -> None:
    server = await serve(lambda _: (OK, False))  # keeps every connection open
    client = Upstream(UpstreamOptions(connect_timeout=10.0, keepalive=0.05))
    await client.start()
    try:
        responses = await asyncio.gather(
            *(client.request(server.origin, "GET", "/", [], b"") for _ in range(3))
        )
        for response in responses:
            assert await response.read() == b"{}"
            response.close()
        assert (server.connections, server.closed_by_client) == (3, 0)
        for _ in range(100):  # no call comes: the pool's own timer closes them
            if server.closed_by_client == 3:
                break
            await asyncio.sleep(0.01)
        assert server.closed_by_client == 3
    finally:
        await client.stop()
        await server.stop()
