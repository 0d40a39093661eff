"""A raw HTTP client for tests: http.client, so nothing rewrites path, body or headers."""

from __future__ import annotations

import http.client
from dataclasses import dataclass

import orjson


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> object:
        return orjson.loads(self.body)

    @property
    def error(self) -> dict[str, object]:
        data = self.json()
        assert isinstance(data, dict) and isinstance(data.get("error"), dict), self.body
        error: dict[str, object] = data["error"]
        return error


def request(
    url: str,
    method: str,
    target: str,
    body: bytes | None = None,
    headers: dict[str, str] | list[tuple[str, str]] | None = None,
    timeout: float = 10.0,
) -> Reply:
    """Send one request with the exact target, body and headers given."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.putrequest(method, target, skip_host=False, skip_accept_encoding=True)
        items = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
        for name, value in items:
            conn.putheader(name, value)
        if body is not None and not any(n.lower() == "content-length" for n, _ in items):
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        data = response.read()
        return Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, data)
    finally:
        conn.close()
