"""Faults: upstream down, slow or cut; clients leaving; big uploads; secrets in logs."""

from __future__ import annotations

import http.client
import os
import socket
import threading
import time

import psutil
import pytest

from tests.conftest import MASTER_KEY, PROVIDER_KEY, GatewayFactory
from tests.support.fake_mistral import FakeMistral, closed_port
from tests.support.gateway import GatewayProcess
from tests.support.http import request

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
STREAM_BODY = b'{"model":"mistral-small-latest","messages":[],"stream":true}'


def _env(up: FakeMistral, **extra: str) -> dict[str, str]:
    return {
        "MISTRAL_API_BASE": up.url,
        "MISTRAL_API_KEY": PROVIDER_KEY,
        "PASSGATE_MASTER_KEY": MASTER_KEY,
        **extra,
    }


def test_upstream_down_is_502(start_gateway: GatewayFactory) -> None:
    with closed_port() as url:
        gw = start_gateway({"MISTRAL_API_BASE": url, "MISTRAL_API_KEY": "k"})
        reply = request(gw.url, "GET", "/mistral/v1/models")
    assert reply.status == 502
    assert reply.error["code"] == "upstream_unreachable"


def test_no_first_byte_in_time_is_504(upstream: FakeMistral, start_gateway: GatewayFactory) -> None:
    gw = start_gateway(_env(upstream, PASSGATE_FIRST_BYTE_TIMEOUT="0.5"))
    upstream.configure(delay_first_byte=3)
    started = time.monotonic()
    reply = request(gw.url, "GET", "/mistral/v1/models", None, AUTH)
    assert reply.status == 504
    assert reply.error["code"] == "upstream_timeout"
    assert time.monotonic() - started < 2.5


def test_long_active_stream_is_not_killed_by_a_total_timeout(
    upstream: FakeMistral, start_gateway: GatewayFactory
) -> None:
    gw = start_gateway(_env(upstream, PASSGATE_FIRST_BYTE_TIMEOUT="1", PASSGATE_IDLE_TIMEOUT="1"))
    upstream.configure(stream_events=8, event_delay=0.4)  # 3.2 s in all, never 1 s idle
    reply = request(gw.url, "POST", "/mistral/v1/chat/completions", STREAM_BODY, AUTH)
    assert reply.status == 200
    assert reply.body.count(b"data: ") == 9  # 8 events and [DONE]


def test_upstream_cut_mid_stream_cuts_the_response(
    upstream: FakeMistral, gateway: GatewayProcess
) -> None:
    upstream.configure(stream_events=6, cut_stream_after=3)
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    conn.request("POST", "/mistral/v1/chat/completions", STREAM_BODY, AUTH)
    response = conn.getresponse()
    assert response.status == 200
    with pytest.raises(http.client.IncompleteRead) as cut:  # never a clean end of the body
        response.read()
    conn.close()
    assert cut.value.partial.count(b"data: ") == 3
    upstream.reset()
    assert request(gateway.url, "GET", "/mistral/v1/models", None, AUTH).status == 200


def _open_stream(gateway: GatewayProcess, body: bytes) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=5)
    head = (
        f"POST /mistral/v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {MASTER_KEY}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    sock.sendall(head + body)
    return sock


def test_client_disconnect_mid_stream_closes_upstream_within_1s(
    upstream: FakeMistral, gateway: GatewayProcess
) -> None:
    upstream.configure(stream_events=50, event_delay=0.1)
    sock = _open_stream(gateway, STREAM_BODY)
    assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    (record,) = upstream.wait_for_requests(1)
    closed_at = time.monotonic()
    sock.close()
    assert record.disconnected.wait(1.0), "upstream connection still open 1 s after the client left"
    assert record.disconnected_at is not None
    assert record.disconnected_at - closed_at < 1.0


def test_client_disconnect_before_the_answer_closes_upstream(
    upstream: FakeMistral, gateway: GatewayProcess
) -> None:
    upstream.configure(delay_first_byte=5)
    sock = _open_stream(gateway, b'{"model":"m"}')
    (record,) = upstream.wait_for_requests(1)
    time.sleep(0.1)
    sock.close()
    assert record.disconnected.wait(1.0), "upstream connection still open 1 s after the client left"


def _gateway_rss(gateway: GatewayProcess) -> int:
    proc = psutil.Process(gateway.pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])


def test_20mb_multipart_upload_streams_without_buffering(
    upstream: FakeMistral, gateway: GatewayProcess
) -> None:
    upstream.configure(keep_bodies=False)
    size = 20 * 1024 * 1024
    boundary = "passgate-test-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.jsonl"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    before = _gateway_rss(gateway)
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _gateway_rss(gateway))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=30)
    try:
        conn.putrequest("POST", "/mistral/v1/files")
        conn.putheader("Authorization", f"Bearer {MASTER_KEY}")
        conn.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
        conn.putheader("Content-Length", str(len(head) + size + len(tail)))
        conn.endheaders()
        conn.send(head)
        chunk = os.urandom(256 * 1024)
        for _ in range(size // len(chunk)):
            conn.send(chunk)
        conn.send(tail)
        status = conn.getresponse().status
    finally:
        conn.close()
        done.set()
        sampler.join()
    assert status == 200
    assert upstream.last.body_size == len(head) + size + len(tail)
    growth = peak[0] - before
    assert growth < 20 * 1024 * 1024, f"gateway RSS grew by {growth / 2**20:.1f} MiB"


def test_logs_never_contain_the_master_or_provider_key(
    upstream: FakeMistral, gateway: GatewayProcess
) -> None:
    request(gateway.url, "POST", "/mistral/v1/chat/completions", b'{"model":"m"}', AUTH)
    request(
        gateway.url,
        "POST",
        "/mistral/v1/chat/completions",
        b"{}",
        {"Authorization": "Bearer sk-wrong-key-attempt"},
    )
    request(gateway.url, "POST", "/mistral/../x", b"{}", AUTH)
    time.sleep(0.3)
    logs = gateway.logs()
    assert MASTER_KEY not in logs
    assert PROVIDER_KEY not in logs
    assert "sk-wrong-key-attempt" not in logs


def test_two_workers_serve(upstream: FakeMistral, start_gateway: GatewayFactory) -> None:
    gw = start_gateway(_env(upstream), workers=2)
    children = psutil.Process(gw.pid).children(recursive=True)
    assert len([c for c in children if "passgate" in " ".join(c.cmdline()) or c.name()]) >= 2
    statuses = {request(gw.url, "GET", "/mistral/v1/models", None, AUTH).status for _ in range(20)}
    assert statuses == {200}


@pytest.mark.parametrize("host", ["0.0.0.0"])
def test_open_gateway_refuses_a_public_bind(host: str, upstream: FakeMistral) -> None:
    gw = GatewayProcess({"MISTRAL_API_BASE": upstream.url}, args=("--host", host))
    with pytest.raises(RuntimeError, match="refusing to bind"):
        gw.start(timeout=10)
    gw.close()
