"""uvicorn's httptools protocol, with each response head sent in the same write as what follows.

uvicorn writes a response's status line and headers as soon as the app sends
``http.response.start``, then the body in a second ``write``: two system calls and two
packets per response, where one would do. On loopback each write costs as much as a large
share of the relay's own Python code (in profiles under load ``write`` was one of the
largest items of the event loop's time: ``docs/performance.md``). Here the head is held back
until the next write (the body, usually sent in the same step) or, at the latest, until the
loop's next iteration, so a streamed response's head is never delayed by more than that.

Parsing and framing stay entirely uvicorn's: this only joins bytes it has already framed.

The protocol also gives each request's scope the ``passgate.close_connection`` extension:
ASGI has no message that ends a response short, and an app that simply returns mid-body
gets an error logged by uvicorn for what is, for a relay, an expected event (an upstream
that broke off its answer). Its ``close`` closes the connection so that the client sees
the response cut, and uvicorn treats the response as abandoned by the client.
"""

from __future__ import annotations

import asyncio
from typing import Any

from passgate.asgi import CLOSE_CONNECTION
from passgate.runtime.guarded_protocol import GuardedHttpToolsProtocol

_HEAD = b"HTTP/1.1 "  # uvicorn starts every response head (and nothing else) with it


class HeadHoldingTransport(asyncio.Transport):
    """Wraps a transport: holds a response head until the next write or loop iteration."""

    __slots__ = ("_head", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._head: bytes | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Write ``data``; a response head waits for what follows it."""
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head + data)
        elif data[:9] == _HEAD:
            self._head = bytes(data)
            self._loop.call_soon(self._flush)
        else:
            self._transport.write(data)

    def writelines(self, list_of_data: Any) -> None:
        """Write each piece in turn."""
        for data in list_of_data:
            self.write(data)

    def _flush(self) -> None:
        head, self._head = self._head, None
        if head is not None and not self._transport.is_closing():
            self._transport.write(head)

    def close(self) -> None:
        """Send what is held, then close."""
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        """Drop what is held and close at once."""
        self._head = None
        self._transport.abort()

    def write_eof(self) -> None:
        """Send what is held, then half-close."""
        self._flush()
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        """Whether the wrapped transport can half-close."""
        return self._transport.can_write_eof()

    def get_write_buffer_size(self) -> int:
        """Bytes not yet handed to the kernel, held head included."""
        held = len(self._head) if self._head is not None else 0
        return held + self._transport.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        """The wrapped transport's flow-control limits."""
        return self._transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Set the wrapped transport's flow-control limits."""
        self._transport.set_write_buffer_limits(high, low)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """The wrapped transport's extra info (socket, peername, ...)."""
        return self._transport.get_extra_info(name, default)

    def is_closing(self) -> bool:
        """Whether the wrapped transport is closing."""
        return self._transport.is_closing()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        """Hand the connection to another protocol (a WebSocket upgrade)."""
        self._flush()
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        """The wrapped transport's protocol."""
        return self._transport.get_protocol()

    def is_reading(self) -> bool:
        """Whether the wrapped transport is reading."""
        return self._transport.is_reading()

    def pause_reading(self) -> None:
        """Stop reading from the client (uvicorn's flow control)."""
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        """Read from the client again."""
        self._transport.resume_reading()


class HeadHoldingHttpToolsProtocol(GuardedHttpToolsProtocol):
    """uvicorn's ``httptools`` protocol, bounded (``GuardedHttpToolsProtocol``), writing
    through a ``HeadHoldingTransport``."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Wrap the connection's transport, then let uvicorn set the connection up."""
        super().connection_made(HeadHoldingTransport(transport, self.loop))
        # One dict per connection, shared by its requests' scopes.
        self._extensions: dict[str, dict[object, object]] = {
            CLOSE_CONNECTION: {"close": self.close_unfinished}
        }

    def on_message_begin(self) -> None:
        """Let uvicorn start the request's scope, then offer the extension in it."""
        super().on_message_begin()
        self.scope["extensions"] = self._extensions

    def close_unfinished(self) -> None:
        """Close the connection in the middle of a response: the client sees it cut short."""
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # uvicorn then neither finishes nor reports the response
        self.transport.close()
