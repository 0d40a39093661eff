"""The admin app's error boundary, over real HTTP (uvicorn in a thread, one keep-alive client).

No input reaches an unexpected exception in the real routes any more (the Hypothesis
suite checks that), so these routes raise on purpose, each the way a route can fail.
"""

from __future__ import annotations

import http.client
import logging
from collections.abc import AsyncIterator, Iterator

import orjson
import pytest
from sqlalchemy.exc import OperationalError
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from passgate import errors
from passgate.api.boundary import admin_app
from tests.support.asgi_server import ServerThread

SECRET = "sk-never-shown-0123456789"


async def boom(request: Request) -> Response:
    raise RuntimeError(f"unexpected, with a secret in the message: {SECRET}")


async def boom_after_reading(request: Request) -> Response:
    await request.body()
    raise ZeroDivisionError(SECRET)


async def refused(request: Request) -> Response:
    raise errors.too_many("slow down", "rate_limited", ((b"retry-after", b"7"),))


async def database_down(request: Request) -> Response:
    raise OperationalError("SELECT * FROM keys WHERE token = ?", (SECRET,), OSError(SECRET))


async def ok(request: Request) -> Response:
    return Response(b'{"ok":true}', media_type="application/json")


async def cut(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"partial"
        raise RuntimeError(SECRET)

    return StreamingResponse(chunks(), media_type="text/plain")


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    routes = [
        Route("/boom", boom, methods=["GET", "POST"]),
        Route("/boom-after-reading", boom_after_reading, methods=["POST"]),
        Route("/refused", refused),
        Route("/database-down", database_down),
        Route("/ok", ok),
        Route("/cut", cut),
    ]
    with ServerThread(admin_app(routes)) as running:
        yield running


@pytest.fixture
def conn(server: ServerThread) -> Iterator[http.client.HTTPConnection]:
    port = int(server.url.rsplit(":", 1)[1])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    yield connection
    connection.close()


def _get(
    conn: http.client.HTTPConnection,
    path: str,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[http.client.HTTPResponse, bytes]:
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    return response, response.read()


def _error(body: bytes) -> dict[str, str]:
    error: dict[str, str] = orjson.loads(body)["error"]
    assert set(error) == {"message", "type", "code"}
    return error


def test_an_unexpected_exception_is_a_json_500_logged_once_with_the_request_id(
    conn: http.client.HTTPConnection, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    response, body = _get(conn, "/boom", headers={"x-request-id": "req-boom-1"})
    assert response.status == 500
    assert response.getheader("content-type") == "application/json"
    error = _error(body)
    assert error["code"] == "internal_error" and "req-boom-1" in error["message"]
    assert SECRET not in body.decode() and "Traceback" not in body.decode()
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(failures) == 1, [r.getMessage() for r in failures]
    line = failures[0].getMessage()
    assert "req-boom-1" in line and "RuntimeError" in line and "boom" in line
    assert SECRET not in caplog.text


def test_the_keep_alive_connection_serves_the_next_request(
    conn: http.client.HTTPConnection,
) -> None:
    for path, method, body in (
        ("/boom", "GET", None),
        ("/boom", "POST", b"x" * 200_000),  # the body was never read
        ("/boom-after-reading", "POST", b"{}"),
    ):
        response, _ = _get(conn, path, method, body)
        assert response.status == 500
        assert not response.will_close
        follow, follow_body = _get(conn, "/ok")
        assert (follow.status, follow_body) == (200, b'{"ok":true}')


def test_a_caller_without_a_sane_request_id_gets_a_fresh_one(
    conn: http.client.HTTPConnection, caplog: pytest.LogCaptureFixture
) -> None:
    _, body = _get(conn, "/boom", headers={"x-request-id": "no spaces\tallowed"})
    message = _error(body)["message"]
    assert "no spaces" not in message and "no spaces" not in caplog.text
    request_id = message.split("request id ", 1)[1].split(")", 1)[0]
    assert len(request_id) == 32 and request_id in caplog.text


def test_a_gateway_error_keeps_its_status_and_headers(conn: http.client.HTTPConnection) -> None:
    response, body = _get(conn, "/refused")
    assert response.status == 429 and response.getheader("retry-after") == "7"
    assert _error(body)["code"] == "rate_limited"


def test_a_database_failure_is_a_503_that_shows_nothing_of_the_query(
    conn: http.client.HTTPConnection, caplog: pytest.LogCaptureFixture
) -> None:
    response, body = _get(conn, "/database-down")
    assert response.status == 503
    assert _error(body)["code"] == "service_unavailable"
    assert SECRET not in body.decode() and SECRET not in caplog.text
    assert "OperationalError" in caplog.text


def test_routing_errors_are_json(conn: http.client.HTTPConnection) -> None:
    response, body = _get(conn, "/nowhere")
    assert response.status == 404 and _error(body)["code"] == "not_found"
    response, body = _get(conn, "/ok", method="DELETE")
    assert response.status == 405 and set(response.getheader("allow", "").split(", ")) == {
        "GET",
        "HEAD",
    }
    assert _error(body)["code"] == "http_error"


def test_a_failure_after_the_head_cuts_the_response(
    conn: http.client.HTTPConnection, caplog: pytest.LogCaptureFixture
) -> None:
    conn.request("GET", "/cut")
    response = conn.getresponse()
    assert response.status == 200
    with pytest.raises(http.client.IncompleteRead):
        response.read()
    ours = [r for r in caplog.records if r.name == "passgate.api.boundary"]
    assert len(ours) == 1 and "after its response started" in ours[0].getMessage()
    assert "Exception in ASGI application" not in caplog.text
