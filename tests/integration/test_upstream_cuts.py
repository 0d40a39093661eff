"""An upstream that drops the connection after its response head, or after part of the body.

One rule for every framing, against a real ``passgate`` process: while no body byte has
reached the client it gets the gateway's JSON ``502 upstream_interrupted``; once some
have, its connection is closed so that it sees the response cut short, never a clean end.
Either way the spend row and the access line say ``interrupted`` with the error, and
nothing reaches the server layer as an exception.
"""

from __future__ import annotations

import http.client
import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx2
import orjson
import pytest
from mistralai.client import Mistral
from mistralai.client.errors import SDKError

from tests.conftest import MASTER_KEY, GatewayFactory
from tests.integration.test_e2e_access_log import access_lines
from tests.integration.test_e2e_spend import ADMIN, WAIT, spend_env, spend_row
from tests.support.fake_mistral import FakeMistral
from tests.support.gateway import GatewayProcess
from tests.support.http import request

CHAT = "/mistral/v1/chat/completions"
FILE = "/v1/files/file-big/content"
BIG = bytes(range(256)) * 400  # 100 KiB, not JSON: relayed as it arrives, not read whole
CHAT_BODY = orjson.dumps({"model": "mistral-small-latest", "messages": []})
STREAM_BODY = orjson.dumps({"model": "mistral-small-latest", "messages": [], "stream": True})
SERVER_ERRORS = ("Exception in ASGI application", "ASGI callable returned without")


@dataclass(frozen=True)
class Framing:
    """One way an answer can be framed, and how the fake upstream is made to cut it."""

    name: str
    method: str
    target: str
    body: bytes | None
    knobs: dict[str, Any]
    buffered: bool  # read whole before anything is sent: a cut anywhere is a 502
    cut_key: str = "cut_body_at"


FRAMINGS = [
    Framing("sse", "POST", CHAT, STREAM_BODY, {}, False, "cut_stream_after"),
    Framing("content-length json", "POST", CHAT, CHAT_BODY, {}, True),
    Framing("gzip", "POST", CHAT, CHAT_BODY, {"gzip": True}, True),
    Framing("chunked json", "POST", CHAT, CHAT_BODY, {"chunked": True}, False),
    Framing("content-length large", "GET", "/mistral" + FILE, None, {}, False),
]


@dataclass
class Outcome:
    status: int
    headers: dict[str, str]
    body: bytes
    cut: bool  # the body ended before its framing said it would


def fetch(gateway: GatewayProcess, framing: Framing, rid: str) -> Outcome:
    """One call; a truncated body is reported, not raised."""
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=WAIT)
    try:
        headers = {**ADMIN, "x-request-id": rid}
        if framing.body is not None:
            headers["Content-Type"] = "application/json"
        conn.request(framing.method, framing.target, framing.body, headers)
        response = conn.getresponse()
        head = {k.lower(): v for k, v in response.getheaders()}
        try:
            return Outcome(response.status, head, response.read(), cut=False)
        except http.client.IncompleteRead as exc:
            return Outcome(response.status, head, exc.partial, cut=True)
    finally:
        conn.close()


def access_line(gateway: GatewayProcess, rid: str) -> dict[str, Any]:
    """The access line of call ``rid``, waiting for it to be written."""
    deadline = time.monotonic() + WAIT
    while True:
        lines = [line for line in access_lines(gateway.logs()) if line["request_id"] == rid]
        if lines:
            (line,) = lines
            return line
        assert time.monotonic() < deadline, f"no access line for {rid}"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def cut_gateway(fake_upstream: FakeMistral, start_gateway: GatewayFactory) -> GatewayProcess:
    return start_gateway(spend_env(fake_upstream))


@pytest.mark.parametrize("reset", [False, True], ids=["close", "reset"])
@pytest.mark.parametrize("after", ["head", "part"])
@pytest.mark.parametrize("framing", FRAMINGS, ids=[f.name for f in FRAMINGS])
def test_a_cut_answer_is_an_error_the_client_sees_and_the_ledger_records(
    upstream: FakeMistral,
    cut_gateway: GatewayProcess,
    framing: Framing,
    after: str,
    reset: bool,
) -> None:
    upstream.set_response(FILE, BIG, headers=[("content-type", "application/octet-stream")])
    cut_at = 0 if after == "head" else (2 if framing.cut_key == "cut_stream_after" else 20)
    upstream.configure(**framing.knobs, **{framing.cut_key: cut_at}, reset=reset)
    rid = "cut-" + uuid.uuid4().hex
    outcome = fetch(cut_gateway, framing, rid)
    # A reset can discard bytes the gateway had not read yet (the kernel drops them):
    # then nothing of the body was relayed, and the error response is the right answer.
    lost = reset and outcome.status == 502
    if after == "head" or framing.buffered or lost:
        assert outcome.status == 502, outcome
        assert outcome.headers["content-type"] == "application/json"
        assert outcome.headers["x-request-id"] == rid
        error = orjson.loads(outcome.body)["error"]
        assert error["code"] == "upstream_interrupted", error
        assert not outcome.cut
        status = 502
    else:
        assert outcome.status == 200, outcome
        assert outcome.cut, "a response cut by the upstream ended as if complete"
        assert outcome.body, "the bytes relayed before the cut were lost"
        status = 200
    upstream.reset()
    row = spend_row(cut_gateway, rid)
    assert (row["status"], row["interrupted"]) == (status, True)
    assert row["error"] and "upstream" in row["error"]
    line = access_line(cut_gateway, rid)
    assert (line["status"], line["interrupted"], line["error"]) == (status, True, row["error"])
    logs = cut_gateway.logs()
    assert not [text for text in SERVER_ERRORS if text in logs], logs[-3000:]
    # the worker keeps serving, on a fresh connection and a fresh upstream connection
    assert request(cut_gateway.url, "POST", CHAT, CHAT_BODY, ADMIN).status == 200


def test_the_sdk_sees_a_cut_stream_fail_and_a_cut_answer_as_an_error(
    upstream: FakeMistral, cut_gateway: GatewayProcess
) -> None:
    messages: Any = [{"role": "user", "content": "Hi"}]
    with Mistral(api_key=MASTER_KEY, server_url=cut_gateway.url + "/mistral") as sdk:
        upstream.configure(cut_stream_after=2)
        events = []
        with (
            pytest.raises(httpx2.RemoteProtocolError),  # never a stream that just ends
            sdk.chat.stream(model="mistral-small-latest", messages=messages) as stream,
        ):
            events.extend(stream)
        assert len(events) == 2
        upstream.configure(cut_stream_after=None, cut_body_at=0)
        with pytest.raises(SDKError) as refused:
            sdk.chat.complete(model="mistral-small-latest", messages=messages)
        assert refused.value.status_code == 502
        assert "upstream_interrupted" in refused.value.body
