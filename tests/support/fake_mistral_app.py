"""The raw-ASGI plumbing of the fake Mistral upstream: record, watch for disconnects, answer."""

import asyncio
import contextlib
import gzip
import json
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from tests.support.fake_mistral_state import FakeState, Recorded

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

JSON_TYPE = "application/json"
SSE_TYPE = "text/event-stream"


def encode_json(value: Any) -> bytes:
    """Compact JSON bytes, the way Mistral sends them."""
    return json.dumps(value, separators=(",", ":")).encode()


def sse_data(value: Any) -> bytes:
    """An unnamed SSE event (chat, FIM)."""
    return b"data: " + encode_json(value) + b"\n\n"


def sse_event(name: str, value: Any) -> bytes:
    """A named SSE event (conversations, audio)."""
    return b"event: " + name.encode() + b"\ndata: " + encode_json(value) + b"\n\n"


class Call:
    """One request being answered: its record, and sending helpers that honour the knobs."""

    def __init__(self, state: FakeState, record: Recorded, send: Send) -> None:
        self.state = state
        self.knobs = state.knobs  # one consistent view for the whole request
        self.record = record
        self.gone = asyncio.Event()
        self._send = send
        self.finished = False

    async def pause(self, seconds: float) -> bool:
        """Sleep `seconds`; False when the client left (or the server is closing) meanwhile."""
        deadline = time.monotonic() + seconds
        while not self.gone.is_set() and not self.state.closing.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.gone.wait(), min(remaining, 0.05))
        return False

    async def wait_release(self) -> bool:
        """Wait for FakeMistral.release_last_event(); False when the client left first."""
        while not self.state.release.is_set():
            if not await self.pause(0.005):
                return False
        return True

    async def start(self, status: int, headers: Iterable[tuple[str, str]]) -> None:
        """Send the response head."""
        raw = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in headers]
        await self._send({"type": "http.response.start", "status": status, "headers": raw})

    async def chunk(self, data: bytes) -> None:
        """Send part of the body; more follows."""
        await self._send({"type": "http.response.body", "body": data, "more_body": True})

    def enter(self) -> None:
        """Count this call as in flight."""
        self.state.in_flight += 1
        self.state.max_in_flight = max(self.state.max_in_flight, self.state.in_flight)

    def leave(self) -> None:
        """Stop counting this call as in flight (once), before its client can see the end."""
        if not self.finished:
            self.finished = True
            self.state.in_flight -= 1

    async def end(self, data: bytes = b"") -> None:
        """Send the last part of the body."""
        self.leave()
        self.record.completed_at = time.monotonic()
        await self._send({"type": "http.response.body", "body": data, "more_body": False})

    async def respond(
        self,
        status: int,
        body: bytes,
        content_type: str | None = JSON_TYPE,
        headers: Iterable[tuple[str, str]] = (),
    ) -> None:
        """Send a whole response, gzipped when the gzip knob is on."""
        head = [("content-type", content_type)] if content_type else []
        head.extend(headers)
        if self.knobs.gzip:
            body = gzip.compress(body, mtime=0)
            head.append(("content-encoding", "gzip"))
        if not self.knobs.chunked:
            head.append(("content-length", str(len(body))))
        await self.start(status, head)
        cut = self.knobs.cut_body_at
        if cut is not None:
            if cut:
                await self.chunk(body[:cut])
            self.drop()
            return
        if self.knobs.chunked:
            half = len(body) // 2
            await self.chunk(body[:half])
            body = body[half:]
        await self.end(body)

    def drop(self) -> None:
        """Leave the response unfinished: the server then closes the connection (a FIN), or
        under the ``reset`` knob the connection is reset here (an RST, as from a crash)."""
        if not self.knobs.reset:
            return
        # ASGI offers no way to the socket: uvicorn's ``send`` is a method of its request
        # cycle, which holds the transport.
        cycle: Any = self._send.__self__  # type: ignore[attr-defined]
        transport: asyncio.Transport = cycle.transport
        linger = struct.pack("ii", 1, 0)  # close() with zero linger sends an RST
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        transport.abort()

    async def json(self, value: Any, status: int = 200) -> None:
        """Send a JSON response."""
        await self.respond(status, encode_json(value))

    async def stream(self, events: list[bytes], trailer: bytes = b"") -> None:
        """Send SSE events one body message each, honouring delay, hold and cut knobs.

        `hold_last_event` holds the last event of `events` (the one with usage), not the
        `trailer` (chat's `data: [DONE]`) that follows it.
        """
        await self.start(200, [("content-type", SSE_TYPE), ("cache-control", "no-cache")])
        messages = [*events, trailer] if trailer else events
        for index, event in enumerate(messages):
            if index == self.knobs.cut_stream_after:
                self.drop()
                return
            held = index == len(events) - 1 and self.knobs.hold_last_event
            if held:
                self.record.holding.set()
                if not await self.wait_release():
                    return
            if self.gone.is_set():
                return
            self.record.events_sent.append(time.monotonic())
            await self.chunk(event)
            last = index == len(messages) - 1
            if not last and self.knobs.event_delay and not await self.pause(self.knobs.event_delay):
                return
        await self.end()


Handler = Callable[[Call], Awaitable[None]]
Router = Callable[[Call], Handler | None]


class FakeApp:
    """The ASGI application: records each request, then hands it to the router's handler."""

    def __init__(self, state: FakeState, router: Router) -> None:
        self.state = state
        self.router = router

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        query: bytes = scope.get("query_string", b"")
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        client = scope.get("client") or ("", 0)
        record = Recorded(
            method=scope["method"],
            raw_path=raw_path + (b"?" + query if query else b""),
            query=query,
            headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]],
            client_port=int(client[1]),
            received_at=time.monotonic(),
        )
        self.state.requests.append(record)
        call = Call(self.state, record, send)
        if not await self._read_body(call, receive):
            return
        watcher = asyncio.create_task(self._watch(call, receive))
        call.enter()
        try:
            if call.knobs.delay_first_byte and not await call.pause(call.knobs.delay_first_byte):
                return
            handler = self.router(call)
            if handler is None:
                await call.json({"detail": "Not Found"}, status=404)
            else:
                await handler(call)
        finally:
            call.leave()
            watcher.cancel()

    async def _read_body(self, call: Call, receive: Receive) -> bool:
        """Read the whole body into the record; False when the client left mid-body."""
        keep = call.knobs.keep_bodies
        body = bytearray()
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self._mark_gone(call)
                return False
            data: bytes = message.get("body", b"")
            size += len(data)
            if keep:
                body += data
            if not message.get("more_body", False):
                break
        call.record.body = bytes(body)
        call.record.body_size = size
        call.record.body_done.set()
        return True

    async def _watch(self, call: Call, receive: Receive) -> None:
        """Note the moment the client's connection drops before the response is complete."""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if not call.finished:
                    self._mark_gone(call)
                return

    @staticmethod
    def _mark_gone(call: Call) -> None:
        call.record.disconnected_at = time.monotonic()
        call.record.disconnected.set()
        call.gone.set()
