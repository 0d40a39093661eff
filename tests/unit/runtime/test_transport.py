"""HeadHoldingTransport: a response head leaves with what follows, or one loop turn later."""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState

from passgate.runtime.transport import HeadHoldingHttpToolsProtocol, HeadHoldingTransport

HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n"


class FakeTransport(asyncio.Transport):
    """Records writes and calls instead of sending anything."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = self.aborted = self.eof = False
        self.paused = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def write_eof(self) -> None:
        self.eof = True

    def can_write_eof(self) -> bool:
        return True

    def get_write_buffer_size(self) -> int:
        return 7

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 1234)}.get(name, default)

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False


def _wrapped() -> tuple[HeadHoldingTransport, FakeTransport]:
    inner = FakeTransport()
    return HeadHoldingTransport(inner, asyncio.get_running_loop()), inner


async def test_head_and_body_sent_in_the_same_step_make_one_write() -> None:
    outer, inner = _wrapped()
    outer.write(HEAD)
    outer.write(b"hello")
    assert inner.writes == [HEAD + b"hello"]
    await asyncio.sleep(0)
    assert inner.writes == [HEAD + b"hello"]  # nothing left to flush


async def test_a_head_alone_is_sent_on_the_next_loop_turn() -> None:
    outer, inner = _wrapped()
    outer.write(HEAD)
    assert inner.writes == []
    assert outer.get_write_buffer_size() == len(HEAD) + 7
    await asyncio.sleep(0)
    assert inner.writes == [HEAD]
    outer.write(b"data: 1\n\n")  # a streamed body goes out as it comes
    assert inner.writes == [HEAD, b"data: 1\n\n"]


async def test_body_writes_pass_straight_through() -> None:
    outer, inner = _wrapped()
    outer.write(b"5\r\nhello\r\n")
    outer.write(memoryview(b"0\r\n\r\n"))
    assert inner.writes == [b"5\r\nhello\r\n", b"0\r\n\r\n"]


async def test_close_sends_the_held_head_first() -> None:
    outer, inner = _wrapped()
    outer.write(HEAD)
    outer.close()
    assert inner.writes == [HEAD] and inner.closed
    await asyncio.sleep(0)
    assert inner.writes == [HEAD]


async def test_abort_drops_the_held_head() -> None:
    outer, inner = _wrapped()
    outer.write(HEAD)
    outer.abort()
    await asyncio.sleep(0)
    assert inner.writes == [] and inner.aborted


async def test_a_head_held_when_the_connection_closes_is_not_written() -> None:
    outer, inner = _wrapped()
    outer.write(HEAD)
    inner.closed = True  # the client went away before the loop turned
    await asyncio.sleep(0)
    assert inner.writes == []


async def test_everything_else_is_delegated() -> None:
    outer, inner = _wrapped()
    outer.write(HEAD)
    outer.write_eof()
    assert inner.writes == [HEAD] and inner.eof
    assert outer.can_write_eof()
    assert outer.get_extra_info("peername") == ("127.0.0.1", 1234)
    assert outer.get_extra_info("nothing", "x") == "x"
    outer.pause_reading()
    assert inner.paused
    outer.resume_reading()
    assert not inner.paused
    assert not outer.is_closing()


async def test_uvicorn_answers_a_request_with_one_write() -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]}
        )
        await send({"type": "http.response.body", "body": b"hello"})

    config = Config(app, lifespan="off", log_config=None, date_header=False, server_header=False)
    config.load()
    protocol = HeadHoldingHttpToolsProtocol(config, ServerState(), {}, asyncio.get_running_loop())
    inner = FakeTransport()
    protocol.connection_made(inner)
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    while protocol.cycle is None or not protocol.cycle.response_complete:
        await asyncio.sleep(0)
    assert inner.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"]
    protocol.connection_lost(None)
