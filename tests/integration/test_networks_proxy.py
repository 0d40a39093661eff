"""Egress through an HTTP proxy: real passgate processes, a real proxy, an HTTPS fake upstream.

Each test that can runs twice: through Debian's tinyproxy (skipped when it is not
installed, failed under CI=true) and through the small h11 proxy in tests/support.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import pytest

from tests.conftest import MASTER_KEY, PROVIDER_KEY, GatewayFactory
from tests.support.certs import TestCA
from tests.support.connect_proxy import ConnectProxy
from tests.support.fake_mistral import FakeMistral, TlsServing, closed_port
from tests.support.fake_mistral_app import sse_data
from tests.support.fake_mistral_payloads import chat_chunks
from tests.support.http import Reply, request
from tests.support.tinyproxy import Tinyproxy

AUTH = {"Authorization": f"Bearer {MASTER_KEY}", "Content-Type": "application/json"}
CHAT = b'{"model":"mistral-small-latest","messages":[{"role":"user","content":"Hi"}]}'
STREAM = b'{"model":"mistral-small-latest","messages":[],"stream":true}'
CANNED = b'{"answer":"exactly these bytes \\u00e9","n":[1,2,3]}  \n'
USER, PASSWORD = "proxy-user", "pr0xy-s3cret"  # tinyproxy's config takes no punctuation


class ProxyServer(Protocol):
    @property
    def url(self) -> str: ...

    def url_with(self, user: str, password: str) -> str: ...
    def requests(self) -> list[str]: ...
    def connects(self) -> list[str]: ...


StartProxy = Callable[..., ProxyServer]


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def tls_upstream(ca: TestCA) -> Iterator[FakeMistral]:
    server = ca.issue("upstream", server=True)
    with FakeMistral(tls=TlsServing(server.cert, server.key)) as fake:
        yield fake


@pytest.fixture
def up(tls_upstream: FakeMistral) -> FakeMistral:
    tls_upstream.reset()
    return tls_upstream


@pytest.fixture(params=["tinyproxy", "support"])
def start_proxy(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StartProxy]:
    """Start a proxy of the parametrized kind; stopped when the test ends."""
    started: list[Tinyproxy | ConnectProxy] = []

    def start(credentials: tuple[str, str] | None = None) -> ProxyServer:
        proxy: Tinyproxy | ConnectProxy
        if request.param == "tinyproxy":
            proxy = Tinyproxy(tmp_path / f"p{len(started)}", credentials)
        else:
            proxy = ConnectProxy(credentials=credentials)
        started.append(proxy)
        return proxy.start()

    if request.param == "tinyproxy":
        for index in range(3):
            (tmp_path / f"p{index}").mkdir()
    yield start
    for proxy in started:
        proxy.stop()


def _env(up: FakeMistral, ca: TestCA, **extra: str) -> dict[str, str]:
    return {
        "MISTRAL_API_BASE": up.url,
        "MISTRAL_API_KEY": PROVIDER_KEY,
        "PASSGATE_MASTER_KEY": MASTER_KEY,
        "PASSGATE_UPSTREAM_CA_BUNDLE": str(ca.cert),
        **extra,
    }


def _chat(url: str, body: bytes = CHAT) -> Reply:
    return request(url, "POST", "/mistral/v1/chat/completions", body, AUTH)


def _expected_stream(body: bytes) -> bytes:
    """The exact bytes the fake sends for a chat stream with this reply's id."""
    first = json.loads(body.split(b"\n\n", 1)[0].removeprefix(b"data: "))
    chunks = chat_chunks("mistral-small-latest", first["id"], body.count(b"data: ") - 1)
    return b"".join(sse_data(chunk) for chunk in chunks) + b"data: [DONE]\n\n"


def test_https_calls_go_through_one_reused_tunnel_unchanged(
    up: FakeMistral, ca: TestCA, start_proxy: StartProxy, start_gateway: GatewayFactory
) -> None:
    proxy = start_proxy()
    gw = start_gateway(_env(up, ca, HTTPS_PROXY=proxy.url))
    up.set_response("/v1/models", CANNED, headers=[("content-type", "application/json")])
    models = request(gw.url, "GET", "/mistral/v1/models", None, AUTH)
    chat = _chat(gw.url)
    stream = _chat(gw.url, STREAM)
    again = _chat(gw.url)
    assert (models.status, chat.status, stream.status, again.status) == (200, 200, 200, 200)
    assert models.body == CANNED
    assert json.loads(chat.body)["usage"]["total_tokens"] == 30
    assert stream.body == _expected_stream(stream.body)
    assert stream.body.count(b"data: ") > 2
    assert len(up.requests) == 4
    assert up.last.header("authorization") == f"Bearer {PROVIDER_KEY}"
    # every call went through the proxy, in one tunnel kept alive between them
    assert proxy.connects() == [f"CONNECT 127.0.0.1:{up.port}"]
    assert proxy.requests() == proxy.connects()
    assert len({record.client_port for record in up.requests}) == 1


def test_no_proxy_naming_the_upstream_goes_direct(
    up: FakeMistral, ca: TestCA, start_gateway: GatewayFactory
) -> None:
    with ConnectProxy() as proxy:
        gw = start_gateway(_env(up, ca, https_proxy=proxy.url, NO_PROXY="example.org,127.0.0.1"))
        assert _chat(gw.url).status == 200
        assert proxy.requests() == []
        assert len(up.requests) == 1


def test_passgate_upstream_proxy_overrides_the_environment(
    up: FakeMistral, ca: TestCA, start_gateway: GatewayFactory
) -> None:
    with closed_port() as nowhere, ConnectProxy() as proxy:
        env = _env(
            up,
            ca,
            HTTPS_PROXY=nowhere,
            NO_PROXY="127.0.0.1",
            PASSGATE_UPSTREAM_PROXY=proxy.url,
        )
        gw = start_gateway(env)
        assert _chat(gw.url).status == 200
    assert proxy.connects() == [f"CONNECT 127.0.0.1:{up.port}"]
    assert f"via egress proxy {proxy.url}" in gw.logs()


def test_proxy_credentials_from_the_url_are_used_and_never_shown(
    up: FakeMistral, ca: TestCA, start_proxy: StartProxy, start_gateway: GatewayFactory
) -> None:
    proxy = start_proxy((USER, PASSWORD))
    gw = start_gateway(_env(up, ca, HTTPS_PROXY=proxy.url_with(USER, PASSWORD)))
    assert _chat(gw.url).status == 200
    assert _chat(gw.url, STREAM).status == 200
    assert proxy.connects() == [f"CONNECT 127.0.0.1:{up.port}"]
    logs = gw.logs()
    assert f"via egress proxy {proxy.url}" in logs  # the start line names it, bare
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    for secret in (PASSWORD, basic):
        assert secret not in logs
    assert up.last.header("proxy-authorization") is None  # the tunnel's, not the upstream's


def test_a_proxy_answering_407_gives_a_502_naming_its_status(
    up: FakeMistral, ca: TestCA, start_proxy: StartProxy, start_gateway: GatewayFactory
) -> None:
    proxy = start_proxy((USER, PASSWORD))
    gw = start_gateway(_env(up, ca, HTTPS_PROXY=proxy.url_with(USER, "wrong-password")))
    reply = _chat(gw.url)
    message = str(reply.error["message"])
    assert reply.status == 502
    assert reply.error["code"] == "upstream_unreachable"
    # tinyproxy 1.11 answers a CONNECT with bad credentials 401 where RFC 9110 says 407
    assert re.search(r"egress proxy refused the tunnel with status 40[17]$", message)
    assert b"wrong-password" not in reply.body
    assert "wrong-password" not in gw.logs()
    assert up.requests == []


def test_a_refusing_proxy_gives_a_502_naming_its_status(
    up: FakeMistral, ca: TestCA, start_gateway: GatewayFactory
) -> None:
    with ConnectProxy(refuse=407) as proxy:
        gw = start_gateway(_env(up, ca, HTTPS_PROXY=proxy.url))
        for status in (407, 403, 502):
            proxy.refuse = status
            reply = _chat(gw.url)
            assert reply.status == 502
            assert reply.error["code"] == "upstream_unreachable"
            message = str(reply.error["message"])
            assert message.endswith(f"the egress proxy refused the tunnel with status {status}")
    assert up.requests == []


def test_an_unreachable_proxy_gives_a_502(
    up: FakeMistral, ca: TestCA, start_gateway: GatewayFactory
) -> None:
    with closed_port() as nowhere:
        gw = start_gateway(_env(up, ca, HTTPS_PROXY=nowhere.replace("http://", "http://u:p@")))
        reply = _chat(gw.url)
    assert reply.status == 502
    assert reply.error["code"] == "upstream_unreachable"
    assert "egress proxy is unreachable" in str(reply.error["message"])
    assert "u:p" not in reply.body.decode()


def test_http_upstreams_go_through_the_proxy_in_absolute_form(
    upstream: FakeMistral, start_proxy: StartProxy, start_gateway: GatewayFactory
) -> None:
    proxy = start_proxy((USER, PASSWORD))
    env = {
        "MISTRAL_API_BASE": upstream.url,
        "MISTRAL_API_KEY": PROVIDER_KEY,
        "PASSGATE_MASTER_KEY": MASTER_KEY,
        "http_proxy": proxy.url_with(USER, PASSWORD),
    }
    gw = start_gateway(env)
    chat = _chat(gw.url)
    stream = _chat(gw.url, STREAM)
    assert (chat.status, stream.status) == (200, 200)
    assert stream.body == _expected_stream(stream.body)
    target = f"POST {upstream.url}/v1/chat/completions"
    assert proxy.requests() == [target, target]
    assert upstream.last.header("authorization") == f"Bearer {PROVIDER_KEY}"
    assert PASSWORD not in gw.logs()


def test_a_forward_proxy_answering_407_gives_a_502(
    upstream: FakeMistral, start_gateway: GatewayFactory
) -> None:
    with ConnectProxy(credentials=(USER, PASSWORD)) as proxy:
        env = {"MISTRAL_API_BASE": upstream.url, "MISTRAL_API_KEY": "k", "HTTP_PROXY": proxy.url}
        gw = start_gateway(env)
        reply = _chat(gw.url)
    assert reply.status == 502
    assert "egress proxy refused the request with status 407" in str(reply.error["message"])
    assert upstream.requests == []
