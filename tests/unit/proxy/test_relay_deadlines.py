"""The relay's deadlines and disconnect handling, against a raw TCP upstream that stalls on cue.

In process and fast: the relay is called as an ASGI app with a scripted client, and the
upstream is an asyncio server writing exactly the bytes each test wants, then stalling.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import pytest

from passgate.asgi import CLOSE_CONNECTION
from passgate.auth.master import MasterKey, MasterKeyAuthenticator
from passgate.config import Settings
from passgate.exchange import Exchange
from passgate.providers.registry import enabled
from passgate.proxy.body import BodyPolicy
from passgate.proxy.hooks import Pipeline
from passgate.proxy.relay import Relay
from passgate.proxy.upstream import Upstream, UpstreamOptions
from passgate.types import Message

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Coroutine[Any, Any, None]]
STALL = 30.0  # longer than any test: the relay's deadline must end the wait


class StallingUpstream:
    """A TCP server running ``script`` for each connection; notes when a connection closes."""

    def __init__(self, script: Script) -> None:
        self._script = script
        self.closed = asyncio.Event()
        self.server: asyncio.Server | None = None
        self.url = ""

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        script = asyncio.create_task(self._script(reader, writer))
        try:
            await reader.read()  # until the relay closes the connection
        finally:
            self.closed.set()
            script.cancel()
            writer.close()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        host, port = self.server.sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"


async def _read_request(reader: asyncio.StreamReader) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            await reader.readexactly(int(line.split(b":", 1)[1]))


class Recorder:
    """Observer keeping the finished Exchange."""

    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []

    async def finished(self, ex: Exchange) -> None:
        self.exchanges.append(ex)


class Client:
    """A scripted ASGI client: sends one body, records what it gets, may leave on cue."""

    def __init__(self, leave_after: float | None = None) -> None:
        self.sent: list[Message] = []
        self._body_sent = False
        self._leave_after = leave_after

    async def receive(self) -> Message:
        if not self._body_sent:
            self._body_sent = True
            return {"type": "http.request", "body": b'{"model":"m"}', "more_body": False}
        if self._leave_after is None:
            await asyncio.sleep(STALL)
        else:
            await asyncio.sleep(self._leave_after)
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        self.sent.append(message)

    @property
    def status(self) -> int | None:
        starts = [m for m in self.sent if m["type"] == "http.response.start"]
        return starts[0]["status"] if starts else None

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")


@pytest.fixture
async def relay_for() -> AsyncIterator[Callable[[str], Awaitable[tuple[Relay, Recorder]]]]:
    upstreams: list[Upstream] = []

    async def build(base: str) -> tuple[Relay, Recorder]:
        settings = Settings.model_validate(
            {
                "mistral_api_base": base,
                "mistral_api_key": "k",
                "first_byte_timeout": 0.3,
                "idle_timeout": 0.3,
            }
        )
        upstream = Upstream(UpstreamOptions.from_settings(settings))
        await upstream.start()
        upstreams.append(upstream)
        recorder = Recorder()
        pipeline = Pipeline(MasterKeyAuthenticator(MasterKey(None)), observers=(recorder,))
        relay = Relay(
            b"/mistral",
            enabled(settings.upstreams())[0],
            upstream,
            pipeline,
            BodyPolicy(1 << 20, 1 << 20),
            settings.first_byte_timeout,
            settings.idle_timeout,
        )
        return relay, recorder

    yield build
    for upstream in upstreams:
        await upstream.stop()


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Script], Awaitable[StallingUpstream]]]:
    servers: list[StallingUpstream] = []

    async def start(script: Script) -> StallingUpstream:
        server = StallingUpstream(script)
        servers.append(server)
        await server.start()
        return server

    yield start
    for server in servers:
        if server.server is not None:
            server.server.close()
            await server.server.wait_closed()


def _scope() -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "path": "/mistral/v1/chat/completions",
        "raw_path": b"/mistral/v1/chat/completions",
        "query_string": b"",
        "headers": [(b"content-type", b"application/json"), (b"content-length", b"13")],
    }


async def _run(relay: Relay, client: Client, scope: dict[str, Any] | None = None) -> None:
    """Run one call in its own task; it must end normally (a watch's cancel taken back)."""
    task = asyncio.create_task(relay(scope or _scope(), client.receive, client.send))
    await asyncio.wait_for(asyncio.shield(task), 5)
    assert task.done() and not task.cancelled() and task.cancelling() == 0


async def _stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(STALL)


async def _half_a_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n{"
    )
    await writer.drain()
    await asyncio.sleep(STALL)


async def _one_event(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"a\r\ndata: {}\n\n\r\n"
    )
    await writer.drain()
    await asyncio.sleep(STALL)


async def test_no_first_byte_in_time_is_504_and_closes_the_upstream(
    relay_for: Callable[[str], Awaitable[tuple[Relay, Recorder]]],
    serve: Callable[[Script], Awaitable[StallingUpstream]],
) -> None:
    upstream = await serve(_stall)
    relay, recorder = await relay_for(upstream.url)
    client = Client()
    await _run(relay, client)
    assert client.status == 504
    assert b"upstream_timeout" in client.body
    await asyncio.wait_for(upstream.closed.wait(), 2)
    assert recorder.exchanges[0].status == 504


async def test_a_body_that_stops_coming_is_504(
    relay_for: Callable[[str], Awaitable[tuple[Relay, Recorder]]],
    serve: Callable[[Script], Awaitable[StallingUpstream]],
) -> None:
    upstream = await serve(_half_a_body)
    relay, recorder = await relay_for(upstream.url)
    client = Client()
    await _run(relay, client)
    assert client.status == 504
    await asyncio.wait_for(upstream.closed.wait(), 2)
    (ex,) = recorder.exchanges
    assert ex.interrupted  # the answer had begun (its head was in)


async def test_a_stream_that_goes_idle_is_cut_after_the_events_it_sent(
    relay_for: Callable[[str], Awaitable[tuple[Relay, Recorder]]],
    serve: Callable[[Script], Awaitable[StallingUpstream]],
) -> None:
    upstream = await serve(_one_event)
    relay, recorder = await relay_for(upstream.url)
    client = Client()
    closes: list[bool] = []
    scope = _scope()
    scope["extensions"] = {CLOSE_CONNECTION: {"close": lambda: closes.append(True)}}
    await _run(relay, client, scope)
    assert client.status == 200
    assert client.body == b"data: {}\n\n"
    # never the end of the response: the connection is closed, the client sees a cut
    assert client.sent[-1] == {
        "type": "http.response.body",
        "body": b"data: {}\n\n",
        "more_body": True,
    }
    assert closes == [True]
    (ex,) = recorder.exchanges
    assert ex.interrupted and ex.error == "upstream stream idle timeout"
    await asyncio.wait_for(upstream.closed.wait(), 2)


async def test_a_client_leaving_a_slow_call_closes_the_upstream(
    relay_for: Callable[[str], Awaitable[tuple[Relay, Recorder]]],
    serve: Callable[[Script], Awaitable[StallingUpstream]],
) -> None:
    upstream = await serve(_stall)
    relay, recorder = await relay_for(upstream.url)
    client = Client(leave_after=0.1)  # before the first-byte deadline (0.3 s)
    await _run(relay, client)
    assert client.status is None  # nothing was sent to a client that has gone
    (ex,) = recorder.exchanges
    assert ex.interrupted and ex.error == "client disconnected"
    await asyncio.wait_for(upstream.closed.wait(), 2)
