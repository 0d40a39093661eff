"""The server side bounds every client: head size, head and body time, connections per worker.

Each test talks raw TCP to a real ``passgate`` process, so the bytes are exactly what an
attacker or a slow network would send; the fake upstream shows what was forwarded.
"""

from __future__ import annotations

import re
import time

import pytest

from tests.conftest import MASTER_KEY, PROVIDER_KEY, GatewayFactory
from tests.support.fake_mistral import FakeMistral
from tests.support.gateway import GatewayProcess
from tests.support.http import request
from tests.support.raw_client import connect, is_closed, metric, read_reply, send_and_read

BEARER = {"Authorization": f"Bearer {MASTER_KEY}"}
AUTH = f"Authorization: Bearer {MASTER_KEY}\r\n".encode()
LINE, HEAD, FIELDS = 1024, 4096, 20
TIMEOUT = 0.5
# generous: the limits above are what is tested, not how fast the gateway is
WITHIN = 5.0


def _env(up: FakeMistral, **extra: str) -> dict[str, str]:
    return {
        "MISTRAL_API_BASE": up.url,
        "MISTRAL_API_KEY": PROVIDER_KEY,
        "PASSGATE_MASTER_KEY": MASTER_KEY,
        **extra,
    }


@pytest.fixture(scope="module")
def bounded(fake_upstream: FakeMistral, start_gateway: GatewayFactory) -> GatewayProcess:
    """A gateway with small head limits and short timeouts."""
    return start_gateway(
        _env(
            fake_upstream,
            PASSGATE_MAX_HEADER_LINE_BYTES=str(LINE),
            PASSGATE_MAX_HEAD_BYTES=str(HEAD),
            PASSGATE_MAX_HEADERS=str(FIELDS),
            PASSGATE_HEAD_TIMEOUT=str(TIMEOUT),
            PASSGATE_BODY_IDLE_TIMEOUT=str(TIMEOUT),
        )
    )


def _get(target: str = "/mistral/v1/models", headers: bytes = b"") -> bytes:
    return b"GET " + target.encode() + b" HTTP/1.1\r\nHost: gw\r\n" + AUTH + headers + b"\r\n"


def _rejected(gw: GatewayProcess, reason: str) -> float:
    text = request(gw.url, "GET", "/metrics").body.decode()
    return metric(text, f'passgate_requests_rejected_total{{reason="{reason}"}}')


def _still_serving(gw: GatewayProcess) -> None:
    assert request(gw.url, "GET", "/health/liveliness").status == 200


def test_the_issue_heads_are_refused_with_the_defaults(
    upstream: FakeMistral, gateway: GatewayProcess
) -> None:
    big = send_and_read(gateway.port, _get(headers=b"X-Big: " + b"a" * 65536 + b"\r\n"))
    many = send_and_read(
        gateway.port, _get(headers=b"".join(b"X-H%d: v\r\n" % i for i in range(200)))
    )
    for reply in (big, many):
        assert reply.status == 431
        assert reply.error_code() == "request_header_fields_too_large"
        assert reply.headers["content-type"] == "application/json"
        assert reply.headers["connection"] == "close"
        assert reply.headers["x-request-id"]
        assert reply.closed
    assert upstream.requests == []  # nothing forwarded
    _still_serving(gateway)


def test_a_header_line_over_the_limit_is_431(
    upstream: FakeMistral, bounded: GatewayProcess
) -> None:
    before = _rejected(bounded, "head_too_large")
    reply = send_and_read(bounded.port, _get(headers=b"X-Long: " + b"a" * LINE + b"\r\n"))
    assert reply.status == 431
    assert reply.error_code() == "request_header_fields_too_large"
    assert reply.closed
    assert upstream.requests == []
    assert _rejected(bounded, "head_too_large") == before + 1
    _still_serving(bounded)


def test_many_lines_under_the_line_limit_but_over_the_head_limit_are_431(
    upstream: FakeMistral, bounded: GatewayProcess
) -> None:
    lines = b"".join(b"X-Part-%d: %s\r\n" % (i, b"b" * (LINE - 40)) for i in range(6))
    reply = send_and_read(bounded.port, _get(headers=lines))
    assert reply.status == 431
    assert upstream.requests == []


def test_more_fields_than_allowed_are_431(upstream: FakeMistral, bounded: GatewayProcess) -> None:
    fields = b"".join(b"X-F%d: v\r\n" % i for i in range(FIELDS))  # plus Host and Authorization
    reply = send_and_read(bounded.port, _get(headers=fields))
    assert reply.status == 431
    assert upstream.requests == []


def test_a_head_within_every_limit_is_forwarded(
    upstream: FakeMistral, bounded: GatewayProcess
) -> None:
    fields = b"".join(b"X-F%d: %s\r\n" % (i, b"c" * 100) for i in range(FIELDS - 3))
    reply = send_and_read(bounded.port, _get(headers=fields + b"Connection: close\r\n"))
    assert reply.status == 200
    assert upstream.last.header("x-f0") == "c" * 100


def test_a_request_target_over_the_line_limit_is_414(
    upstream: FakeMistral, bounded: GatewayProcess
) -> None:
    reply = send_and_read(bounded.port, _get("/mistral/v1/models?q=" + "x" * LINE))
    assert reply.status == 414
    assert reply.error_code() == "target_too_long"
    assert upstream.requests == []


def test_a_head_trickling_past_the_limit_is_refused_before_it_ends(
    upstream: FakeMistral, bounded: GatewayProcess
) -> None:
    with connect(bounded.port) as sock:
        sock.sendall(b"GET /mistral/v1/models HTTP/1.1\r\nHost: gw\r\n")
        sent = 0
        try:
            while sent <= 2 * HEAD:  # one field after another, never the blank line
                sock.sendall(b"X-Pad-%d: %s\r\n" % (sent, b"d" * 200))
                sent += 220
                time.sleep(0.005)
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply = read_reply(sock)
    assert reply.status == 431
    assert upstream.requests == []


def test_a_malformed_request_gets_the_json_error_shape(bounded: GatewayProcess) -> None:
    reply = send_and_read(bounded.port, b"NOT HTTP AT ALL\r\n\r\n")
    assert reply.status == 400
    assert reply.error_code() == "bad_request"
    assert reply.headers["x-request-id"]
    _still_serving(bounded)


def test_a_head_that_never_ends_gets_408_and_is_closed(
    upstream: FakeMistral, bounded: GatewayProcess
) -> None:
    before = _rejected(bounded, "head_timeout")
    with connect(bounded.port) as sock:
        sock.sendall(b"GET /mistral/v1/models HTTP/1.1\r\nHost: gw\r\n")
        reply = read_reply(sock)
    assert reply.status == 408
    assert reply.error_code() == "request_header_timeout"
    assert reply.closed
    assert TIMEOUT * 0.8 <= reply.elapsed < WITHIN
    assert upstream.requests == []
    assert _rejected(bounded, "head_timeout") == before + 1


def test_a_connection_that_sends_nothing_is_closed(bounded: GatewayProcess) -> None:
    with connect(bounded.port) as sock:
        started = time.monotonic()
        assert is_closed(sock, wait=WITHIN)
        assert time.monotonic() - started >= TIMEOUT * 0.8


def test_a_kept_alive_connection_bounds_its_next_head_too(bounded: GatewayProcess) -> None:
    with connect(bounded.port) as sock:
        sock.sendall(b"GET /health/liveliness HTTP/1.1\r\nHost: gw\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /health/liveliness HTTP/1.1\r\n")  # then nothing more
        reply = read_reply(sock)
    assert reply.status == 408


def test_pipelined_requests_are_each_bounded(bounded: GatewayProcess) -> None:
    one = b"GET /health/liveliness HTTP/1.1\r\nHost: gw\r\n\r\n"
    received = b""
    with connect(bounded.port, timeout=WITHIN) as sock:
        sock.sendall(one + one + b"GET /health/liveliness HTTP/1.1\r\nHost: gw\r\n")
        while chunk := sock.recv(65536):  # until the gateway closes
            received += chunk
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", received)
    assert statuses == [b"200", b"200", b"408"]


def test_a_body_that_stops_arriving_closes_the_connection(
    upstream: FakeMistral, bounded: GatewayProcess
) -> None:
    before = _rejected(bounded, "body_timeout")
    head = (
        b"POST /mistral/v1/chat/completions HTTP/1.1\r\nHost: gw\r\n"
        + AUTH
        + b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    )
    with connect(bounded.port) as sock:
        sock.sendall(head + b'{"model":')
        started = time.monotonic()
        assert is_closed(sock, wait=WITHIN)
        assert time.monotonic() - started >= TIMEOUT * 0.8
    assert upstream.requests == []
    assert _rejected(bounded, "body_timeout") == before + 1
    _still_serving(bounded)


def test_a_slow_but_steady_body_is_not_cut(upstream: FakeMistral, bounded: GatewayProcess) -> None:
    body = b'{"model":"mistral-small-latest","messages":[{"role":"user","content":"hi"}]}'
    head = (
        b"POST /mistral/v1/chat/completions HTTP/1.1\r\nHost: gw\r\n"
        + AUTH
        + b"Content-Type: application/json\r\nConnection: close\r\n"
        + b"Content-Length: %d\r\n\r\n" % len(body)
    )
    pieces = [body[i : i + 16] for i in range(0, len(body), 16)]
    with connect(bounded.port) as sock:
        sock.sendall(head)
        for piece in pieces:  # in all longer than the idle timeout, never idle that long
            time.sleep(TIMEOUT / 3)
            sock.sendall(piece)
        reply = read_reply(sock)
    assert reply.status == 200
    assert upstream.last.body == body


def test_connections_over_the_cap_are_refused_at_once(
    upstream: FakeMistral, start_gateway: GatewayFactory
) -> None:
    cap = 4
    gw = start_gateway(_env(upstream, PASSGATE_MAX_CONNECTIONS=str(cap)))
    held = [connect(gw.port) for _ in range(cap)]
    try:
        time.sleep(0.2)  # all accepted
        with connect(gw.port) as extra:
            reply = read_reply(extra)  # answered without sending anything
        assert reply.status == 503
        assert reply.error_code() == "too_many_connections"
        assert reply.headers["retry-after"] == "1"
        assert reply.closed
        assert reply.elapsed < WITHIN
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)  # the worker sees them go
    text = request(gw.url, "GET", "/metrics").body.decode()
    assert metric(text, "passgate_connections_refused_total") == 1
    assert request(gw.url, "GET", "/mistral/v1/models", None, BEARER).status == 200


def test_a_line_limit_above_the_head_limit_stops_the_start() -> None:
    gw = GatewayProcess(
        {"PASSGATE_MAX_HEADER_LINE_BYTES": "70000", "PASSGATE_MAX_HEAD_BYTES": "65536"}
    )
    with pytest.raises(RuntimeError, match="PASSGATE_MAX_HEADER_LINE_BYTES"):
        gw.start(timeout=20)
    gw.close()
