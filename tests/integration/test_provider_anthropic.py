"""Anthropic end to end: a real ``passgate`` process in front of the fake Anthropic upstream
(and the fake Mistral one, for a budget both spend).

Through the official ``anthropic`` SDK and raw HTTP: bodies reach Anthropic byte for byte, the
caller's gateway key (``x-api-key`` or bearer) is replaced by the real one, ``anthropic-version``
and ``anthropic-beta`` pass, streams are relayed event by event, and each metered call leaves a
spend row with the exact cost of the fake's fixed usage: fresh input, cache reads, five-minute
and one-hour cache writes and output each at their own price. Prices are typed in here from
Anthropic's list prices, never read from the package's catalog, so a wrong entry fails a test.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import anthropic
import orjson
import pytest

from tests.conftest import MASTER_KEY
from tests.support import fake_anthropic as fake
from tests.support.fake_anthropic import FakeAnthropic
from tests.support.fake_mistral import FakeMistral
from tests.support.fake_mistral_payloads import COMPLETION_TOKENS, PROMPT_TOKENS
from tests.support.gateway import GatewayProcess
from tests.support.http import request
from tests.support.spend import admin, spend_row

ANTHROPIC_KEY = "sk-ant-provider-secret-0123456789"
MODEL = "claude-sonnet-4-6"
# USD per million tokens, Anthropic's list prices for Claude Sonnet 4.6: input, output,
# cache read, 5-minute cache write, 1-hour cache write
SONNET = (3.0, 15.0, 0.30, 3.75, 6.0)
HAIKU_4_5 = (1.0, 5.0)
MESSAGE_COST = (
    fake.FRESH_INPUT * SONNET[0]
    + fake.OUTPUT * SONNET[1]
    + fake.CACHE_READ * SONNET[2]
    + fake.CACHE_WRITE_5M * SONNET[3]
    + fake.CACHE_WRITE_1H * SONNET[4]
) / 1e6
# Claude Sonnet 5: $2 in, $10 out, $0.20 cache read, $2.50 and $4 cache writes per million
SONNET_5_COST = (
    fake.FRESH_INPUT * 2.0
    + fake.OUTPUT * 10.0
    + fake.CACHE_READ * 0.2
    + fake.CACHE_WRITE_5M * 2.5
    + fake.CACHE_WRITE_1H * 4.0
) / 1e6
PROMPT = fake.FRESH_INPUT + fake.CACHE_READ + fake.CACHE_WRITE_5M + fake.CACHE_WRITE_1H
# mistral-small-latest (mistral-small-2603): $0.15 in, $0.60 out per million tokens
MISTRAL_COST = (PROMPT_TOKENS * 0.15 + COMPLETION_TOKENS * 0.6) / 1e6


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=ANTHROPIC_KEY) as fake_upstream:
        yield fake_upstream


@pytest.fixture(scope="module")
def mistral() -> Iterator[FakeMistral]:
    with FakeMistral() as fake_upstream:
        yield fake_upstream


@pytest.fixture(scope="module")
def gateway(upstream: FakeAnthropic, mistral: FakeMistral) -> Iterator[GatewayProcess]:
    env = {
        "ANTHROPIC_API_BASE": upstream.url,
        "ANTHROPIC_API_KEY": ANTHROPIC_KEY,
        "MISTRAL_API_BASE": mistral.url,
        "MISTRAL_API_KEY": "mistral-provider-key",
        "PASSGATE_MASTER_KEY": MASTER_KEY,
        "PASSGATE_SPEND_FLUSH_INTERVAL": "0.05",
    }
    with GatewayProcess(env) as process:
        yield process


@pytest.fixture
def up(upstream: FakeAnthropic) -> FakeAnthropic:
    upstream.reset()
    return upstream


@pytest.fixture
def sdk(gateway: GatewayProcess) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        api_key=MASTER_KEY, base_url=gateway.url + "/anthropic", timeout=10
    ) as client:
        yield client


def request_id() -> str:
    return "e2e-anthropic-" + uuid.uuid4().hex


def assert_forwarded(up: FakeAnthropic, caller_key: str) -> None:
    """The real key went upstream, alone; the caller's gateway key did not."""
    record = up.last
    assert record.header_values("x-api-key") == [ANTHROPIC_KEY]
    assert record.header_values("authorization") == []
    assert all(caller_key not in value for _, value in record.headers)


def assert_priced(row: dict[str, Any], model: str = MODEL, cost: float = MESSAGE_COST) -> None:
    assert (row["provider"], row["model"], row["status"]) == ("anthropic", model, 200)
    assert row["cost"] == pytest.approx(cost, rel=1e-9)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (PROMPT, fake.OUTPUT)
    assert (row["cached_tokens"], row["cache_write_tokens"]) == (
        fake.CACHE_READ,
        fake.CACHE_WRITE_5M + fake.CACHE_WRITE_1H,
    )
    assert row["cache_write_1h_tokens"] == fake.CACHE_WRITE_1H


def test_a_message_through_the_sdk(
    gateway: GatewayProcess, up: FakeAnthropic, sdk: anthropic.Anthropic
) -> None:
    client = sdk
    rid = request_id()
    answer = client.messages.create(
        model=MODEL,
        max_tokens=64,
        messages=[{"role": "user", "content": "Hi"}],
        extra_headers={"x-request-id": rid, "x-end-user-id": "alice"},
    )
    assert answer.model == MODEL and answer.usage.cache_read_input_tokens == fake.CACHE_READ
    assert_forwarded(up, MASTER_KEY)
    record = up.last
    assert len(record.header_values("anthropic-version")) == 1  # the SDK's, as it sent it
    assert orjson.loads(record.body)["messages"] == [{"role": "user", "content": "Hi"}]
    row = spend_row(gateway, rid)
    assert_priced(row)
    assert row["end_user"] == "alice"
    assert row["upstream_request_id"].startswith("req_")


def test_a_stream_through_the_sdk_is_relayed_event_by_event_and_priced(
    gateway: GatewayProcess, up: FakeAnthropic, sdk: anthropic.Anthropic
) -> None:
    client = sdk
    rid = request_id()
    with client.messages.stream(
        model=MODEL,
        max_tokens=64,
        messages=[{"role": "user", "content": "Hi"}],
        extra_headers={"x-request-id": rid},
    ) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "".join(fake.TEXT) == "".join(b.text for b in final.content if b.type == "text")
    assert final.usage.output_tokens == fake.OUTPUT
    row = spend_row(gateway, rid)
    assert_priced(row)
    assert row["stream"] is True


def test_claude_code_shaped_call_with_a_virtual_key(
    gateway: GatewayProcess, up: FakeAnthropic
) -> None:
    key = admin(gateway, "POST", "/key/generate", {"key_alias": "claude-code"})["key"]
    body = orjson.dumps(
        {
            "model": MODEL,
            "max_tokens": 32000,
            "stream": True,
            "system": [
                {
                    "type": "text",
                    "text": "You are Claude Code.",
                    "cache_control": {"type": "ephemeral", "ttl": "1h"},
                }
            ],
            "tools": [
                {
                    "name": "Bash",
                    "description": "Run a command",
                    "input_schema": {
                        "type": "object",
                        "properties": {"command": {"type": "string"}},
                        "required": ["command"],
                    },
                }
            ],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "ls"}]}],
            "metadata": {"user_id": "user_abc_account_def_session_123"},
            "thinking": {"type": "enabled", "budget_tokens": 8000},
        }
    )
    rid = request_id()
    beta = ",".join(
        (
            "claude-code-20250219",
            "interleaved-thinking-2025-05-14",
            "fine-grained-tool-streaming-2025-05-14",
        )
    )
    headers = {
        "Authorization": f"Bearer {key}",
        "anthropic-version": "2023-06-01",
        "anthropic-beta": beta,
        "anthropic-dangerous-direct-browser-access": "true",
        "content-type": "application/json",
        "user-agent": "claude-cli/2.0.0 (external, cli)",
        "x-app": "cli",
        "x-request-id": rid,
    }
    reply = request(gateway.url, "POST", "/anthropic/v1/messages?beta=true", body, headers)
    assert reply.status == 200, reply.body
    assert reply.body.count(b"event: ") == len(fake.stream_events(MODEL))
    record = up.last
    assert record.raw_path == b"/v1/messages?beta=true"
    assert record.body == body  # byte for byte
    assert record.header_values("anthropic-beta") == [beta]
    assert record.header_values("x-app") == ["cli"]
    assert_forwarded(up, key)
    row = spend_row(gateway, rid)
    assert_priced(row)
    assert row["key_alias"] == "claude-code"


@pytest.mark.parametrize("model", ["claude-3-5-sonnet-20241022", "claude-sonnet-5"])
def test_litellm_pass_through_curls_as_written(
    gateway: GatewayProcess, up: FakeAnthropic, model: str
) -> None:
    # LiteLLM's Anthropic pass-through page: its first example sends the key as a bearer
    # token (lowercase scheme), the quick start as x-api-key; only host and key substituted
    data = orjson.dumps(
        {
            "model": model,
            "max_tokens": 1024,
            "messages": [{"role": "user", "content": "Hello, world"}],
        }
    )
    bearer = {
        "accept": "application/json",
        "content-type": "application/json",
        "Authorization": f"bearer {MASTER_KEY}",
    }
    quick_start = {
        "x-api-key": MASTER_KEY,
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
    }
    for headers in (bearer, quick_start):
        rid = request_id()
        reply = request(
            gateway.url, "POST", "/anthropic/v1/messages", data, {**headers, "x-request-id": rid}
        )
        assert reply.status == 200, reply.body
        assert up.last.body == data
        assert_forwarded(up, MASTER_KEY)
        row = spend_row(gateway, rid)
        assert (row["provider"], row["model"]) == ("anthropic", model)
        # claude-3-5-sonnet-20241022 is retired and has no list price: recorded unpriced
        if model == "claude-3-5-sonnet-20241022":
            assert row["cost"] is None
        else:
            assert row["cost"] == pytest.approx(SONNET_5_COST, rel=1e-9)


def test_a_wrong_gateway_key_never_reaches_anthropic(
    gateway: GatewayProcess, up: FakeAnthropic
) -> None:
    data = orjson.dumps({"model": MODEL, "max_tokens": 8, "messages": []})
    reply = request(gateway.url, "POST", "/anthropic/v1/messages", data, {"x-api-key": "sk-nope"})
    assert reply.status == 401
    assert up.requests == []


def test_token_counting_is_free_and_models_cost_nothing(
    gateway: GatewayProcess, up: FakeAnthropic
) -> None:
    rid = request_id()
    data = orjson.dumps({"model": MODEL, "messages": [{"role": "user", "content": "Hi"}]})
    headers = {"x-api-key": MASTER_KEY, "content-type": "application/json", "x-request-id": rid}
    reply = request(gateway.url, "POST", "/anthropic/v1/messages/count_tokens", data, headers)
    assert reply.status == 200 and reply.json() == {"input_tokens": fake.COUNTED}
    assert spend_row(gateway, rid)["cost"] == 0.0
    rid = request_id()
    reply = request(
        gateway.url, "GET", "/anthropic/v1/models", None, {**headers, "x-request-id": rid}
    )
    assert reply.status == 200 and orjson.loads(reply.body)["data"][0]["id"] == MODEL
    assert spend_row(gateway, rid)["cost"] == 0.0


def test_a_batchs_results_are_priced_at_the_batch_discount(
    gateway: GatewayProcess, up: FakeAnthropic
) -> None:
    rid = request_id()
    headers = {"x-api-key": MASTER_KEY, "accept": "application/binary", "x-request-id": rid}
    reply = request(
        gateway.url, "GET", "/anthropic/v1/messages/batches/msgbatch_1/results", None, headers
    )
    assert reply.status == 200
    assert len(reply.body.splitlines()) == fake.BATCH_LINES
    row = spend_row(gateway, rid)
    per_line = (
        fake.BATCH_USAGE["input_tokens"] * HAIKU_4_5[0]
        + fake.BATCH_USAGE["output_tokens"] * HAIKU_4_5[1]
    )
    assert (row["model"], row["prompt_tokens"]) == (
        "claude-haiku-4-5",
        fake.BATCH_LINES * fake.BATCH_USAGE["input_tokens"],
    )
    assert row["cost"] == pytest.approx(fake.BATCH_LINES * per_line / 1e6 * 0.5, rel=1e-9)


def test_a_multipart_upload_is_streamed_through(gateway: GatewayProcess, up: FakeAnthropic) -> None:
    boundary = "pg" + uuid.uuid4().hex
    payload = bytes(range(256)) * 64
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + payload
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {
        "x-api-key": MASTER_KEY,
        "anthropic-beta": "files-api-2025-04-14",
        "content-type": f"multipart/form-data; boundary={boundary}",
    }
    reply = request(gateway.url, "POST", "/anthropic/v1/files", body, headers)
    assert reply.status == 200, reply.body
    assert orjson.loads(reply.body)["size_bytes"] == len(payload)
    assert up.last.body == body


def test_a_keys_model_list_applies_to_anthropic(gateway: GatewayProcess, up: FakeAnthropic) -> None:
    key = admin(gateway, "POST", "/key/generate", {"models": ["claude-haiku-4-5"]})["key"]
    data = orjson.dumps({"model": MODEL, "max_tokens": 8, "messages": []})
    reply = request(gateway.url, "POST", "/anthropic/v1/messages", data, {"x-api-key": key})
    assert reply.status == 403, reply.body
    assert up.requests == []


def test_one_budget_spans_mistral_and_anthropic(
    gateway: GatewayProcess, up: FakeAnthropic, mistral: FakeMistral
) -> None:
    # room for one Anthropic message and a little more: a Mistral call still fits (some
    # budget is left when it starts), then nothing does, on either provider
    budget = MESSAGE_COST + MISTRAL_COST / 2
    key = admin(gateway, "POST", "/key/generate", {"max_budget": budget})["key"]
    message = orjson.dumps(
        {"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": "Hi"}]}
    )
    chat = orjson.dumps(
        {"model": "mistral-small-latest", "messages": [{"role": "user", "content": "Hi"}]}
    )
    bearer = {"Authorization": f"Bearer {key}", "content-type": "application/json"}
    rid = request_id()
    reply = request(
        gateway.url, "POST", "/anthropic/v1/messages", message, {**bearer, "x-request-id": rid}
    )
    assert reply.status == 200, reply.body
    spend_row(gateway, rid)
    rid = request_id()
    reply = request(
        gateway.url, "POST", "/mistral/v1/chat/completions", chat, {**bearer, "x-request-id": rid}
    )
    assert reply.status == 200, reply.body
    assert spend_row(gateway, rid)["provider"] == "mistral"
    for path, body in (("/anthropic/v1/messages", message), ("/mistral/v1/chat/completions", chat)):
        reply = request(gateway.url, "POST", path, body, bearer)
        assert reply.status == 429, reply.body
        assert reply.error["code"] == "budget_exceeded"
    info = admin(gateway, "GET", f"/key/info?key={key}")
    assert info["info"]["spend"] == pytest.approx(MESSAGE_COST + MISTRAL_COST, rel=1e-9)
    report = admin(gateway, "GET", "/spend/report?group_by=provider")
    assert {"anthropic", "mistral"} <= {group["group"] for group in report["data"]}
