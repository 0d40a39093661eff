"""The plumbing every fake provider upstream shares: a real uvicorn server on loopback, run in
a thread, recording every request (``FakeApp`` and ``FakeState`` of the fake Mistral), with the
fake Mistral's knobs and canned answers. A fake provider is a router over ``Call`` handlers:

    class FakeX(FakeServer):
        def __init__(self, *, api_key: str = KEY, **knobs: Any) -> None:
            super().__init__("x", router(api_key), **knobs)
"""

import dataclasses
import logging
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

import uvicorn

from tests.support.fake_mistral_app import Call, FakeApp, Handler
from tests.support.fake_mistral_state import Canned, FakeState, Knobs, Recorded

__all__ = ["FakeServer", "Knobs", "Recorded"]

_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 5.0
# uvicorn reports a response cut on purpose (cut_stream_after) as an application error.
_EXPECTED_ERRORS = ("ASGI callable returned without completing response.",)


class _QuietThread(logging.Filter):
    """Drops the fake server's own chatter and the errors its fault knobs cause on purpose."""

    def __init__(self, thread_name: str) -> None:
        super().__init__()
        self.thread_name = thread_name

    def filter(self, record: logging.LogRecord) -> bool:
        if record.threadName != self.thread_name:
            return True
        return record.levelno >= logging.WARNING and record.getMessage() not in _EXPECTED_ERRORS


class FakeServer:
    """A fake upstream. Use as a context manager, or call start() and stop()."""

    def __init__(
        self,
        name: str,
        route: Callable[[Call], Handler | None],
        *,
        server_options: dict[str, Any] | None = None,
        **knobs: Any,
    ) -> None:
        self.name = name
        self._state = FakeState(dataclasses.replace(Knobs(), **knobs))
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        scheme = "https" if server_options and "ssl_certfile" in server_options else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            FakeApp(self._state, route),
            **(server_options or {}),
            loop="asyncio",
            http="httptools",
            ws="none",
            lifespan="off",
            access_log=False,
            log_config=None,
            timeout_keep_alive=60,
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name=f"fake-{name}-{self.port}",
            daemon=True,
        )
        self._quiet = _QuietThread(self._thread.name)

    def start(self) -> Self:
        """Start serving; returns once the port accepts connections."""
        logging.getLogger("uvicorn.error").addFilter(self._quiet)
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the fake {self.name} upstream on {self.port} did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """Abort pending streams, stop the server and free the port."""
        self._state.closing.set()
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(_STOP_TIMEOUT)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(_STOP_TIMEOUT)
        self._socket.close()
        logging.getLogger("uvicorn.error").removeFilter(self._quiet)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def requests(self) -> list[Recorded]:
        """Every request received so far, oldest first."""
        return self._state.requests

    @property
    def last(self) -> Recorded:
        """The most recent request, once its whole body has arrived."""
        if not self._state.requests:
            raise AssertionError(f"the fake {self.name} upstream has received no request")
        record = self._state.requests[-1]
        if not record.body_done.wait(5.0):
            raise AssertionError(f"the body of {record.method} {record.path} never completed")
        return record

    @property
    def knobs(self) -> Knobs:
        """The behaviour in force."""
        return self._state.knobs

    def configure(self, **changes: Any) -> None:
        """Change knobs for the requests that arrive from now on."""
        if changes.get("hold_last_event"):
            self._state.release.clear()
        self._state.knobs = dataclasses.replace(self._state.knobs, **changes)

    def release_last_event(self) -> None:
        """Let streams held by `hold_last_event` send their last event."""
        self._state.release.set()

    def wait_for_requests(self, count: int = 1, timeout: float = 5.0) -> list[Recorded]:
        """Block until `count` requests have arrived with their whole body; return them."""
        deadline = time.monotonic() + timeout
        while len(self._state.requests) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} requests, got {len(self.requests)}")
            time.sleep(0.002)
        received = self._state.requests[:count]
        for record in received:
            if not record.body_done.wait(max(deadline - time.monotonic(), 0.0)):
                raise AssertionError(f"the body of {record.method} {record.path} never completed")
        return received

    def set_response(
        self,
        path: str,
        body: bytes | str,
        *,
        status: int = 200,
        headers: list[tuple[str, str]] | None = None,
        method: str | None = None,
    ) -> None:
        """Answer authorised requests to `path` (exact, without query) with this."""
        raw = body.encode() if isinstance(body, str) else body
        self._state.canned[(method, path)] = Canned(status, raw, tuple(headers or []))

    def reset(self) -> None:
        """Forget requests and canned responses; restore the default knobs."""
        self._state.requests.clear()
        self._state.canned.clear()
        self._state.knobs = Knobs()
