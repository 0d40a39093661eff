"""The plumbing every fake provider upstream shares: a real uvicorn server on loopback, run in
a thread, recording every request (``FakeApp`` and ``FakeState`` of the fake Mistral), with the
fake Mistral's knobs and canned answers. A fake provider is a router over ``Call`` handlers:

    class FakeX(FakeServer):
        def __init__(self, *, api_key: str = KEY, **knobs: Any) -> None:
            super().__init__("x", router(api_key), **knobs)
"""

import dataclasses
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


class FakeServer:
    """A fake upstream. Use as a context manager, or call start() and stop()."""

    def __init__(self, name: str, route: Callable[[Call], Handler | None], **knobs: Any) -> None:
        self.name = name
        self._state = FakeState(dataclasses.replace(Knobs(), **knobs))
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            FakeApp(self._state, route),
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

    def start(self) -> Self:
        """Start serving; returns once the port accepts connections."""
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

    def configure(self, **changes: Any) -> None:
        """Change knobs for the requests that arrive from now on."""
        self._state.knobs = dataclasses.replace(self._state.knobs, **changes)

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
