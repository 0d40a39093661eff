"""TLS both ways, with real processes: a private CA and client certificates upstream, HTTPS served.

Certificates come from a test CA made at test time; the upstream is the fake Mistral
serving HTTPS; the clients are the mistralai SDK, curl and raw sockets.
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from mistralai.client import Mistral

from tests.conftest import MASTER_KEY, PROVIDER_KEY, GatewayFactory
from tests.support.certs import Issued, TestCA
from tests.support.fake_mistral import FakeMistral, TlsServing
from tests.support.gateway import GatewayProcess
from tests.support.http import request

AUTH = {"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"}
CHAT = b'{"model":"mistral-small-latest","messages":[{"role":"user","content":"Hi"}]}'
MESSAGES: Any = [{"role": "user", "content": "Hi"}]


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def server_cert(ca: TestCA) -> Issued:
    return ca.issue("server", server=True)


@pytest.fixture(scope="module")
def tls_upstream(server_cert: Issued) -> Iterator[FakeMistral]:
    with FakeMistral(tls=TlsServing(server_cert.cert, server_cert.key)) as fake:
        yield fake


@pytest.fixture(scope="module")
def mtls_upstream(ca: TestCA, server_cert: Issued) -> Iterator[FakeMistral]:
    with FakeMistral(tls=TlsServing(server_cert.cert, server_cert.key, ca.cert)) as fake:
        yield fake


def _env(up: FakeMistral, **extra: str) -> dict[str, str]:
    return {
        "MISTRAL_API_BASE": up.url,
        "MISTRAL_API_KEY": PROVIDER_KEY,
        "PASSGATE_MASTER_KEY": MASTER_KEY,
        **extra,
    }


def _chat(gw: GatewayProcess) -> tuple[int, dict[str, Any]]:
    reply = request(gw.url, "POST", "/mistral/v1/chat/completions", CHAT, AUTH)
    body: dict[str, Any] = json.loads(reply.body)
    return reply.status, body


# -- upstream TLS ----------------------------------------------------------------------


def test_a_private_ca_is_refused_without_the_bundle_and_accepted_with_it(
    ca: TestCA, tls_upstream: FakeMistral, start_gateway: GatewayFactory
) -> None:
    status, body = _chat(start_gateway(_env(tls_upstream)))
    assert status == 502
    assert body["error"]["code"] == "upstream_unreachable"
    assert "TLS failed: CERTIFICATE_VERIFY_FAILED" in body["error"]["message"]
    trusting = start_gateway(_env(tls_upstream, PASSGATE_UPSTREAM_CA_BUNDLE=str(ca.cert)))
    status, body = _chat(trusting)
    assert status == 200
    assert body["usage"]["total_tokens"] == 30


def test_turning_verification_off_works_and_is_announced(
    tls_upstream: FakeMistral, start_gateway: GatewayFactory
) -> None:
    gw = start_gateway(_env(tls_upstream, PASSGATE_UPSTREAM_TLS_VERIFY="false"))
    assert _chat(gw)[0] == 200
    assert "upstream certificates are NOT verified" in gw.logs()


def test_an_upstream_demanding_a_client_certificate(
    ca: TestCA, mtls_upstream: FakeMistral, start_gateway: GatewayFactory
) -> None:
    trust = {"PASSGATE_UPSTREAM_CA_BUNDLE": str(ca.cert)}
    status, body = _chat(start_gateway(_env(mtls_upstream, **trust)))
    assert status == 502
    assert body["error"]["code"] == "upstream_unreachable"
    # TLS 1.3: the server refuses the certificate after the handshake, by closing
    assert mtls_upstream.requests == []
    client = ca.issue("gateway-client", server=False)
    env = _env(
        mtls_upstream,
        **trust,
        PASSGATE_UPSTREAM_CLIENT_CERT=str(client.cert),
        PASSGATE_UPSTREAM_CLIENT_KEY=str(client.key),
    )
    status, body = _chat(start_gateway(env))
    assert status == 200
    assert body["usage"]["total_tokens"] == 30


def test_a_tls_file_that_does_not_load_stops_passgate_naming_it(
    tmp_path_factory: pytest.TempPathFactory, tls_upstream: FakeMistral
) -> None:
    missing = tmp_path_factory.mktemp("none") / "missing-ca.pem"
    gw = GatewayProcess(_env(tls_upstream, PASSGATE_UPSTREAM_CA_BUNDLE=str(missing)))
    try:
        with pytest.raises(RuntimeError, match="exited with 2"):
            gw.start()
        assert f"PASSGATE_UPSTREAM_CA_BUNDLE: cannot load {missing}" in gw.logs()
    finally:
        gw.close()


# -- HTTPS served ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def https_gateway(
    ca: TestCA, server_cert: Issued, start_gateway: GatewayFactory
) -> Iterator[tuple[GatewayProcess, FakeMistral]]:
    with FakeMistral() as plain_upstream:
        env = _env(plain_upstream, PASSGATE_SSL_KEYFILE=str(server_cert.key))
        gw = start_gateway(env, args=("--ssl-certfile", str(server_cert.cert)), https_ca=ca.cert)
        yield gw, plain_upstream


def test_the_sdk_chats_and_streams_over_https(
    ca: TestCA, https_gateway: tuple[GatewayProcess, FakeMistral]
) -> None:
    gw, _ = https_gateway
    assert gw.url.startswith("https://")
    with (
        httpx2.Client(verify=ssl.create_default_context(cafile=ca.cert)) as http,
        Mistral(api_key=MASTER_KEY, server_url=gw.url + "/mistral", client=http) as sdk,
    ):
        result = sdk.chat.complete(model="mistral-small-latest", messages=MESSAGES)
        assert result.usage.total_tokens == 30
        with sdk.chat.stream(model="mistral-small-latest", messages=MESSAGES) as stream:
            events = list(stream)
    assert events[0].data.choices[0].delta.content
    assert events[-1].data.usage is not None
    assert events[-1].data.usage.total_tokens == 30
    assert f"on https://127.0.0.1:{gw.port}" in gw.logs()


def test_web_ui_cookies_are_secure_over_https(
    ca: TestCA, https_gateway: tuple[GatewayProcess, FakeMistral]
) -> None:
    gw, _ = https_gateway
    with httpx2.Client(verify=ssl.create_default_context(cafile=ca.cert)) as http:
        form = http.get(gw.url + "/ui/login")
    assert form.status_code == 200
    attributes = [part.strip().lower() for part in form.headers["set-cookie"].split(";")]
    assert "secure" in attributes


def test_curl_with_cacert_chats_and_streams(
    ca: TestCA, https_gateway: tuple[GatewayProcess, FakeMistral]
) -> None:
    gw, _ = https_gateway
    base = [
        "curl",
        "-sS",
        "--fail",
        "--cacert",
        str(ca.cert),
        "-H",
        f"Authorization: Bearer {MASTER_KEY}",
    ]
    chat = subprocess.run(
        [
            *base,
            "-H",
            "Content-Type: application/json",
            "-d",
            CHAT.decode(),
            f"{gw.url}/mistral/v1/chat/completions",
        ],
        capture_output=True,
        check=True,
        timeout=20,
    )
    assert json.loads(chat.stdout)["usage"]["total_tokens"] == 30
    stream_body = b'{"model":"mistral-small-latest","messages":[],"stream":true}'
    stream = subprocess.run(
        [
            *base,
            "-N",
            "-H",
            "Content-Type: application/json",
            "-d",
            stream_body.decode(),
            f"{gw.url}/mistral/v1/chat/completions",
        ],
        capture_output=True,
        check=True,
        timeout=20,
    )
    assert stream.stdout.endswith(b"data: [DONE]\n\n")
    assert stream.stdout.count(b"data: ") > 2
    # and without the CA, curl does not trust it
    untrusted = subprocess.run(
        ["curl", "-sS", f"{gw.url}/health/liveliness"], capture_output=True, timeout=20
    )
    assert untrusted.returncode != 0


def test_plain_http_to_the_tls_port_gets_no_http_answer(
    https_gateway: tuple[GatewayProcess, FakeMistral],
) -> None:
    gw, _ = https_gateway
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as sock:
        sock.sendall(
            b"GET /health/liveliness HTTP/1.1\r\nHost: x\r\n"
            + f"Authorization: Bearer {MASTER_KEY}\r\n\r\n".encode()
        )
        answer = b""
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    assert not answer.startswith(b"HTTP/")  # nothing, or a TLS alert: never an HTTP answer
    assert b"200" not in answer


def test_weak_tls_is_refused(ca: TestCA, https_gateway: tuple[GatewayProcess, FakeMistral]) -> None:
    gw, _ = https_gateway
    # AES128-SHA: RSA key exchange, CBC, TLS 1.2 at most; uvicorn's own default allows it
    weak = ssl.create_default_context(cafile=ca.cert)
    weak.maximum_version = ssl.TLSVersion.TLSv1_2
    weak.set_ciphers("AES128-SHA:ECDHE-RSA-AES128-SHA:ECDHE-ECDSA-AES128-SHA")
    with (
        socket.create_connection(("127.0.0.1", gw.port), timeout=5) as sock,
        pytest.raises(ssl.SSLError),
    ):
        weak.wrap_socket(sock, server_hostname="127.0.0.1").close()
    modern = ssl.create_default_context(cafile=ca.cert)
    modern.maximum_version = ssl.TLSVersion.TLSv1_2
    with (
        socket.create_connection(("127.0.0.1", gw.port), timeout=5) as sock,
        modern.wrap_socket(sock, server_hostname="127.0.0.1") as tls,
    ):
        cipher = tls.cipher()
        assert tls.version() == "TLSv1.2"
        assert cipher is not None
        assert cipher[0].startswith("ECDHE-")
