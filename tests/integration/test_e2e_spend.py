"""Acceptance for spend tracking, end to end against real ``passgate`` processes.

Every expected cost is computed here from the list prices of ``shared/mistral/README.md``,
hard-coded below and never read from the package's catalog, so a wrong catalog entry fails
a test. The fake upstream reports fixed usage: 10 prompt and 20 completion tokens, 3 OCR
pages, 12 audio seconds. Outages and SIGTERM are in ``test_e2e_spend_outage.py``.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson
import pytest
from aiohttp import web
from mistralai.client import Mistral
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import MASTER_KEY, PROVIDER_KEY, GatewayFactory
from tests.support.fake_mistral import FakeMistral
from tests.support.fake_mistral_payloads import (
    AUDIO_SECONDS,
    COMPLETION_TOKENS,
    OCR_PAGES,
    PROMPT_TOKENS,
    TOTAL_TOKENS,
)
from tests.support.gateway import GatewayProcess
from tests.support.http import Reply, request

# USD per million tokens (input, output), as shared/mistral/README.md lists them.
TOKEN_PRICES = {
    "mistral-small-latest": (0.15, 0.6),
    "mistral-large-latest": (0.5, 1.5),
    "mistral-medium-latest": (1.5, 7.5),
    "codestral-latest": (0.3, 0.9),
    "mistral-embed": (0.1, 0.0),
    "ministral-3b-latest": (0.1, 0.1),
}
OCR_PER_PAGE = 4.0 / 1000  # mistral-ocr-latest: 4.0 /1000 pages
OCR_PER_ANNOTATED_PAGE = 5.0 / 1000  # and 5.0 /1000 annotated pages
TRANSCRIPTION_PER_MINUTE = 0.003  # voxtral-mini-latest

ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
CHAT = "/mistral/v1/chat/completions"
MESSAGES: Any = [{"role": "user", "content": "Hi"}]
USAGE_COLUMNS = (
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "total_tokens",
    "pages",
    "annotated_pages",
    "audio_seconds",
    "characters",
)
WAIT = 10.0  # seconds a row may take to land (the writer flushes every 0.05 s)


def token_cost(
    model: str, prompt: int = PROMPT_TOKENS, completion: int = COMPLETION_TOKENS
) -> float:
    """List price of a token call, from the README's per-million prices."""
    per_in, per_out = TOKEN_PRICES[model]
    return (prompt * per_in + completion * per_out) / 1_000_000


def usage(**fields: float) -> dict[str, float | None]:
    """A row's usage columns: the given ones, every other one null."""
    return {name: fields.get(name) for name in USAGE_COLUMNS}


def usage_of(row: dict[str, Any]) -> dict[str, Any]:
    """A stored row's usage columns."""
    return {column: row[column] for column in USAGE_COLUMNS}


TOKENS = usage(
    prompt_tokens=PROMPT_TOKENS, completion_tokens=COMPLETION_TOKENS, total_tokens=TOTAL_TOKENS
)


def spend_env(upstream: FakeMistral, **extra: str) -> dict[str, str]:
    """A gateway in front of ``upstream`` whose spend rows land within 0.05 s."""
    return {
        "MISTRAL_API_BASE": upstream.url,
        "MISTRAL_API_KEY": PROVIDER_KEY,
        "PASSGATE_MASTER_KEY": MASTER_KEY,
        "PASSGATE_SPEND_FLUSH_INTERVAL": "0.05",
        **extra,
    }


def admin_get(gateway: GatewayProcess, path: str, **params: str) -> Any:
    """GET an admin route with the master key; the parsed JSON answer."""
    target = path + ("?" + urlencode(params) if params else "")
    reply = request(gateway.url, "GET", target, headers=ADMIN)
    assert reply.status == 200, reply.body
    return reply.json()


def new_key(gateway: GatewayProcess, **fields: Any) -> str:
    """A new virtual key made with the master key."""
    reply = request(
        gateway.url,
        "POST",
        "/key/generate",
        orjson.dumps(fields),
        {**ADMIN, "Content-Type": "application/json"},
    )
    assert reply.status == 200, reply.body
    key = reply.json()
    assert isinstance(key, dict)
    secret: str = key["key"]
    return secret


def spend_row(gateway: GatewayProcess, request_id: str, timeout: float = WAIT) -> dict[str, Any]:
    """The one spend row of ``request_id``, waiting for the writer to store it."""
    deadline = time.monotonic() + timeout
    while True:
        page = admin_get(gateway, "/spend/logs", request_id=request_id)
        assert page["total"] <= 1, page
        if page["total"] == 1:
            row: dict[str, Any] = page["data"][0]
            return row
        assert time.monotonic() < deadline, f"no spend row for {request_id}"
        time.sleep(0.02)


def all_rows(gateway: GatewayProcess, **params: str) -> list[dict[str, Any]]:
    """Every spend row matching ``params`` (at most 1000 in these tests)."""
    page = admin_get(gateway, "/spend/logs", size="1000", **params)
    assert page["total"] <= 1000, page["total"]
    rows: list[dict[str, Any]] = page["data"]
    return rows


def request_id() -> str:
    return "e2e-" + uuid.uuid4().hex


def bearer(key: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **extra}


def multipart(fields: dict[str, str], audio: bytes) -> tuple[bytes, str]:
    """A transcription form: text fields and one audio file."""
    boundary = "e2e-spend-" + uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.mp3"\r\n'
        "Content-Type: audio/mpeg\r\n\r\n".encode()
        + audio
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


@dataclass(frozen=True)
class Call:
    """One priced call, and the row it must leave."""

    path: str
    body: bytes
    model: str
    usage: dict[str, float | None]
    cost: float
    stream: bool = False
    content_type: str = "application/json"


def _json(path: str, body: Any, model: str, use: dict[str, float | None], cost: float) -> Call:
    return Call(path, orjson.dumps(body), model, use, cost, stream=body.get("stream") is True)


def _transcription(stream: bool) -> Call:
    fields = {"model": "voxtral-mini-latest", **({"stream": "true"} if stream else {})}
    body, content_type = multipart(fields, b"ID3\x00fake-mp3" * 50)
    return Call(
        "/mistral/v1/audio/transcriptions",
        body,
        "voxtral-mini-latest",
        {**TOKENS, "audio_seconds": AUDIO_SECONDS},
        AUDIO_SECONDS / 60 * TRANSCRIPTION_PER_MINUTE,
        stream=stream,
        content_type=content_type,
    )


DOCUMENT = {"type": "document_url", "document_url": "https://example.com/x.pdf"}
ANNOTATION_FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": "doc",
        "schema": {"type": "object", "properties": {"title": {"type": "string"}}},
    },
}
CALLS = {
    "chat-json": _json(
        CHAT,
        {"model": "mistral-small-latest", "messages": MESSAGES},
        "mistral-small-latest",
        TOKENS,
        token_cost("mistral-small-latest"),
    ),
    "chat-sse": _json(
        CHAT,
        {"model": "mistral-large-latest", "messages": MESSAGES, "stream": True},
        "mistral-large-latest",
        TOKENS,
        token_cost("mistral-large-latest"),
    ),
    "fim": _json(
        "/mistral/v1/fim/completions",
        {"model": "codestral-latest", "prompt": "def f():"},
        "codestral-latest",
        TOKENS,
        token_cost("codestral-latest"),
    ),
    # no model in the request: the one the response names is priced
    "agents": _json(
        "/mistral/v1/agents/completions",
        {"agent_id": "ag_1", "messages": MESSAGES},
        "mistral-medium-latest",
        TOKENS,
        token_cost("mistral-medium-latest"),
    ),
    "embeddings": _json(
        "/mistral/v1/embeddings",
        {"model": "mistral-embed", "inputs": ["a", "b"]},
        "mistral-embed",
        usage(prompt_tokens=PROMPT_TOKENS, completion_tokens=0, total_tokens=PROMPT_TOKENS),
        token_cost("mistral-embed", completion=0),
    ),
    "ocr": _json(
        "/mistral/v1/ocr",
        {"model": "mistral-ocr-latest", "document": DOCUMENT},
        "mistral-ocr-latest",
        usage(pages=OCR_PAGES, annotated_pages=0),
        OCR_PAGES * OCR_PER_PAGE,
    ),
    "ocr-annotated": _json(
        "/mistral/v1/ocr",
        {
            "model": "mistral-ocr-latest",
            "document": DOCUMENT,
            "document_annotation_format": ANNOTATION_FORMAT,
        },
        "mistral-ocr-latest",
        usage(pages=OCR_PAGES, annotated_pages=OCR_PAGES),
        OCR_PAGES * OCR_PER_ANNOTATED_PAGE,
    ),
    "transcription-json": _transcription(stream=False),
    "transcription-sse": _transcription(stream=True),
    "conversation-json": _json(
        "/mistral/v1/conversations",
        {"model": "mistral-medium-latest", "inputs": "Hi"},
        "mistral-medium-latest",
        TOKENS,
        token_cost("mistral-medium-latest"),
    ),
    "conversation-sse": _json(
        "/mistral/v1/conversations",
        {"model": "mistral-large-latest", "inputs": "Hi", "stream": True},
        "mistral-large-latest",
        TOKENS,
        token_cost("mistral-large-latest"),
    ),
}


@pytest.fixture(scope="module")
def spend_gateway(fake_upstream: FakeMistral, start_gateway: GatewayFactory) -> GatewayProcess:
    """One gateway on its own SQLite file, writing spend rows every 0.05 s."""
    return start_gateway(spend_env(fake_upstream))


@pytest.fixture(scope="module")
def spender(spend_gateway: GatewayProcess) -> str:
    """A virtual key with an alias, a user and a team, used by the priced calls."""
    return new_key(spend_gateway, key_alias="e2e-spend", user_id="u-e2e", team_id="t-e2e")


def send(gateway: GatewayProcess, key: str, call: Call, rid: str, **headers: str) -> Reply:
    """Make ``call`` through the gateway with request id ``rid``."""
    reply = request(
        gateway.url,
        "POST",
        call.path,
        call.body,
        bearer(key, **{"Content-Type": call.content_type, "x-request-id": rid, **headers}),
    )
    assert reply.status == 200, reply.body
    return reply


@pytest.mark.parametrize("name", list(CALLS))
def test_the_row_has_the_upstream_usage_and_the_list_price(
    name: str, upstream: FakeMistral, spend_gateway: GatewayProcess, spender: str
) -> None:
    call = CALLS[name]
    rid = request_id()
    reply = send(spend_gateway, spender, call, rid, **{"x-passgate-tags": "e2e, spend"})
    if call.stream:
        assert reply.headers["content-type"].startswith("text/event-stream")
        # the headers left before the usage arrived: no cost can be announced
        assert "x-passgate-cost" not in reply.headers
    else:
        cost_header = float(reply.headers["x-passgate-cost"])
        assert cost_header == pytest.approx(call.cost, rel=1e-6, abs=1e-10)
        if call.usage["prompt_tokens"] is not None:
            assert reply.headers["x-passgate-usage-prompt-tokens"] == str(PROMPT_TOKENS)
        if call.usage["pages"] is not None:
            assert reply.headers["x-passgate-usage-pages"] == str(OCR_PAGES)

    row = spend_row(spend_gateway, rid)
    assert usage_of(row) == call.usage
    assert row["cost"] == pytest.approx(call.cost, rel=1e-9)
    assert (row["model"], row["stream"], row["status"]) == (call.model, call.stream, 200)
    assert (row["interrupted"], row["error"]) == (False, None)
    assert (row["route"], row["upstream_path"]) == (call.path, call.path.removeprefix("/mistral"))
    assert (row["key_alias"], row["user_id"], row["team_id"]) == ("e2e-spend", "u-e2e", "t-e2e")
    assert row["tags"] == ["e2e", "spend"]
    assert "token" not in row
    times = [
        datetime.fromisoformat(row[name]) for name in ("start_time", "first_byte_time", "end_time")
    ]
    assert times == sorted(times)
    assert row["latency_ms"] >= 0
    assert upstream.last.path == call.path.removeprefix("/mistral")


def test_a_repeated_x_request_id_is_billed_for_every_call(
    upstream: FakeMistral, spend_gateway: GatewayProcess
) -> None:
    # A client cannot make its calls free by sending one x-request-id for all of them.
    key = new_key(spend_gateway, key_alias="e2e-repeat")
    call, rid = CALLS["chat-json"], request_id()
    for _ in range(3):
        send(spend_gateway, key, call, rid)
    deadline = time.monotonic() + WAIT
    while len(rows := all_rows(spend_gateway, request_id=rid)) < 3:
        assert time.monotonic() < deadline, rows
        time.sleep(0.02)
    assert len({row["call_id"] for row in rows}) == 3
    info = request(spend_gateway.url, "GET", f"/key/info?key={key}", headers=ADMIN).json()
    assert isinstance(info, dict)
    assert info["info"]["spend"] == pytest.approx(3 * call.cost, rel=1e-9)


def test_an_sdk_stream_as_end_user_alice_shows_in_customer_info(
    upstream: FakeMistral, spend_gateway: GatewayProcess, spender: str
) -> None:
    rid = request_id()
    sdk = Mistral(api_key=spender, server_url=spend_gateway.url + "/mistral")
    with (
        sdk,
        sdk.chat.stream(
            model="mistral-small-latest",
            messages=MESSAGES,
            http_headers={"x-end-user-id": "alice", "x-request-id": rid},
        ) as stream,
    ):
        events = list(stream)
    last = events[-1].data.usage
    assert last is not None and last.total_tokens == TOTAL_TOKENS
    assert b"alice" not in upstream.last.body  # the end user never reaches the upstream body

    row = spend_row(spend_gateway, rid)
    cost = token_cost("mistral-small-latest")
    assert (row["end_user"], row["stream"], row["interrupted"]) == ("alice", True, False)
    assert row["cost"] == pytest.approx(cost, rel=1e-9)
    info = admin_get(spend_gateway, "/customer/info", end_user_id="alice")
    alice_rows = all_rows(spend_gateway, end_user="alice")
    assert info["spend"] == pytest.approx(sum(r["cost"] for r in alice_rows), rel=1e-9)
    assert info["spend"] >= cost * (1 - 1e-9)


def _stable_report(gateway: GatewayProcess) -> tuple[Any, list[dict[str, Any]]]:
    """The end-user report and every row, read while no new row landed in between."""
    for _ in range(50):
        before = all_rows(gateway)
        report = admin_get(gateway, "/spend/report", group_by="end_user")
        after = all_rows(gateway)
        if len(before) == len(after):
            return report, after
        time.sleep(0.05)
    raise AssertionError("spend rows kept landing; no stable report")


def test_the_end_user_report_equals_the_sum_of_the_rows(
    upstream: FakeMistral, spend_gateway: GatewayProcess, spender: str
) -> None:
    rids = [request_id() for _ in range(3)]
    with Mistral(api_key=spender, server_url=spend_gateway.url + "/mistral") as sdk:
        sdk.chat.complete(
            model="mistral-large-latest",
            messages=MESSAGES,
            http_headers={"x-end-user-id": "bob", "x-request-id": rids[0]},
        )
        with sdk.chat.stream(
            model="codestral-latest",
            messages=MESSAGES,
            http_headers={"x-end-user-id": "alice", "x-request-id": rids[1]},
        ) as stream:
            list(stream)
        sdk.embeddings.create(
            model="mistral-embed", inputs=["x"], http_headers={"x-request-id": rids[2]}
        )
    for rid in rids:
        spend_row(spend_gateway, rid)

    report, rows = _stable_report(spend_gateway)
    expected: defaultdict[str | None, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for row in rows:
        group = expected[row["end_user"]]
        group["requests"] += 1
        group["unpriced_requests"] += row["cost"] is None
        group["cost"] += row["cost"] or 0.0
        for column in USAGE_COLUMNS:
            group[column] += row[column] or 0
    groups = {item["group"]: item for item in report["data"]}
    assert set(groups) == set(expected)
    assert {"alice", "bob", None} <= set(groups)
    for name, sums in expected.items():
        for column, total in sums.items():
            assert groups[name][column] == pytest.approx(total, rel=1e-9), (name, column)
    assert report["totals"]["requests"] == len(rows)
    assert report["totals"]["cost"] == pytest.approx(sum(r["cost"] or 0.0 for r in rows), rel=1e-9)
    assert groups["bob"]["cost"] == pytest.approx(token_cost("mistral-large-latest"), rel=1e-9)
    info = admin_get(spend_gateway, "/customer/info", end_user_id="alice")
    assert info["spend"] == pytest.approx(groups["alice"]["cost"], rel=1e-9)


def read_events_then_close(
    gateway: GatewayProcess, body: bytes, headers: dict[str, str], events: int
) -> bytes:
    """POST a streamed chat over a raw socket, read ``events`` SSE events, then hang up."""
    head = f"POST {CHAT} HTTP/1.1\r\nHost: 127.0.0.1:{gateway.port}\r\n"
    head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    received = b""
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=WAIT) as sock:
        sock.sendall(head.encode() + body)
        while True:
            chunk = sock.recv(65536)
            assert chunk, f"the stream ended before {events} events: {received!r}"
            received += chunk
            _, end_of_head, payload = received.partition(b"\r\n\r\n")
            if end_of_head and payload.count(b"\n\n") >= events:
                break
    assert received.startswith(b"HTTP/1.1 200 "), received[:100]
    return received


def test_a_stream_cut_by_the_client_before_the_usage_leaves_a_row_without_usage(
    upstream: FakeMistral, spend_gateway: GatewayProcess, spender: str
) -> None:
    upstream.configure(hold_last_event=True)  # the usage chunk never leaves the upstream
    rid = request_id()
    body = orjson.dumps({"model": "mistral-small-latest", "messages": MESSAGES, "stream": True})
    received = read_events_then_close(
        spend_gateway, body, bearer(spender, **{"x-request-id": rid}), 2
    )
    assert b'"usage"' not in received
    try:
        row = spend_row(spend_gateway, rid)
    finally:
        upstream.release_last_event()
    assert (row["interrupted"], row["stream"], row["status"]) == (True, True, 200)
    assert usage_of(row) == usage()
    assert row["cost"] is None  # unknown, not zero: the usage never arrived
    assert row["error"]
    assert upstream.last.disconnected.wait(WAIT)  # the gateway hung up on the upstream too


def test_a_stream_cut_by_the_client_after_the_usage_keeps_usage_and_cost(
    upstream: FakeMistral, spend_gateway: GatewayProcess, spender: str
) -> None:
    # three chunks 0.4 s apart, the third with the usage, then [DONE] 0.4 s later:
    # the client hangs up as soon as it has the third, before [DONE]
    upstream.configure(stream_events=3, event_delay=0.4)
    rid = request_id()
    body = orjson.dumps({"model": "mistral-small-latest", "messages": MESSAGES, "stream": True})
    headers = bearer(spender, **{"x-request-id": rid})
    received = read_events_then_close(spend_gateway, body, headers, 3)
    assert received.count(b'"usage"') == 1 and b"[DONE]" not in received
    row = spend_row(spend_gateway, rid)
    assert (row["interrupted"], row["stream"], row["status"]) == (True, True, 200)
    assert usage_of(row) == TOKENS
    assert row["cost"] == pytest.approx(token_cost("mistral-small-latest"), rel=1e-9)


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    """The sum of ``name`` over the series whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


def test_metrics_from_the_real_process_count_requests_tokens_and_cost(
    upstream: FakeMistral, spend_gateway: GatewayProcess
) -> None:
    key = new_key(spend_gateway, key_alias="e2e-metrics")
    model = "ministral-3b-latest"  # used by no other test of this module
    for stream in (False, False, True):
        body = orjson.dumps({"model": model, "messages": MESSAGES, "stream": stream})
        rid = request_id()
        send(spend_gateway, key, Call(CHAT, body, model, TOKENS, 0.0, stream), rid)
        spend_row(spend_gateway, rid)
    reply = request(spend_gateway.url, "GET", "/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain")
    samples = _samples(reply.body.decode())
    requests = _value(samples, "passgate_requests_total", key_alias="e2e-metrics")
    assert requests == 3
    assert (
        _value(
            samples,
            "passgate_requests_total",
            provider="mistral",
            route_family="chat",
            model=model,
            key_alias="e2e-metrics",
            status_class="2xx",
        )
        == 3
    )
    assert (
        _value(samples, "passgate_tokens_total", model=model, direction="input")
        == 3 * PROMPT_TOKENS
    )
    assert (
        _value(samples, "passgate_tokens_total", model=model, direction="output")
        == 3 * COMPLETION_TOKENS
    )
    assert _value(samples, "passgate_cost_usd_total", model=model, key_alias="e2e-metrics") == (
        pytest.approx(3 * token_cost(model), rel=1e-9)
    )
    assert _value(samples, "passgate_request_duration_seconds_count", route_family="chat") >= 3
    assert MASTER_KEY not in reply.body.decode() and key not in reply.body.decode()


@dataclass
class Receiver:
    """A webhook endpoint that records every row it is sent."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    batches: int = 0
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.batches += 1
        self.rows.extend(orjson.loads(await request.read()))
        return web.Response(status=204)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()
    app = web.Application()
    app.router.add_post("/spend-hook", state.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.url = f"http://127.0.0.1:{runner.addresses[0][1]}/spend-hook"
    yield state
    await runner.cleanup()


async def test_the_webhook_receives_every_row_once(
    upstream: FakeMistral, start_gateway: GatewayFactory, receiver: Receiver
) -> None:
    gateway = start_gateway(
        spend_env(upstream, PASSGATE_WEBHOOK_URL=receiver.url, PASSGATE_WEBHOOK_BATCH_SIZE="7")
    )
    key = await asyncio.to_thread(new_key, gateway, key_alias="e2e-webhook")
    names = list(CALLS)
    sent = {request_id(): CALLS[names[i % len(names)]] for i in range(40)}
    async with aiohttp.ClientSession() as http:

        async def call(rid: str, spec: Call) -> None:
            headers = bearer(key, **{"Content-Type": spec.content_type, "x-request-id": rid})
            async with http.post(gateway.url + spec.path, data=spec.body, headers=headers) as reply:
                await reply.read()
                assert reply.status == 200

        await asyncio.gather(*(call(rid, spec) for rid, spec in sent.items()))
    deadline = time.monotonic() + WAIT
    while not set(sent) <= {row["request_id"] for row in receiver.rows}:
        assert time.monotonic() < deadline, f"{len(receiver.rows)} of {len(sent)} rows delivered"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # several flush intervals: a duplicate would have arrived by now

    delivered = [row for row in receiver.rows if row["request_id"] in sent]
    assert len(delivered) == len(sent) == len({row["request_id"] for row in delivered})
    assert receiver.batches >= len(sent) // 7
    stored = {row["request_id"]: row for row in await asyncio.to_thread(all_rows, gateway)}
    for row in delivered:
        spec = sent[row["request_id"]]
        assert row["cost"] == pytest.approx(spec.cost, rel=1e-9)
        assert usage_of(row) == spec.usage
        assert (row["model"], row["key_alias"]) == (spec.model, "e2e-webhook")
        assert row["cost"] == pytest.approx(stored[row["request_id"]]["cost"], rel=1e-9)
        assert "token" not in row
    assert key not in orjson.dumps(receiver.rows).decode()
