"""One request's answer direct from an upstream and relayed by the gateway, compared.

client = Client(url)                     # keep-alive HTTP/1.1, the call's bytes as built
answer = client.send(target, call, ("Authorization", "Bearer ..."))
differences(direct, relayed)             # [] when the gateway relayed it faithfully
"""

from __future__ import annotations

import http.client
import json
import re
from collections import Counter
from dataclasses import dataclass

from tests.support.openapi_calls import SSE, SpecCall

# Fields of one response alone (its time) or of one hop: never compared.
_PER_HOP = frozenset({"date", "connection", "keep-alive", "transfer-encoding"})
# What the gateway adds to an answer (docs/passthrough.md): its request id, and cost and
# usage headers on priced answers.
_GATEWAY_ADDS = ("x-request-id", "x-passgate-")


@dataclass
class Answer:
    """One response as received: status, header fields in order, body bytes."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        """The first value of the (lowercase) field ``name``."""
        return next((v for k, v in self.headers if k == name), None)

    def problem_type(self) -> str:
        """The ``type`` of Prism's own problem+json answer, or ``""``."""
        if self.header("content-type") != "application/problem+json":
            return ""
        try:
            data = json.loads(self.body)
        except ValueError:
            return ""
        return str(data.get("type", "")) if isinstance(data, dict) else ""


class Client:
    """Keep-alive HTTP/1.1 to one server; a connection the server closed is opened again."""

    def __init__(self, base_url: str) -> None:
        host, port = base_url.removeprefix("http://").split(":")
        self._conn = http.client.HTTPConnection(host, int(port), timeout=15)

    def send(self, target: str, call: SpecCall, credential: tuple[str, str]) -> Answer:
        """``call`` to ``target``, its headers and body exactly as built."""
        try:
            return self._send(target, call, credential)
        except (http.client.RemoteDisconnected, ConnectionError):
            self._conn.close()  # closed while idle: every call here may be sent again
            return self._send(target, call, credential)

    def _send(self, target: str, call: SpecCall, credential: tuple[str, str]) -> Answer:
        self._conn.putrequest(call.method, target, skip_accept_encoding=True)
        for name, value in (*call.headers, credential):
            self._conn.putheader(name, value)
        if call.body is not None:
            self._conn.putheader("Content-Length", str(len(call.body)))
        self._conn.endheaders(call.body)
        response = self._conn.getresponse()
        body = response.read()
        headers = [(k.lower(), v) for k, v in response.getheaders()]
        return Answer(response.status, headers, body)

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()


# An event ends at a blank line, with any of the three line ends SSE allows.
_EVENT = re.compile(rb".*?(?:\r\n\r\n|\n\n|\r\r|\Z)", re.DOTALL)


def sse_events(body: bytes) -> list[bytes]:
    """An SSE body cut into its events, each its exact bytes up to its blank line included."""
    return [event for event in _EVENT.findall(body) if event]


def differences(direct: Answer, relayed: Answer) -> list[str]:
    """How the gateway's answer differs from the direct one (empty when faithful)."""
    found: list[str] = []
    if relayed.status != direct.status:
        found.append(f"status {relayed.status} != {direct.status}")
    direct_type = direct.header("content-type")
    if relayed.header("content-type") != direct_type:
        found.append(f"content-type {relayed.header('content-type')!r} != {direct_type!r}")
    if (direct_type or "").startswith(SSE):
        want, got_events = sse_events(direct.body), sse_events(relayed.body)
        if got_events != want:
            pairs = zip(want, got_events, strict=False)  # a length difference is reported below
            index = next((i for i, (a, b) in enumerate(pairs) if a != b), None)
            where = f"event {index}" if index is not None else "the number of events"
            found.append(f"SSE: {where} differs ({len(got_events)} events, {len(want)} sent)")
    elif relayed.body != direct.body:
        found.append(f"body {relayed.body[:120]!r} != {direct.body[:120]!r}")
    expected = Counter((k, v) for k, v in direct.headers if k not in _PER_HOP)
    got = Counter((k, v) for k, v in relayed.headers if k not in _PER_HOP)
    missing = expected - got
    if missing:
        found.append(f"headers lost or changed: {sorted(missing)}")
    added = sorted(k for k, _ in (got - expected).elements() if not k.startswith(_GATEWAY_ADDS))
    if added:
        found.append(f"headers added: {added}")
    return found
