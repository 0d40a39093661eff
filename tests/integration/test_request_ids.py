"""Every response of a real passgate process carries x-request-id, the caller's when sane."""

from __future__ import annotations

import re

import pytest

from tests.conftest import MASTER_KEY
from tests.support.gateway import GatewayProcess
from tests.support.http import request

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
GENERATED = re.compile(r"^[0-9a-f]{32}$")

ROUTES = [
    ("GET", "/health", None, {}),
    ("GET", "/health/liveliness", None, {}),
    ("GET", "/health/readiness", None, {}),
    ("GET", "/metrics", None, {}),
    ("GET", "/key/list", None, AUTH),  # admin
    ("POST", "/key/generate", b'{"duration": 12}', AUTH),  # admin validation error
    ("GET", "/key/list", None, {}),  # admin without a key: 401
    ("GET", "/no/such/route", None, {}),  # 404
    ("DELETE", "/health", None, {}),  # 405
    ("GET", "/mistral/v1/models", None, {}),  # the relay's own 401
]


@pytest.mark.parametrize(("method", "target", "body", "headers"), ROUTES)
def test_each_response_echoes_a_sane_request_id(
    gateway: GatewayProcess,
    method: str,
    target: str,
    body: bytes | None,
    headers: dict[str, str],
) -> None:
    reply = request(gateway.url, method, target, body, {**headers, "X-Request-Id": "abc-123.x:y"})
    assert reply.headers.get("x-request-id") == "abc-123.x:y", (reply.status, reply.headers)


@pytest.mark.parametrize(("method", "target", "body", "headers"), ROUTES)
def test_each_response_without_one_gets_a_fresh_one(
    gateway: GatewayProcess,
    method: str,
    target: str,
    body: bytes | None,
    headers: dict[str, str],
) -> None:
    first = request(gateway.url, method, target, body, headers)
    second = request(gateway.url, method, target, body, headers)
    assert GENERATED.match(first.headers.get("x-request-id", "")), first.headers
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


@pytest.mark.parametrize("sent", ["has space", "x" * 129, "semi;colon", "ünï"])
def test_an_insane_request_id_is_replaced(gateway: GatewayProcess, sent: str) -> None:
    reply = request(
        gateway.url, "GET", "/health", None, [("X-Request-Id", sent.encode().decode("latin-1"))]
    )
    assert GENERATED.match(reply.headers["x-request-id"]), reply.headers
    assert reply.headers["x-request-id"] != sent
