"""Cohere end to end: a real ``passgate`` process in front of the fake Cohere upstream.

Through the official SDK (``cohere.ClientV2`` and ``cohere.Client``) and raw HTTP: bodies reach
Cohere byte for byte, the caller's gateway key is replaced by the real one, streams are relayed
event by event, and each metered call leaves a spend row with provider, model, end user and the
exact cost of the fake's fixed billed units. Prices are typed in here from the list prices
(cohere.com/pricing, as LiteLLM's catalog carries them), never read from the package's catalog,
so a wrong catalog entry fails a test. Every curl of
LiteLLM's Cohere pass-through page runs as written, only host and key substituted.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cohere
import httpx
import orjson
import psutil
import pytest

from tests.conftest import MASTER_KEY
from tests.support import fake_cohere_payloads as payloads
from tests.support.fake_cohere import JSON_LINES_TYPE, TRACE_HEADER, FakeCohere
from tests.support.gateway import GatewayProcess
from tests.support.http import Reply, request
from tests.support.spend import admin, spend_row

COHERE_KEY = "co-provider-secret-0123456789"
ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
MESSAGES: Any = [{"role": "user", "content": "Hi"}]

# USD per million billed tokens (input, output); cohere.com/pricing
COMMAND_A = (2.5, 10.0)
EMBED_V4 = 0.12
EMBED_V3 = 0.1
RERANK_PER_SEARCH = 2.0 / 1000  # rerank-v3.5 and rerank-english-v3.0: $2 per 1000 searches

CHAT_COST = (payloads.BILLED_INPUT * COMMAND_A[0] + payloads.BILLED_OUTPUT * COMMAND_A[1]) / 1e6


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeCohere]:
    with FakeCohere(api_key=COHERE_KEY) as fake:
        yield fake


@pytest.fixture(scope="module")
def gateway(upstream: FakeCohere) -> Iterator[GatewayProcess]:
    env = {
        "COHERE_API_BASE": upstream.url,
        "COHERE_API_KEY": COHERE_KEY,
        "PASSGATE_MASTER_KEY": MASTER_KEY,
        "PASSGATE_SPEND_FLUSH_INTERVAL": "0.05",
    }
    with GatewayProcess(env) as process:
        yield process


@pytest.fixture
def up(upstream: FakeCohere) -> FakeCohere:
    upstream.reset()
    return upstream


@pytest.fixture
def http_client() -> Iterator[httpx.Client]:
    # the SDK leaves a client it made itself open: hand it one that is closed after the test
    with httpx.Client(timeout=10) as client:
        yield client


def request_id() -> str:
    return "e2e-cohere-" + uuid.uuid4().hex


def assert_forwarded(up: FakeCohere, caller_key: str) -> None:
    """The real key went upstream, alone; the caller's gateway key did not."""
    record = up.last
    assert record.header_values("authorization") == [f"Bearer {COHERE_KEY}"]
    assert all(caller_key not in value for _, value in record.headers)


def assert_row(row: dict[str, Any], model: str | None, cost: float, **counts: int) -> None:
    assert row["provider"] == "cohere"
    assert row["model"] == model
    assert row["status"] == 200
    assert row["cost"] == pytest.approx(cost, rel=1e-9, abs=1e-15)
    for name, value in counts.items():
        assert row[name] == value, name


def test_v2_chat_through_the_sdk(
    gateway: GatewayProcess, up: FakeCohere, http_client: httpx.Client
) -> None:
    client = cohere.ClientV2(
        api_key=MASTER_KEY, base_url=gateway.url + "/cohere", httpx_client=http_client
    )
    rid = request_id()
    answer = client.chat(
        model=payloads.DEFAULT_MODEL,
        messages=MESSAGES,
        request_options={"additional_headers": {"x-request-id": rid, "x-end-user-id": "alice"}},
    )
    assert answer.usage is not None and answer.usage.billed_units is not None
    assert answer.usage.billed_units.input_tokens == payloads.BILLED_INPUT
    assert up.last.path == "/v2/chat"
    assert_forwarded(up, MASTER_KEY)
    row = spend_row(gateway, rid)
    # billed units, not the raw tokens (793 in, 61 out), are what is priced
    assert_row(
        row,
        payloads.DEFAULT_MODEL,
        CHAT_COST,
        prompt_tokens=payloads.BILLED_INPUT,
        completion_tokens=payloads.BILLED_OUTPUT,
        cached_tokens=payloads.CACHED,
    )
    assert (row["end_user"], row["stream"]) == ("alice", False)


def test_v2_chat_stream_through_the_sdk(
    gateway: GatewayProcess, up: FakeCohere, http_client: httpx.Client
) -> None:
    client = cohere.ClientV2(
        api_key=MASTER_KEY, base_url=gateway.url + "/cohere", httpx_client=http_client
    )
    rid = request_id()
    events = list(
        client.chat_stream(
            model=payloads.DEFAULT_MODEL,
            messages=MESSAGES,
            request_options={"additional_headers": {"x-request-id": rid}},
        )
    )
    kinds = [event.type for event in events]
    assert kinds[0] == "message-start" and kinds[-1] == "message-end"
    assert kinds.count("content-delta") == len(payloads.TEXT)
    deltas: list[Any] = [event for event in events if event.type == "content-delta"]
    text = "".join(event.delta.message.content.text for event in deltas)
    assert text == "".join(payloads.TEXT)
    assert up.last.json()["stream"] is True
    row = spend_row(gateway, rid)
    assert_row(row, payloads.DEFAULT_MODEL, CHAT_COST, prompt_tokens=payloads.BILLED_INPUT)
    assert (row["stream"], row["interrupted"]) == (True, False)


def test_v1_chat_stream_raw_is_relayed_line_by_line(
    gateway: GatewayProcess, up: FakeCohere
) -> None:
    # odd spacing and key order: the gateway must not re-serialise it
    body = b'{ "message":"Tell me about LLMs",  "stream" : true, "model":"command-a-03-2025"}'
    rid = request_id()
    headers = {
        "Authorization": f"Bearer {MASTER_KEY}",
        "Content-Type": "application/json",
        "x-request-id": rid,
    }
    reply = request(gateway.url, "POST", "/cohere/v1/chat", body, headers)
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"] == JSON_LINES_TYPE
    lines = [orjson.loads(line) for line in reply.body.splitlines()]
    assert [line["event_type"] for line in lines] == [
        "stream-start",
        *["text-generation"] * len(payloads.TEXT),
        "stream-end",
    ]
    assert up.last.body == body
    assert up.last.raw_path == b"/v1/chat"
    assert_forwarded(up, MASTER_KEY)
    row = spend_row(gateway, rid)
    assert_row(
        row,
        payloads.DEFAULT_MODEL,
        CHAT_COST,
        prompt_tokens=payloads.BILLED_INPUT,
        completion_tokens=payloads.BILLED_OUTPUT,
    )
    assert row["stream"] is True
    # Cohere's trace id stands for the upstream request id
    assert row["upstream_request_id"] == reply.headers[TRACE_HEADER]


def test_embed_and_rerank_through_the_sdk(
    gateway: GatewayProcess, up: FakeCohere, http_client: httpx.Client
) -> None:
    base = gateway.url + "/cohere"
    v2 = cohere.ClientV2(api_key=MASTER_KEY, base_url=base, httpx_client=http_client)
    v1 = cohere.Client(api_key=MASTER_KEY, base_url=base, httpx_client=http_client)

    rid = request_id()
    v2.embed(
        model="embed-v4.0",
        input_type="search_document",
        texts=["a", "b"],
        embedding_types=["float"],
        request_options={"additional_headers": {"x-request-id": rid}},
    )
    assert up.last.path == "/v2/embed"
    cost = payloads.EMBED_BILLED_INPUT * EMBED_V4 / 1e6
    assert_row(spend_row(gateway, rid), "embed-v4.0", cost, prompt_tokens=7)

    rid = request_id()
    ranked = v1.rerank(
        model="rerank-v3.5",
        query="capital?",
        documents=["x", "y", "z"],
        top_n=2,
        request_options={"additional_headers": {"x-request-id": rid}},
    )
    assert [result.index for result in ranked.results] == [2, 1]
    assert up.last.path == "/v1/rerank"
    cost = payloads.SEARCH_UNITS * RERANK_PER_SEARCH
    assert_row(spend_row(gateway, rid), "rerank-v3.5", cost, search_units=payloads.SEARCH_UNITS)


def test_unmetered_routes_cost_nothing(gateway: GatewayProcess, up: FakeCohere) -> None:
    rid = request_id()
    reply = request(
        gateway.url, "GET", "/cohere/v1/models?page_size=5", None, {**ADMIN, "x-request-id": rid}
    )
    assert reply.status == 200, reply.body
    assert up.last.raw_path == b"/v1/models?page_size=5"
    assert spend_row(gateway, rid)["cost"] == 0.0

    # a multipart upload arrives byte for byte
    boundary = "cohere-e2e-" + uuid.uuid4().hex
    audio = bytes(range(256)) * 8
    form = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="model"\r\n\r\n'
            "cohere-transcribe-03-2026\r\n"
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n"
        ).encode()
        + audio
        + f"\r\n--{boundary}--\r\n".encode()
    )
    rid = request_id()
    headers = {
        **ADMIN,
        "Content-Type": f"multipart/form-data; boundary={boundary}",
        "x-request-id": rid,
    }
    reply = request(gateway.url, "POST", "/cohere/v2/audio/transcriptions", form, headers)
    assert reply.status == 200, reply.body
    assert up.last.body == form
    assert spend_row(gateway, rid)["cost"] == 0.0


def test_virtual_key_models_restriction(gateway: GatewayProcess, up: FakeCohere) -> None:
    key = admin(gateway, "POST", "/key/generate", {"models": [payloads.DEFAULT_MODEL]})["key"]
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    allowed = orjson.dumps({"model": payloads.DEFAULT_MODEL, "messages": MESSAGES})
    reply = request(gateway.url, "POST", "/cohere/v2/chat", allowed, headers)
    assert reply.status == 200, reply.body
    assert_forwarded(up, key)

    before = len(up.requests)
    refused = orjson.dumps({"model": "command-r-08-2024", "messages": MESSAGES})
    reply = request(gateway.url, "POST", "/cohere/v2/chat", refused, headers)
    assert reply.status == 403, reply.body
    assert len(up.requests) == before  # never reached Cohere


def test_a_wrong_gateway_key_never_reaches_cohere(gateway: GatewayProcess, up: FakeCohere) -> None:
    headers = {"Authorization": "Bearer sk-not-a-key", "Content-Type": "application/json"}
    reply = request(gateway.url, "POST", "/cohere/v2/chat", b"{}", headers)
    assert reply.status == 401, reply.body
    assert up.requests == []


# LiteLLM's Cohere pass-through page (docs.litellm.ai/docs/pass_through/cohere), every curl as
# written: only the host (http://0.0.0.0:4000, or https://api.cohere.com in its embed example)
# and the key (sk-anything, sk-1234ewknldferwedojwojw) are replaced.
_CHAT_DATA = """{
    "chat_history": [
      {"role": "USER", "message": "Who discovered gravity?"},
      {"role": "CHATBOT", "message": "The man who is widely credited with discovering gravity is Sir Isaac Newton"}
    ],
    "message": "What year was he born?",
    "connectors": [{"id": "web-search"}]
  }"""  # noqa: E501
_RERANK_DATA = """{
    "model": "rerank-english-v3.0",
    "query": "What is the capital of the United States?",
    "top_n": 3,
    "documents": ["Carson City is the capital city of the American state of Nevada.",
                  "The Commonwealth of the Northern Mariana Islands is a group of islands in the Pacific Ocean. Its capital is Saipan.",
                  "Washington, D.C. (also known as simply Washington or D.C., and officially as the District of Columbia) is the capital of the United States. It is a federal district.",
                  "Capitalization or capitalisation in English grammar is the use of a capital letter at the start of a word. English usage varies from capitalization in other languages.",
                  "Capital punishment (the death penalty) has existed in the United States since beforethe United States was a country. As of 2017, capital punishment is legal in 30 of the 50 states."]
  }"""  # noqa: E501
_EMBED_DATA = """{
    "model": "embed-english-v3.0",
    "texts": ["hello", "goodbye"],
    "input_type": "classification"
  }"""


def _litellm_curl(gateway: GatewayProcess, path: str, data: str, key: str) -> tuple[Reply, str]:
    """One of the page's curls: POST, its four headers as curl sends them, its --data."""
    rid = request_id()
    headers = [
        ("accept", "application/json"),
        ("content-type", "application/json"),
        ("Authorization", f"bearer {key}"),
        ("x-request-id", rid),  # to find the call's spend row; curl's request is otherwise as is
    ]
    return request(gateway.url, "POST", path, data.encode(), headers), rid


@pytest.mark.parametrize(
    ("path", "data", "model", "cost"),
    [
        # the chat curl sends no model: Cohere picks its default, and no answer names it
        ("/cohere/v1/chat", _CHAT_DATA, None, None),
        (
            "/cohere/v1/rerank",
            _RERANK_DATA,
            "rerank-english-v3.0",
            payloads.SEARCH_UNITS * RERANK_PER_SEARCH,
        ),
        (
            "/cohere/v1/embed",
            _EMBED_DATA,
            "embed-english-v3.0",
            payloads.EMBED_BILLED_INPUT * EMBED_V3 / 1e6,
        ),
    ],
)
def test_litellm_curls_with_the_master_key(
    gateway: GatewayProcess,
    up: FakeCohere,
    path: str,
    data: str,
    model: str | None,
    cost: float | None,
) -> None:
    reply, rid = _litellm_curl(gateway, path, data, MASTER_KEY)
    assert reply.status == 200, reply.body
    assert up.last.body == data.encode()
    assert up.last.raw_path == path.removeprefix("/cohere").encode()
    assert up.last.header("accept") == "application/json"
    assert_forwarded(up, MASTER_KEY)
    row = spend_row(gateway, rid)
    assert (row["provider"], row["model"]) == ("cohere", model)
    if cost is None:
        assert row["cost"] is None
        assert row["prompt_tokens"] == payloads.BILLED_INPUT  # the usage is still recorded
    else:
        assert row["cost"] == pytest.approx(cost, rel=1e-9)


def test_litellm_curl_with_a_virtual_key(gateway: GatewayProcess, up: FakeCohere) -> None:
    # "Advanced - Use with Virtual Keys": /key/generate with {} then the rerank curl
    key = admin(gateway, "POST", "/key/generate", {})["key"]
    reply, rid = _litellm_curl(gateway, "/cohere/v1/rerank", _RERANK_DATA, key)
    assert reply.status == 200, reply.body
    ranked = reply.json()
    assert isinstance(ranked, dict) and len(ranked["results"]) == 3
    assert up.last.body == _RERANK_DATA.encode()
    assert_forwarded(up, key)
    row = spend_row(gateway, rid)
    assert row["cost"] == pytest.approx(payloads.SEARCH_UNITS * RERANK_PER_SEARCH, rel=1e-9)


def test_no_process_holds_the_cohere_key(gateway: GatewayProcess, up: FakeCohere) -> None:
    reply = request(gateway.url, "GET", "/cohere/v1/models", None, ADMIN)
    assert reply.status == 200, reply.body
    assert_forwarded(up, MASTER_KEY)  # the key is in use...
    server = psutil.Process(gateway.pid)
    for process in [server, *server.children(recursive=True)]:
        # ...yet no process of the gateway keeps it in its environment or command line
        environ = Path(f"/proc/{process.pid}/environ").read_bytes()
        assert COHERE_KEY.encode() not in environ, process.cmdline()
        assert all(COHERE_KEY not in part for part in process.cmdline())


def test_a_budget_counts_cohere_spend(gateway: GatewayProcess, up: FakeCohere) -> None:
    # room for one chat and a half: the second is admitted (some budget is left), the third not
    key = admin(gateway, "POST", "/key/generate", {"max_budget": 1.5 * CHAT_COST})["key"]
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    body = orjson.dumps({"model": payloads.DEFAULT_MODEL, "messages": MESSAGES})
    rids = [request_id(), request_id()]
    for rid in rids:
        reply = request(
            gateway.url, "POST", "/cohere/v2/chat", body, {**headers, "x-request-id": rid}
        )
        assert reply.status == 200, reply.body
        spend_row(gateway, rid)  # the spend has landed before the next call
    reply = request(gateway.url, "POST", "/cohere/v2/chat", body, headers)
    assert reply.status == 429, reply.body
    assert reply.error["code"] == "budget_exceeded"
    assert len(up.requests) == 2
    info = admin(gateway, "GET", f"/key/info?key={key}")
    assert info["info"]["spend"] == pytest.approx(2 * CHAT_COST, rel=1e-9)


def test_a_stream_cut_before_its_usage_has_no_cost(
    gateway: GatewayProcess, up: FakeCohere, http_client: httpx.Client
) -> None:
    up.configure(cut_stream_after=3)  # message-start, content-start, one delta: no message-end
    client = cohere.ClientV2(
        api_key=MASTER_KEY, base_url=gateway.url + "/cohere", httpx_client=http_client
    )
    rid = request_id()
    with pytest.raises(httpx.RemoteProtocolError):
        list(
            client.chat_stream(
                model=payloads.DEFAULT_MODEL,
                messages=MESSAGES,
                request_options={"additional_headers": {"x-request-id": rid}},
            )
        )
    row = spend_row(gateway, rid)
    assert (row["provider"], row["model"], row["stream"]) == (
        "cohere",
        payloads.DEFAULT_MODEL,
        True,
    )
    assert (row["cost"], row["prompt_tokens"], row["interrupted"]) == (None, None, True)


def test_events_are_relayed_as_they_come(gateway: GatewayProcess, up: FakeCohere) -> None:
    delay = 0.15
    up.configure(event_delay=delay)
    body = {"model": payloads.DEFAULT_MODEL, "messages": MESSAGES, "stream": True}
    arrived: list[float] = []
    with (
        httpx.Client(timeout=10) as client,
        client.stream(
            "POST", gateway.url + "/cohere/v2/chat", json=body, headers=ADMIN
        ) as response,
    ):
        start = time.monotonic()
        for line in response.iter_lines():
            if line.startswith("event: "):
                arrived.append(time.monotonic() - start)
    events = len(payloads.TEXT) + 4
    assert len(arrived) == events
    # spread over time as the upstream sent them, not held back and delivered at once
    assert arrived[-1] - arrived[0] >= 0.8 * (events - 1) * delay


def test_parse_is_priced_per_page(gateway: GatewayProcess, up: FakeCohere) -> None:
    rid = request_id()
    body = orjson.dumps({"model": "parse-v5.0", "document": {"url": "https://example.com/a.pdf"}})
    headers = {**ADMIN, "Content-Type": "application/json", "x-request-id": rid}
    reply = request(gateway.url, "POST", "/cohere/v2/parse", body, headers)
    assert reply.status == 200, reply.body
    assert up.last.body == body
    cost = payloads.PARSED_PAGES * 0.0015  # parse-v5.0: $1.50 per 1000 pages
    assert_row(spend_row(gateway, rid), "parse-v5.0", cost, pages=payloads.PARSED_PAGES)


def test_cohere_errors_are_relayed_unchanged_and_cost_nothing(
    gateway: GatewayProcess, up: FakeCohere
) -> None:
    refusal = b'{"id":"4f1c","message":"invalid api token"}'
    up.set_response("/v2/chat", refusal, status=401, headers=[("content-type", "application/json")])
    rid = request_id()
    headers = {**ADMIN, "Content-Type": "application/json", "x-request-id": rid}
    body = orjson.dumps({"model": payloads.DEFAULT_MODEL, "messages": MESSAGES})
    reply = request(gateway.url, "POST", "/cohere/v2/chat", body, headers)
    assert (reply.status, reply.body) == (401, refusal)
    row = spend_row(gateway, rid)
    assert (row["status"], row["cost"], row["prompt_tokens"]) == (401, 0.0, None)
