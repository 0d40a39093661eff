"""What the fake Mistral upstream records and how it is told to behave.

The test thread writes knobs and reads records; the server thread does the opposite. Knobs are a
frozen dataclass swapped whole, so the server never sees a half-applied change.
"""

import itertools
import json
import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Knobs:
    """Behaviour switches of the fake upstream."""

    stream_events: int = 5  # chunks (or events) per streamed response, the last with usage
    event_delay: float = 0.0  # seconds between two streamed events
    delay_first_byte: float = 0.0  # seconds between the end of the request body and the answer
    cut_stream_after: int | None = None  # close the connection after this many events
    cut_body_at: int | None = None  # close after this many bytes of a whole body (0: the head)
    reset: bool = False  # cut connections with a TCP reset (RST) instead of a clean close
    chunked: bool = False  # send whole bodies chunked (no Content-Length), in two parts
    hold_last_event: bool = False  # wait for FakeMistral.release_last_event() before the last
    gzip: bool = False  # gzip non-streamed bodies and say so in Content-Encoding
    keep_bodies: bool = True  # False: record only size and never keep (or parse) the bytes
    path_prefix: str = ""  # a path prefix the upstream lives under (stripped before routing)


@dataclass
class Recorded:
    """One request as the upstream received it."""

    method: str
    raw_path: bytes  # the request target as received: path and query string
    query: bytes
    headers: list[tuple[str, str]]  # lower-cased names, in the order received
    client_port: int  # one TCP connection per distinct port
    received_at: float  # time.monotonic() when the request head arrived
    body: bytes = b""
    body_size: int = 0
    body_done: threading.Event = field(default_factory=threading.Event)
    events_sent: list[float] = field(default_factory=list)  # when each SSE event was written
    holding: threading.Event = field(default_factory=threading.Event)  # last event held back
    completed_at: float | None = None  # when the full response was handed to the server
    disconnected_at: float | None = None  # when the client went away before the response ended
    disconnected: threading.Event = field(default_factory=threading.Event)

    @property
    def path(self) -> str:
        """The path part of the request target, still percent-encoded."""
        return self.raw_path.partition(b"?")[0].decode("latin-1")

    def header(self, name: str) -> str | None:
        """The first value of header `name` (case-insensitive), or None."""
        wanted = name.lower()
        return next((value for key, value in self.headers if key == wanted), None)

    def header_values(self, name: str) -> list[str]:
        """Every value of header `name` (case-insensitive), in order."""
        wanted = name.lower()
        return [value for key, value in self.headers if key == wanted]

    def json(self) -> Any:
        """The request body parsed as JSON."""
        return json.loads(self.body)


@dataclass(frozen=True)
class Canned:
    """A fixed response for one path, set by FakeMistral.set_response()."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]


@dataclass
class StoredFile:
    """A file uploaded to /v1/files."""

    filename: str
    purpose: str
    content: bytes
    size: int


class FakeState:
    """Everything the server thread and the test thread share."""

    def __init__(self, knobs: Knobs) -> None:
        self.knobs = knobs
        self.requests: list[Recorded] = []
        self.canned: dict[tuple[str | None, str], Canned] = {}
        self.files: dict[str, StoredFile] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.release = threading.Event()
        self.closing = threading.Event()
        self.ids = itertools.count(1)
        self.in_flight = 0
        self.max_in_flight = 0

    def next_id(self, prefix: str) -> str:
        """A fresh identifier such as `cmpl-7`."""
        return f"{prefix}-{next(self.ids)}"
