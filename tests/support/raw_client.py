"""Raw TCP clients for tests of the server side: heads sent in pieces, never finished, or huge.

The bytes go out exactly as given; the answer is parsed by ``http.client``.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import socket
import time
from dataclasses import dataclass

import orjson


@dataclass
class RawReply:
    """What came back on one connection: a parsed response (or none), and whether it closed."""

    status: int | None
    headers: dict[str, str]
    body: bytes
    closed: bool  # the server closed the connection after (or instead of) answering
    elapsed: float  # seconds from the last byte sent to the answer or the close

    def error_code(self) -> object:
        """The ``error.code`` of the gateway's JSON error body."""
        data = orjson.loads(self.body)
        assert isinstance(data, dict) and isinstance(data.get("error"), dict), self.body
        return data["error"]["code"]


def connect(port: int, timeout: float = 10.0) -> socket.socket:
    """A TCP connection to the gateway on loopback."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_reply(sock: socket.socket) -> RawReply:
    """Wait for a response or a close on ``sock`` (within its timeout) and parse it."""
    started = time.monotonic()
    response = http.client.HTTPResponse(sock)
    try:
        response.begin()
    except (http.client.RemoteDisconnected, ConnectionResetError):
        return RawReply(None, {}, b"", True, time.monotonic() - started)
    body = response.read()
    headers = {name.lower(): value for name, value in response.getheaders()}
    elapsed = time.monotonic() - started
    return RawReply(response.status, headers, body, is_closed(sock), elapsed)


def is_closed(sock: socket.socket, wait: float = 2.0) -> bool:
    """Whether the peer closes ``sock`` within ``wait`` seconds (reading and dropping data)."""
    sock.settimeout(wait)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


def send_and_read(port: int, data: bytes, timeout: float = 10.0) -> RawReply:
    """Send ``data`` on a new connection and read what comes back."""
    with connect(port, timeout) as sock:
        # refused before all was sent: the answer may still be readable
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        return read_reply(sock)


def metric(text: str, sample: str) -> float:
    """The value of one sample line (name and labels exactly as exposed) in ``/metrics`` text."""
    match = re.search("^" + re.escape(sample) + r" (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0
