"""What crosses the gateway: paths, query strings, headers, bodies, request ids, auth."""

from __future__ import annotations

import gzip

import pytest

from tests.conftest import MASTER_KEY, PROVIDER_KEY, GatewayFactory
from tests.support.fake_mistral import FakeMistral
from tests.support.gateway import GatewayProcess
from tests.support.http import request

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}


def test_path_without_version_gets_v1(upstream: FakeMistral, gateway: GatewayProcess) -> None:
    reply = request(gateway.url, "POST", "/mistral/chat/completions", b'{"model":"m"}', AUTH)
    assert reply.status == 200
    assert upstream.last.path == "/v1/chat/completions"


@pytest.mark.parametrize("suffix", ["/v1", "/v1/"])
def test_base_ending_in_v1(
    suffix: str, upstream: FakeMistral, start_gateway: GatewayFactory
) -> None:
    gw = start_gateway({"MISTRAL_API_BASE": upstream.url + suffix, "MISTRAL_API_KEY": "k"})
    assert request(gw.url, "GET", "/mistral/v1/models").status == 200
    assert upstream.last.path == "/v1/models"
    assert request(gw.url, "GET", "/mistral/models").status == 200
    assert upstream.last.path == "/v1/models"


def test_base_with_a_path_prefix_is_kept(
    upstream: FakeMistral, start_gateway: GatewayFactory
) -> None:
    upstream.configure(path_prefix="/some/prefix")
    gw = start_gateway({"MISTRAL_API_BASE": upstream.url + "/some/prefix", "MISTRAL_API_KEY": "k"})
    assert request(gw.url, "GET", "/mistral/v1/models").status == 200
    assert upstream.last.path == "/some/prefix/v1/models"
    assert request(gw.url, "GET", "/mistral/v2/audio/voices").status == 200
    assert upstream.last.path == "/some/prefix/v2/audio/voices"


@pytest.mark.parametrize(
    "target",
    [
        "/mistral/../health",
        "/mistral/%2e%2e/key/generate",
        "/mistral//evil.example/x",
        "/mistral/v1/..%2f..%2fkey/generate",
        "/mistral/v1%5c..%5ckey",
        "/mistral/v1/./../../metrics",
    ],
)
def test_path_tricks_never_leave_the_base(
    target: str, upstream: FakeMistral, gateway: GatewayProcess
) -> None:
    reply = request(gateway.url, "POST", target, b"{}", AUTH)
    assert reply.status == 400
    assert reply.error["code"] == "invalid_path"
    assert upstream.requests == []


def test_absolute_form_target_cannot_choose_the_host(
    upstream: FakeMistral, gateway: GatewayProcess
) -> None:
    reply = request(gateway.url, "GET", "http://evil.example/mistral/v1/models", None, AUTH)
    # The host in the target is ignored: the call goes to the configured upstream or nowhere.
    assert reply.status in (200, 400, 404)
    for record in upstream.requests:
        assert record.header("host") == f"127.0.0.1:{upstream.port}"
        assert record.path == "/v1/models"


def test_query_string_is_verbatim_with_repeated_keys(
    upstream: FakeMistral, gateway: GatewayProcess
) -> None:
    query = "page=0&page_size=5&purpose=batch&purpose=fine-tune&q=a%20b+c&x=%2F"
    assert request(gateway.url, "GET", f"/mistral/v1/files?{query}", None, AUTH).status == 200
    assert upstream.last.raw_path == f"/v1/files?{query}".encode()


def test_hop_by_hop_headers_and_credentials_never_reach_upstream(
    upstream: FakeMistral, gateway: GatewayProcess
) -> None:
    headers = [
        ("Authorization", f"Bearer {MASTER_KEY}"),
        ("x-api-key", "sk-other-caller-secret"),
        ("api-key", "sk-third-caller-secret"),
        ("Connection", "keep-alive, X-Private-Hop"),
        ("X-Private-Hop", "1"),
        ("Keep-Alive", "timeout=5"),
        ("TE", "trailers"),
        ("Upgrade", "h2c"),
        ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
        ("X-Passgate-Tags", "a,b"),
        ("Content-Type", "application/json"),
        ("X-Custom", "kept"),
    ]
    reply = request(gateway.url, "POST", "/mistral/v1/chat/completions", b'{"model":"m"}', headers)
    assert reply.status == 200
    received = dict(upstream.last.headers)
    for name in (
        "connection",
        "x-private-hop",
        "keep-alive",
        "te",
        "upgrade",
        "proxy-authorization",
        "x-api-key",
        "api-key",
        "x-passgate-tags",
    ):
        assert name not in received, name
    assert received["authorization"] == f"Bearer {PROVIDER_KEY}"
    assert received["host"] == f"127.0.0.1:{upstream.port}"
    assert received["x-custom"] == "kept"
    assert received["content-type"] == "application/json"
    flat = str(upstream.last.headers)
    assert MASTER_KEY not in flat and "caller-secret" not in flat


def test_json_body_and_response_are_byte_identical(
    upstream: FakeMistral, gateway: GatewayProcess
) -> None:
    body = (
        b'{ "model" :"mistral-small-latest",\n'
        b'"messages":[{"role":"user","content":"\\u00e9t\xc3\xa9"}] }'
    )
    canned = b'{"id":"x",  "odd":  [1,2 ,3],"usage":{"prompt_tokens":1,"completion_tokens":2}}'
    upstream.set_response(
        "/v1/chat/completions",
        canned,
        headers=[("content-type", "application/json"), ("x-upstream", "yes")],
    )
    reply = request(
        gateway.url,
        "POST",
        "/mistral/v1/chat/completions",
        body,
        {**AUTH, "Content-Type": "application/json"},
    )
    assert reply.status == 200
    assert upstream.last.body == body
    assert reply.body == canned
    assert reply.headers["x-upstream"] == "yes"


def test_form_urlencoded_body_is_unchanged(upstream: FakeMistral, gateway: GatewayProcess) -> None:
    body = b"a=1&a=2&b=%20x+y&c="
    request(
        gateway.url,
        "POST",
        "/mistral/v1/whatever",
        body,
        {**AUTH, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert upstream.last.body == body
    assert upstream.last.header("content-type") == "application/x-www-form-urlencoded"


def test_gzip_response_is_passed_through_once(
    upstream: FakeMistral, gateway: GatewayProcess
) -> None:
    upstream.configure(gzip=True)
    reply = request(
        gateway.url, "GET", "/mistral/v1/models", None, {**AUTH, "Accept-Encoding": "gzip"}
    )
    assert reply.status == 200
    assert reply.headers["content-encoding"] == "gzip"
    assert gzip.decompress(reply.body).startswith(b"{")
    assert upstream.last.header("accept-encoding") == "gzip"


def test_request_id_is_echoed_or_generated(upstream: FakeMistral, gateway: GatewayProcess) -> None:
    mine = request(
        gateway.url, "GET", "/mistral/v1/models", None, {**AUTH, "X-Request-Id": "abc-1"}
    )
    assert mine.headers["x-request-id"] == "abc-1"
    generated = request(gateway.url, "GET", "/mistral/v1/models", None, AUTH)
    assert len(generated.headers["x-request-id"]) >= 16
    refused = request(gateway.url, "GET", "/mistral/v1/models")
    assert refused.status == 401 and refused.headers["x-request-id"]


def test_upstream_errors_are_relayed_as_they_are(
    upstream: FakeMistral, gateway: GatewayProcess
) -> None:
    upstream.set_response(
        "/v1/models",
        b'{"message":"Unauthorized"}',
        status=401,
        headers=[("content-type", "application/json")],
    )
    reply = request(gateway.url, "GET", "/mistral/v1/models", None, AUTH)
    assert (reply.status, reply.body) == (401, b'{"message":"Unauthorized"}')
    upstream.set_response("/v1/models", b"upstream broke", status=503)
    reply = request(gateway.url, "GET", "/mistral/v1/models", None, AUTH)
    assert (reply.status, reply.body) == (503, b"upstream broke")


@pytest.mark.parametrize("auth", [None, "Bearer sk-wrong", "Basic abc", f"Bearer {MASTER_KEY}x"])
def test_missing_or_wrong_key_is_401_json(
    auth: str | None, upstream: FakeMistral, gateway: GatewayProcess
) -> None:
    headers = {"Authorization": auth} if auth else {}
    reply = request(gateway.url, "POST", "/mistral/v1/chat/completions", b"{}", headers)
    assert reply.status == 401
    assert reply.headers["content-type"] == "application/json"
    assert set(reply.error) == {"message", "type", "code"}
    assert MASTER_KEY not in reply.body.decode()
    assert upstream.requests == []


def test_unsupported_method_is_405(upstream: FakeMistral, gateway: GatewayProcess) -> None:
    reply = request(gateway.url, "OPTIONS", "/mistral/v1/models", None, AUTH)
    assert reply.status == 405
    assert upstream.requests == []


def test_body_over_the_limit_is_413(upstream: FakeMistral, start_gateway: GatewayFactory) -> None:
    gw = start_gateway(
        {
            "MISTRAL_API_BASE": upstream.url,
            "MISTRAL_API_KEY": "k",
            "PASSGATE_MAX_BODY_BYTES": "1000",
        }
    )
    reply = request(gw.url, "POST", "/mistral/v1/files", b"x" * 1001)
    assert reply.status == 413
    assert reply.error["code"] == "body_too_large"
    assert upstream.requests == []


def test_health_needs_no_key_and_no_upstream(gateway: GatewayProcess) -> None:
    for path in ("/health", "/health/liveliness", "/health/readiness"):
        assert request(gateway.url, "GET", path).status == 200
