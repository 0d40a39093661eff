"""Gemini end to end: the real gateway before a fake Google AI Studio, via the SDK and raw HTTP.

Expected costs are computed here from list prices hard-coded below (LiteLLM's gemini/ entries,
per token), never read from the package's catalog, so a wrong catalog entry fails a test.
The fake reports fixed usage (tests/support/fake_gemini_payloads).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from google import genai
from google.genai import errors, types
from google.genai.interactions import Interaction

from tests.conftest import MASTER_KEY, GatewayFactory
from tests.support import fake_gemini_payloads as payloads
from tests.support.fake_gemini import FakeGemini
from tests.support.gateway import GatewayProcess
from tests.support.http import request
from tests.support.spend import spend_row

FLASH = "gemini-3.5-flash"
PRO = "gemini-3.1-pro-preview"
EMBED = "gemini-embedding-001"
# USD per token: input, output, cache read (LiteLLM 1.110.2, gemini/ entries)
PRICES = {FLASH: (1.5e-06, 9e-06, 1.5e-07), EMBED: (1.5e-07, 0.0, 1.5e-07)}
ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
JSON = {"Content-Type": "application/json"}
WAIT = 10.0


def generate_cost(model: str, cached: bool) -> float:
    """The list price of the fake's fixed generateContent usage."""
    per_in, per_out, per_cached = PRICES[model]
    cached_tokens = payloads.CACHED_TOKENS if cached else 0
    return (
        (payloads.PROMPT_TOKENS - cached_tokens) * per_in
        + cached_tokens * per_cached
        + (payloads.CANDIDATE_TOKENS + payloads.THOUGHT_TOKENS) * per_out
    )


@pytest.fixture(scope="module")
def fake_gemini() -> Iterator[FakeGemini]:
    with FakeGemini() as fake:
        yield fake


@pytest.fixture
def up(fake_gemini: FakeGemini) -> FakeGemini:
    fake_gemini.reset()
    return fake_gemini


@pytest.fixture(scope="module")
def gw(fake_gemini: FakeGemini, start_gateway: GatewayFactory) -> GatewayProcess:
    return start_gateway(
        {
            "GEMINI_API_BASE": fake_gemini.url,
            "GEMINI_API_KEY": fake_gemini.api_key,
            "PASSGATE_MASTER_KEY": MASTER_KEY,
            "PASSGATE_SPEND_FLUSH_INTERVAL": "0.05",
        }
    )


def new_key(gateway: GatewayProcess, **fields: Any) -> str:
    """A new virtual key made with the master key."""
    reply = request(gateway.url, "POST", "/key/generate", orjson.dumps(fields), {**ADMIN, **JSON})
    assert reply.status == 200, reply.body
    key = reply.json()
    assert isinstance(key, dict)
    secret: str = key["key"]
    return secret


def sdk(gateway: GatewayProcess, key: str, **headers: str) -> genai.Client:
    """The official SDK pointed at the gateway's /gemini route."""
    options = types.HttpOptions(base_url=gateway.url + "/gemini", headers=headers)
    return genai.Client(api_key=key, http_options=options)


def assert_no_gateway_key(record: Any, key: str) -> None:
    """The caller's gateway key went nowhere upstream; the real key went as x-goog-api-key."""
    assert record.header("x-goog-api-key") == payloads.API_KEY
    assert record.header("authorization") is None
    assert key not in record.raw_path.decode("latin-1")
    assert all(key not in value for _, value in record.headers)


def test_sdk_generate_with_a_virtual_key_is_priced_and_attributed(
    up: FakeGemini, gw: GatewayProcess
) -> None:
    key = new_key(gw)
    client = sdk(gw, key, **{"x-end-user-id": "alice", "x-request-id": "gem-sdk-1"})
    answer = client.models.generate_content(model=FLASH, contents="Hi")
    assert answer.text == "A fixed answer."
    (record,) = up.wait_for_requests(1)
    assert record.path == f"/v1/models/{FLASH}:generateContent"  # the SDK's default version
    assert record.json()["contents"][0]["parts"][0]["text"] == "Hi"
    assert_no_gateway_key(record, key)
    row = spend_row(gw, "gem-sdk-1")
    assert (row["provider"], row["model"], row["end_user"]) == ("gemini", FLASH, "alice")
    assert row["prompt_tokens"] == payloads.PROMPT_TOKENS
    assert row["completion_tokens"] == payloads.CANDIDATE_TOKENS + payloads.THOUGHT_TOKENS
    assert row["reasoning_tokens"] == payloads.THOUGHT_TOKENS
    assert row["total_tokens"] == payloads.TOTAL_TOKENS
    assert row["cost"] == pytest.approx(generate_cost(FLASH, cached=False), rel=1e-9)


def test_sdk_stream_is_relayed_and_priced(up: FakeGemini, gw: GatewayProcess) -> None:
    up.configure(stream_events=4)
    client = sdk(gw, MASTER_KEY, **{"x-request-id": "gem-sdk-stream"})
    chunks = list(client.models.generate_content_stream(model=FLASH, contents="Hi"))
    assert [c.text for c in chunks] == [f"part {i} " for i in range(4)]
    (record,) = up.wait_for_requests(1)
    assert record.raw_path == f"/v1/models/{FLASH}:streamGenerateContent?alt=sse".encode()
    assert_no_gateway_key(record, MASTER_KEY)
    row = spend_row(gw, "gem-sdk-stream")
    # Gemini asks for a stream in the path, not the body
    assert (row["model"], row["interrupted"], row["stream"]) == (FLASH, False, True)
    assert row["cost"] == pytest.approx(generate_cost(FLASH, cached=False), rel=1e-9)


def test_interactions_are_priced_streamed_or_not(up: FakeGemini, gw: GatewayProcess) -> None:
    client = sdk(gw, MASTER_KEY, **{"x-request-id": "gem-interaction"})
    made = client.interactions.create(model=FLASH, input="Hi")
    assert isinstance(made, Interaction) and made.usage is not None
    assert made.usage.total_tokens == payloads.TOTAL_TOKENS
    streamed = sdk(gw, MASTER_KEY, **{"x-request-id": "gem-interaction-stream"})
    events = list(streamed.interactions.create(model=FLASH, input="Hi", stream=True))
    assert events[-1].event_type == "interaction.completed"
    for request_id, stream in (("gem-interaction", False), ("gem-interaction-stream", True)):
        row = spend_row(gw, request_id)
        assert (row["model"], row["stream"]) == (FLASH, stream)
        assert row["reasoning_tokens"] == payloads.THOUGHT_TOKENS
        assert row["cost"] == pytest.approx(generate_cost(FLASH, cached=False), rel=1e-9)


def test_a_cut_stream_is_recorded_with_the_usage_it_reached(
    up: FakeGemini, gw: GatewayProcess
) -> None:
    up.configure(stream_events=4, cut_stream_after=2)
    target = f"/gemini/v1beta/models/{FLASH}:streamGenerateContent?alt=sse"
    headers = {**JSON, "x-goog-api-key": MASTER_KEY, "x-request-id": "gem-cut"}
    with (
        pytest.raises(httpx.HTTPError),
        httpx.stream("POST", gw.url + target, content=b"{}", headers=headers) as response,
    ):
        for _ in response.iter_raw():
            pass
    row = spend_row(gw, "gem-cut")
    assert row["interrupted"] is True
    candidates = payloads.CANDIDATE_TOKENS * 2 // 4  # as the second event reported them
    assert row["completion_tokens"] == candidates + payloads.THOUGHT_TOKENS
    per_in, per_out, _ = PRICES[FLASH]
    expected = payloads.PROMPT_TOKENS * per_in + (candidates + payloads.THOUGHT_TOKENS) * per_out
    assert row["cost"] == pytest.approx(expected, rel=1e-9)


def test_a_keys_budget_stops_gemini_calls(up: FakeGemini, gw: GatewayProcess) -> None:
    # two calls fit in the budget, then the spend exceeds it
    key = new_key(gw, max_budget=round(1.5 * generate_cost(FLASH, cached=False), 6))
    body = orjson.dumps({"contents": [], "generationConfig": {"maxOutputTokens": 10}})
    path = f"/gemini/v1beta/models/{FLASH}:generateContent"
    headers = {**JSON, "x-goog-api-key": key}
    statuses = [request(gw.url, "POST", path, body, headers).status for _ in range(2)]
    deadline = time.monotonic() + WAIT
    while (reply := request(gw.url, "POST", path, body, headers)).status == 200:
        assert time.monotonic() < deadline, "the budget was never enforced"
        time.sleep(0.05)
    assert statuses == [200, 200]
    assert (reply.status, reply.error["code"]) == (429, "budget_exceeded")


def test_raw_sse_events_arrive_one_by_one(up: FakeGemini, gw: GatewayProcess) -> None:
    up.configure(stream_events=3, hold_last_event=True)
    target = f"{gw.url}/gemini/v1beta/models/{FLASH}:streamGenerateContent?alt=sse"
    headers = {"x-goog-api-key": MASTER_KEY, **JSON}
    with httpx.stream("POST", target, content=b"{}", headers=headers, timeout=10) as response:
        received = b""
        pieces = response.iter_raw()
        while received.count(b"\r\n\r\n") < 2:  # two events through while the third is held
            received += next(pieces)
        up.release_last_event()
        received += b"".join(pieces)
    assert received.count(b"\r\n\r\n") == 3


def test_key_in_the_query_is_removed_and_the_rest_kept_byte_for_byte(
    up: FakeGemini, gw: GatewayProcess
) -> None:
    body = b'{"contents": [ {"parts":[{"text": "Hi"}],} ],\n "cachedContent": "cachedContents/c1"}'
    query = f"alt=sse&key={MASTER_KEY}&x=a%2Cb&x=2&empty="
    path = f"/gemini/v1beta/models/{FLASH}:streamGenerateContent?{query}"
    reply = request(gw.url, "POST", path, body, {**JSON, "x-request-id": "gem-query-key"})
    assert reply.status == 200, reply.body
    (record,) = up.wait_for_requests(1)
    assert (
        record.raw_path
        == f"/v1beta/models/{FLASH}:streamGenerateContent?alt=sse&x=a%2Cb&x=2&empty=".encode()
    )
    assert record.body == body
    assert_no_gateway_key(record, MASTER_KEY)
    row = spend_row(gw, "gem-query-key")
    assert MASTER_KEY not in orjson.dumps(row).decode()
    assert MASTER_KEY not in gw.logs()
    assert row["cached_tokens"] == payloads.CACHED_TOKENS
    assert row["cost"] == pytest.approx(generate_cost(FLASH, cached=True), rel=1e-9)


def test_bearer_key_and_a_path_without_version(up: FakeGemini, gw: GatewayProcess) -> None:
    reply = request(
        gw.url,
        "POST",
        f"/gemini/models/{FLASH}:generateContent",
        b"{}",
        {**JSON, "Authorization": f"Bearer {MASTER_KEY}"},
    )
    assert reply.status == 200, reply.body
    (record,) = up.wait_for_requests(1)
    assert record.path == f"/v1beta/models/{FLASH}:generateContent"
    assert_no_gateway_key(record, MASTER_KEY)


def test_a_wrong_gateway_key_never_reaches_google(up: FakeGemini, gw: GatewayProcess) -> None:
    for headers, query in (({"x-goog-api-key": "sk-wrong"}, ""), ({}, "?key=sk-wrong"), ({}, "")):
        path = f"/gemini/v1beta/models/{FLASH}:generateContent{query}"
        reply = request(gw.url, "POST", path, b"{}", {**JSON, **headers})
        assert reply.status == 401, reply.body
        assert "sk-wrong" not in reply.body.decode()
    assert up.requests == []


def test_a_keys_model_allowlist_applies_to_the_path_model(
    up: FakeGemini, gw: GatewayProcess
) -> None:
    key = new_key(gw, models=[FLASH])
    client = sdk(gw, key)
    with pytest.raises(errors.APIError) as refused:
        client.models.generate_content(model=PRO, contents="Hi")
    assert refused.value.code == 403
    encoded = f"/gemini/v1beta/models/{PRO}%3AgenerateContent?key={key}"
    assert request(gw.url, "POST", encoded, b"{}", JSON).status == 403
    # the path's model is the one Google runs: a body naming an allowed model changes nothing
    disguised = f"/gemini/v1beta/models/{PRO}:generateContent?key={key}"
    body = orjson.dumps({"model": FLASH, "contents": []})
    assert request(gw.url, "POST", disguised, body, JSON).status == 403
    assert up.requests == []
    assert client.models.generate_content(model=FLASH, contents="Hi").text == "A fixed answer."


def test_count_tokens_is_free_and_a_json_array_stream_is_priced(
    up: FakeGemini, gw: GatewayProcess
) -> None:
    headers = {**JSON, "x-goog-api-key": MASTER_KEY}
    count = f"/gemini/v1beta/models/{FLASH}:countTokens"
    reply = request(gw.url, "POST", count, b"{}", {**headers, "x-request-id": "gem-count"})
    assert reply.json() == payloads.count_tokens_response(cached=False)
    assert spend_row(gw, "gem-count")["cost"] == 0
    array = f"/gemini/v1beta/models/{FLASH}:streamGenerateContent"
    reply = request(gw.url, "POST", array, b"{}", {**headers, "x-request-id": "gem-array"})
    assert len(orjson.loads(reply.body)) == 5
    row = spend_row(gw, "gem-array")
    assert row["cost"] == pytest.approx(generate_cost(FLASH, cached=False), rel=1e-9)


def test_embeddings_are_priced_when_usage_is_reported_and_never_guessed(
    up: FakeGemini, gw: GatewayProcess
) -> None:
    client = sdk(gw, MASTER_KEY, **{"x-request-id": "gem-embed"})
    embedded = client.models.embed_content(model=EMBED, contents=["a", "b", "c"])
    assert embedded.embeddings is not None and len(embedded.embeddings) == 3
    row = spend_row(gw, "gem-embed")
    assert row["prompt_tokens"] == 3 * payloads.EMBED_TOKENS
    assert row["cost"] == pytest.approx(3 * payloads.EMBED_TOKENS * PRICES[EMBED][0], rel=1e-9)
    path = f"/v1beta/models/{EMBED}:embedContent"
    up.set_response(
        path, b'{"embedding": {"values": [0.5]}}', headers=[("content-type", "application/json")]
    )
    headers = {**JSON, "x-goog-api-key": MASTER_KEY, "x-request-id": "gem-embed-bare"}
    assert request(gw.url, "POST", "/gemini" + path, b"{}", headers).status == 200
    row = spend_row(gw, "gem-embed-bare")
    # no usage reported: no counts and no cost, rather than a guess
    assert (row["prompt_tokens"], row["total_tokens"], row["cost"]) == (None, None, None)


def test_models_list_and_a_multipart_upload_pass_through(
    up: FakeGemini, gw: GatewayProcess
) -> None:
    client = sdk(gw, MASTER_KEY, **{"x-request-id": "gem-models"})
    assert [m.name for m in client.models.list()] == [f"models/{n}" for n in payloads.MODELS]
    row = spend_row(gw, "gem-models")
    assert (row["model"], row["prompt_tokens"], row["cost"]) == (None, None, 0)
    boundary = "gateway-upload"
    media = bytes(range(256)) * 4
    body = (
        (
            f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n"
            '{"file": {"displayName": "bytes"}}'
            f"\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + media
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {
        "x-goog-api-key": MASTER_KEY,
        "X-Goog-Upload-Protocol": "multipart",
        "Content-Type": f"multipart/related; boundary={boundary}",
    }
    reply = request(gw.url, "POST", "/gemini/upload/v1beta/files", body, headers)
    assert reply.status == 200, reply.body
    record = up.last
    assert record.path == "/upload/v1beta/files"
    assert record.body == body
    assert [f.content for f in up.uploaded.values()] == [media]


# Every curl on LiteLLM's Google AI Studio pass-through page, copied verbatim; only LiteLLM's
# host and keys are replaced by the gateway's. Three of them on the page lack the leading
# "curl '" (a typo: bash cannot run them), which LITELLM_TYPO puts back, changing nothing else.
LITELLM_URL = "http://0.0.0.0:4000"
LITELLM_TYPO = "http://0.0.0.0:4000/gemini/v1beta/models/gemini-1.5-flash:countTokens?key="

EXAMPLE_USAGE = """curl 'http://0.0.0.0:4000/gemini/v1beta/models/gemini-1.5-flash:countTokens?key=sk-anything' \\
-H 'Content-Type: application/json' \\
-d '{
    "contents": [{
        "parts":[{
          "text": "The quick brown fox jumps over the lazy dog."
          }]
        }]
}'"""  # noqa: E501

QUICK_START = """http://0.0.0.0:4000/gemini/v1beta/models/gemini-1.5-flash:countTokens?key=anything' \\
-H 'Content-Type: application/json' \\
-d '{
    "contents": [{
        "parts":[{
          "text": "The quick brown fox jumps over the lazy dog."
          }]
        }]
}'"""  # noqa: E501

EXAMPLE_1_COUNT_TOKENS = """curl http://0.0.0.0:4000/gemini/v1beta/models/gemini-1.5-flash:countTokens?key=anything \\
    -H 'Content-Type: application/json' \\
    -X POST \\
    -d '{
      "contents": [{
        "parts":[{
          "text": "The quick brown fox jumps over the lazy dog."
          }],
        }],
      }'"""  # noqa: E501

EXAMPLE_2_GENERATE = """curl "http://0.0.0.0:4000/gemini/v1beta/models/gemini-1.5-flash:generateContent?key=anything" \\
    -H 'Content-Type: application/json' \\
    -X POST \\
    -d '{
      "contents": [{
        "parts":[{"text": "Write a story about a magic backpack."}]
        }]
       }' 2> /dev/null"""  # noqa: E501

EXAMPLE_3_CACHING = """curl -X POST "http://0.0.0.0:4000/gemini/v1beta/models/gemini-1.5-flash-001:generateContent?key=anything" \\
-H 'Content-Type: application/json' \\
-d '{
      "contents": [
        {
          "parts":[{
            "text": "Please summarize this transcript"
          }],
          "role": "user"
        },
      ],
      "cachedContent": "'$CACHE_NAME'"
    }'"""  # noqa: E501

GENERATE_VIRTUAL_KEY = """curl -X POST 'http://0.0.0.0:4000/key/generate' \\
-H 'Authorization: Bearer sk-1234' \\
-H 'Content-Type: application/json' \\
-d '{}'"""

VIRTUAL_KEY_TEST = """http://0.0.0.0:4000/gemini/v1beta/models/gemini-1.5-flash:countTokens?key=sk-1234ewknldferwedojwojw' \\
-H 'Content-Type: application/json' \\
-d '{
    "contents": [{
        "parts":[{
          "text": "The quick brown fox jumps over the lazy dog."
          }]
        }]
}'"""  # noqa: E501

TAGS = """curl 'http://0.0.0.0:4000/gemini/v1beta/models/gemini-1.5-flash:generateContent?key=sk-anything' \\
-H 'Content-Type: application/json' \\
-H 'tags: gemini-js-sdk,pass-through-endpoint' \\
-d '{
    "contents": [{
        "parts":[{
          "text": "The quick brown fox jumps over the lazy dog."
          }]
        }]
}'"""  # noqa: E501

LITELLM_KEYS = ("sk-1234ewknldferwedojwojw", "sk-anything", "anything", "sk-1234")


def run_curl(
    command: str, gateway: GatewayProcess, key: str | None, **env: str
) -> tuple[int, bytes]:
    """Run one of the page's curls through bash against the gateway, with ``key`` for LiteLLM's
    (None: the page's own key, for a gateway without a master key)."""
    if command.startswith(LITELLM_TYPO):
        command = "curl '" + command
    command = command.replace(LITELLM_URL, gateway.url)
    for litellm_key in LITELLM_KEYS if key is not None else ():
        # longest first: "anything" is inside "sk-anything"
        command = command.replace(f"key={litellm_key}", f"key={key}")
        command = command.replace(f"Bearer {litellm_key}", f"Bearer {key}")
    command = command.replace("curl ", "curl -sS -o /dev/stdout -w '\\n%{http_code}' ", 1)
    done = subprocess.run(
        ["bash", "-c", command],
        capture_output=True,
        timeout=30,
        check=True,
        env={**os.environ, **env},
    )
    body, _, status = done.stdout.rpartition(b"\n")
    return int(status), body


def body_of(command: str, **env: str) -> bytes:
    """The -d body of a curl as bash passes it."""
    body = command.split("-d '", 1)[1].rsplit("'", 1)[0]
    for name, value in env.items():
        body = body.replace(f"'${name}'", value)
    return body.encode()


def _upstream_path(command: str) -> str:
    start = command.index("/gemini/") + len("/gemini")
    end = min(i for i in (command.find(c, start) for c in "?'\" ") if i >= 0)
    return command[start:end]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize(
    "command",
    [
        EXAMPLE_USAGE,
        QUICK_START,
        EXAMPLE_1_COUNT_TOKENS,
        EXAMPLE_2_GENERATE,
        EXAMPLE_3_CACHING,
        TAGS,
    ],
    ids=["example-usage", "quick-start", "ex1-count-tokens", "ex2-generate", "ex3-caching", "tags"],
)
def test_litellm_page_curls(command: str, up: FakeGemini, gw: GatewayProcess) -> None:
    env = {"CACHE_NAME": "cachedContents/litellm-page"}
    status, body = run_curl(command, gw, MASTER_KEY, **env)
    assert status == 200, body
    (record,) = up.wait_for_requests(1)
    assert record.path == _upstream_path(command)
    assert record.query == b""  # the key was the whole query
    assert record.body == body_of(command, **env)
    assert_no_gateway_key(record, MASTER_KEY)
    answer = orjson.loads(body)
    if ":countTokens" in command:
        assert answer["totalTokens"] == payloads.PROMPT_TOKENS
    else:
        cached = "cachedContent" in command
        assert answer["usageMetadata"] == payloads.usage_metadata(
            cached, payloads.CANDIDATE_TOKENS, payloads.THOUGHT_TOKENS
        )


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_litellm_quick_start_as_written_on_a_gateway_without_master_key(
    up: FakeGemini, fake_gemini: FakeGemini, start_gateway: GatewayFactory
) -> None:
    # the Quick Start's environment: only GEMINI_API_KEY (and the fake's base URL)
    env = {"GEMINI_API_KEY": fake_gemini.api_key, "GEMINI_API_BASE": fake_gemini.url}
    open_gateway = start_gateway(env)
    status, body = run_curl(QUICK_START, open_gateway, None)
    assert status == 200, body
    assert orjson.loads(body)["totalTokens"] == payloads.PROMPT_TOKENS
    (record,) = up.wait_for_requests(1)
    assert (record.path, record.query) == ("/v1beta/models/gemini-1.5-flash:countTokens", b"")
    assert record.body == body_of(QUICK_START)
    assert_no_gateway_key(record, "anything")


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_litellm_page_virtual_key_flow(up: FakeGemini, gw: GatewayProcess) -> None:
    status, body = run_curl(GENERATE_VIRTUAL_KEY, gw, MASTER_KEY)
    assert status == 200, body
    virtual_key = orjson.loads(body)["key"]
    status, body = run_curl(VIRTUAL_KEY_TEST, gw, virtual_key)
    assert status == 200, body
    (record,) = up.wait_for_requests(1)
    assert record.path == "/v1beta/models/gemini-1.5-flash:countTokens"
    assert record.body == body_of(VIRTUAL_KEY_TEST)
    assert_no_gateway_key(record, virtual_key)
