"""A fake Mistral API: a real HTTP server on loopback, run in a thread, that records every request.

    with FakeMistral() as up:                    # up.url == "http://127.0.0.1:PORT"
        ... call up.url (or a gateway pointed at it) ...
        record = up.requests[-1]                 # method, raw_path, headers, body, ...

Fixed usage (see fake_mistral_payloads) lets tests compute expected cost. Faults are knobs
(`FakeMistral(delay_first_byte=2)`, `up.configure(cut_stream_after=3)`; see Knobs), and
`closed_port()` gives a URL nobody listens on.
"""

import contextlib
import dataclasses
import logging
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn

from tests.support.fake_mistral_app import FakeApp
from tests.support.fake_mistral_routes import route
from tests.support.fake_mistral_state import Canned, FakeState, Knobs, Recorded, StoredFile

__all__ = ["FakeMistral", "Knobs", "Recorded", "TlsServing", "closed_port"]

_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 5.0
# uvicorn reports a response cut on purpose (cut_stream_after) as an application error.
_EXPECTED_ERRORS = ("ASGI callable returned without completing response.",)


@dataclasses.dataclass(frozen=True)
class TlsServing:
    """Serve HTTPS with this certificate; with ``client_ca``, demand a client certificate."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def uvicorn_options(self) -> dict[str, Any]:
        """The uvicorn settings for it."""
        options: dict[str, Any] = {"ssl_certfile": self.cert, "ssl_keyfile": self.key}
        if self.client_ca is not None:
            options |= {"ssl_ca_certs": str(self.client_ca), "ssl_cert_reqs": ssl.CERT_REQUIRED}
        return options


class _QuietThread(logging.Filter):
    """Drops the fake server's own chatter and the errors its fault knobs cause on purpose."""

    def __init__(self, thread_name: str) -> None:
        super().__init__()
        self.thread_name = thread_name

    def filter(self, record: logging.LogRecord) -> bool:
        if record.threadName != self.thread_name:
            return True
        return record.levelno >= logging.WARNING and record.getMessage() not in _EXPECTED_ERRORS


class FakeMistral:
    """The fake upstream. Use as a context manager, or call start() and stop()."""

    def __init__(self, *, tls: TlsServing | None = None, **knobs: Any) -> None:
        self._state = FakeState(dataclasses.replace(Knobs(), **knobs))
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            FakeApp(self._state, route),
            **(tls.uvicorn_options() if tls is not None else {}),
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
            name=f"fake-mistral-{self.port}",
            daemon=True,
        )
        self._quiet = _QuietThread(self._thread.name)

    def start(self) -> "FakeMistral":
        """Start serving; returns once the port accepts connections."""
        logging.getLogger("uvicorn.error").addFilter(self._quiet)
        self._thread.start()
        deadline = time.monotonic() + _START_TIMEOUT
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the fake Mistral upstream on port {self.port} did not start")
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

    def __enter__(self) -> "FakeMistral":
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
        """Every request received so far, oldest first (recorded as soon as its head arrives)."""
        return self._state.requests

    @property
    def last(self) -> Recorded:
        """The most recent request."""
        if not self._state.requests:
            raise AssertionError("the fake Mistral upstream has received no request")
        return self._state.requests[-1]

    @property
    def knobs(self) -> Knobs:
        """The behaviour in force."""
        return self._state.knobs

    @property
    def files(self) -> dict[str, StoredFile]:
        """Files uploaded to /v1/files, by id."""
        return self._state.files

    @property
    def in_flight(self) -> int:
        """Requests whose body was read and whose response is not finished."""
        return self._state.in_flight

    @property
    def max_in_flight(self) -> int:
        """The most requests in flight at once since the start (or the last reset)."""
        return self._state.max_in_flight

    def open_connections(self) -> int:
        """TCP connections the server holds open right now."""
        return len(self._server.server_state.connections)

    def configure(self, **changes: Any) -> None:
        """Change knobs for the requests that arrive from now on."""
        if changes.get("hold_last_event"):
            self._state.release.clear()
        self._state.knobs = dataclasses.replace(self._state.knobs, **changes)

    def release_last_event(self) -> None:
        """Let streams held by `hold_last_event` send their last event."""
        self._state.release.set()

    def set_response(
        self,
        path: str,
        body: bytes | str,
        *,
        status: int = 200,
        headers: list[tuple[str, str]] | None = None,
        method: str | None = None,
    ) -> None:
        """Answer requests to `path` (exact, without query; any method unless given) with this."""
        raw = body.encode() if isinstance(body, str) else body
        canned = Canned(status=status, body=raw, headers=tuple(headers or []))
        self._state.canned[(method, path)] = canned

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

    def reset(self) -> None:
        """Forget requests, canned responses, files and jobs; restore the default knobs."""
        self._state.requests.clear()
        self._state.canned.clear()
        self._state.files.clear()
        self._state.jobs.clear()
        self._state.max_in_flight = self._state.in_flight
        self._state.knobs = Knobs()


@contextlib.contextmanager
def closed_port() -> Iterator[str]:
    """A URL on loopback where nothing listens (the port is held, so nobody else takes it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{holder.getsockname()[1]}"
