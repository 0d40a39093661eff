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
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.support.fake_mistral_routes import route
from tests.support.fake_mistral_state import Knobs, Recorded, StoredFile
from tests.support.fake_server import FakeServer

__all__ = ["FakeMistral", "Knobs", "Recorded", "TlsServing", "closed_port"]


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


class FakeMistral(FakeServer):
    """The fake upstream. Use as a context manager, or call start() and stop()."""

    def __init__(self, *, tls: TlsServing | None = None, **knobs: Any) -> None:
        super().__init__(
            "mistral",
            route,
            server_options=None if tls is None else tls.uvicorn_options(),
            **knobs,
        )

    @property
    def last(self) -> Recorded:
        """The most recent request (its body may still be arriving)."""
        if not self._state.requests:
            raise AssertionError("the fake Mistral upstream has received no request")
        return self._state.requests[-1]

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
