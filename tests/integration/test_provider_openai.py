"""The OpenAI provider end to end: a real ``passgate`` process in front of a fake OpenAI upstream
(a real HTTP server), called with the official ``openai`` SDK and raw HTTP.

Expected costs are computed here from OpenAI's list prices, hard-coded below (per million
tokens, as the pricing page states them), never read from the package's catalog.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import openai
import orjson
import pytest

from tests.support.fake_openai import FakeOpenAI
from tests.support.fake_openai_payloads import FILE_CONTENT
from tests.support.gateway import GatewayProcess
from tests.support.http import request
from tests.support.spend import spend_row

UPSTREAM_KEY = "sk-upstream-real-0123456789"
MASTER_KEY = "sk-master-secret-0123456789"
ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
M = 1_000_000

# gpt-4o: $2.50 input, $1.25 cached input, $10.00 output per million tokens
GPT_4O = (2.5 / M, 1.25 / M, 10.0 / M)
# gpt-5: $1.25 input, $0.125 cached input, $10.00 output per million tokens
GPT_5 = (1.25 / M, 0.125 / M, 10.0 / M)
# chat usage of the fake: 23 prompt (7 cached), 41 completion (13 reasoning)
CHAT_COST_4O = 16 * GPT_4O[0] + 7 * GPT_4O[1] + 41 * GPT_4O[2]
# responses usage of the fake: 31 input (11 cached), 52 output (20 reasoning)
RESPONSE_COST_5 = 20 * GPT_5[0] + 11 * GPT_5[1] + 52 * GPT_5[2]
MESSAGES: Any = [{"role": "user", "content": "Hi"}]
NAMED_KEY = "ollama-secret-0123456789"
VLLM_PRICE = {"input_cost_per_token": 1e-07, "output_cost_per_token": 3e-07}


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(key=UPSTREAM_KEY) as fake:
        yield fake


@pytest.fixture(scope="module")
def vllm() -> Iterator[FakeOpenAI]:
    """A vLLM server started without ``--api-key``: it demands no credential."""
    with FakeOpenAI(key=None) as fake:
        yield fake


@pytest.fixture(scope="module")
def named() -> Iterator[FakeOpenAI]:
    """A server declared in the config file, living under ``/api`` on its host."""
    with FakeOpenAI(key=None, base_path="/api") as fake:
        yield fake


@pytest.fixture(scope="module")
def gateway(
    upstream: FakeOpenAI, vllm: FakeOpenAI, named: FakeOpenAI, tmp_path_factory: Any
) -> Iterator[Any]:
    config: Path = tmp_path_factory.mktemp("openai") / "config.yaml"
    config.write_text(
        "pricing:\n"
        "  vllm/served-model:\n"
        "    input_cost_per_token: 0.0000001\n"
        "    output_cost_per_token: 0.0000003\n"
        "openai_compatible:\n"
        "  - name: ollama\n"
        f"    api_base: {named.url}/api\n"
        "    api_key: os.environ/OLLAMA_TEST_KEY\n"
        "    credential_header: X-Api-Key\n"
        "    pricing:\n"
        "      llama3: {input_cost_per_token: 0.000002, output_cost_per_token: 0.000004}\n",
        encoding="utf-8",
    )
    env = {
        "OLLAMA_TEST_KEY": NAMED_KEY,
        "OPENAI_API_BASE": upstream.url,
        "OPENAI_API_KEY": UPSTREAM_KEY,
        "HOSTED_VLLM_API_BASE": vllm.url,
        "PASSGATE_MASTER_KEY": MASTER_KEY,
        "PASSGATE_SPEND_FLUSH_INTERVAL": "0.05",
    }
    process = GatewayProcess(env, args=("--config", str(config)))
    try:
        yield process.start()
    finally:
        process.close()


def sdk(gateway: GatewayProcess, key: str = MASTER_KEY, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=gateway.url + "/openai/v1", api_key=key, default_headers=headers, max_retries=0
    )


def rid() -> str:
    return "openai-" + uuid.uuid4().hex


def admin_get(gateway: GatewayProcess, path: str, **params: str) -> Any:
    reply = request(gateway.url, "GET", path + "?" + urlencode(params), headers=ADMIN)
    assert reply.status == 200, reply.body
    return reply.json()


def new_key(gateway: GatewayProcess, **fields: Any) -> str:
    reply = request(
        gateway.url,
        "POST",
        "/key/generate",
        orjson.dumps(fields),
        {**ADMIN, "Content-Type": "application/json"},
    )
    assert reply.status == 200, reply.body
    found = reply.json()
    assert isinstance(found, dict)
    key: str = found["key"]
    return key


def test_raw_chat_arrives_byte_for_byte_with_the_real_key_and_is_priced(
    gateway: GatewayProcess, upstream: FakeOpenAI
) -> None:
    body = b'{ "model" : "gpt-4o",\n "messages":[{"role":"user","content":"Hi \\u00e9"}] }'
    call = rid()
    reply = request(
        gateway.url,
        "POST",
        "/openai/v1/chat/completions?trace=1&x=%2F",
        body,
        {
            "Authorization": f"Bearer {MASTER_KEY}",
            "Content-Type": "application/json",
            "x-request-id": call,
            "x-end-user-id": "alice",
        },
    )
    assert reply.status == 200, reply.body
    seen = upstream.last
    assert seen.body == body
    assert seen.raw_path == b"/v1/chat/completions?trace=1&x=%2F"
    assert seen.header_values("authorization") == [f"Bearer {UPSTREAM_KEY}"]
    assert MASTER_KEY not in str(seen.headers)
    row = spend_row(gateway, call)
    assert (row["provider"], row["model"], row["end_user"]) == ("openai", "gpt-4o", "alice")
    assert (row["prompt_tokens"], row["cached_tokens"], row["completion_tokens"]) == (23, 7, 41)
    assert row["reasoning_tokens"] == 13
    assert row["cost"] == pytest.approx(CHAT_COST_4O, rel=1e-9)


def test_an_sdk_stream_with_include_usage_is_relayed_event_by_event_and_priced(
    gateway: GatewayProcess, upstream: FakeOpenAI
) -> None:
    call = rid()
    upstream.configure(stream_events=6)
    try:
        chunks = list(
            sdk(gateway, **{"x-request-id": call}).chat.completions.create(
                model="gpt-4o",
                messages=MESSAGES,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    finally:
        upstream.configure(stream_events=5)
    # role, 4 deltas, finish, then the usage chunk: as the upstream sent them
    assert len(chunks) == len(upstream.last.events_sent) - 1  # [DONE] is no chunk
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 64
    row = spend_row(gateway, call)
    assert (row["stream"], row["model"], row["total_tokens"]) == (True, "gpt-4o", 64)
    assert row["cost"] == pytest.approx(CHAT_COST_4O, rel=1e-9)


def test_a_stream_without_include_usage_is_recorded_with_unknown_usage_and_cost(
    gateway: GatewayProcess,
) -> None:
    call = rid()
    chunks = list(
        sdk(gateway, **{"x-request-id": call}).chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True
        )
    )
    assert chunks and all(chunk.usage is None for chunk in chunks)
    row = spend_row(gateway, call)
    assert row["model"] == "gpt-4o" and row["status"] == 200
    assert (row["prompt_tokens"], row["completion_tokens"], row["cost"]) == (None, None, None)


def test_a_streamed_response_is_priced_from_response_completed(gateway: GatewayProcess) -> None:
    call = rid()
    events = list(
        sdk(gateway, **{"x-request-id": call}).responses.create(
            model="gpt-5", input="Hi", stream=True
        )
    )
    assert events[-1].type == "response.completed"
    row = spend_row(gateway, call)
    assert (row["cached_tokens"], row["reasoning_tokens"], row["total_tokens"]) == (11, 20, 83)
    assert row["cost"] == pytest.approx(RESPONSE_COST_5, rel=1e-9)


@pytest.mark.parametrize(
    ("call", "cost"),
    [
        # text-embedding-3-small: $0.02 per million tokens; 8 tokens
        (lambda c: c.embeddings.create(model="text-embedding-3-small", input="Hi"), 8 * 0.02 / M),
        # whisper-1: $0.006 per minute; the fake reports 42 seconds
        (
            lambda c: c.audio.transcriptions.create(model="whisper-1", file=("a.mp3", b"ID3")),
            42 * 0.006 / 60,
        ),
        # a verbose_json answer reports no usage but its duration: 12.5 seconds
        (
            lambda c: c.audio.transcriptions.create(
                model="whisper-1", file=("a.mp3", b"ID3"), response_format="verbose_json"
            ),
            12.5 * 0.006 / 60,
        ),
        # tts-1: $15 per million characters of input
        (
            lambda c: c.audio.speech.create(model="tts-1", voice="alloy", input="Hello there"),
            11 * 15.0 / M,
        ),
        # gpt-image-1: $5 per million text input tokens, $40 per million image output tokens
        (
            lambda c: c.images.generate(model="gpt-image-1", prompt="a cat"),
            50 * 5.0 / M + 4160 * 40.0 / M,
        ),
        # moderations are free
        (lambda c: c.moderations.create(model="omni-moderation-latest", input="Hi"), 0.0),
    ],
    ids=["embeddings", "transcription", "verbose", "speech", "image", "moderation"],
)
def test_other_metered_routes_through_the_sdk(
    gateway: GatewayProcess, call: Any, cost: float
) -> None:
    request_id = rid()
    call(sdk(gateway, **{"x-request-id": request_id}))
    row = spend_row(gateway, request_id)
    assert row["provider"] == "openai"
    assert row["cost"] == pytest.approx(cost, rel=1e-9, abs=1e-15)


def test_a_virtual_keys_models_restriction_applies(
    gateway: GatewayProcess, upstream: FakeOpenAI
) -> None:
    key = new_key(gateway, models=["gpt-4o-mini"])
    before = len(upstream.requests)
    with pytest.raises(openai.PermissionDeniedError):
        sdk(gateway, key).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert len(upstream.requests) == before
    answer = sdk(gateway, key).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert answer.model == "gpt-4o-mini"
    assert upstream.last.header("authorization") == f"Bearer {UPSTREAM_KEY}"
    assert key not in str(upstream.last.headers)


# the page's examples use the Assistants API, which the SDK marks deprecated
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_the_litellm_pass_through_page_examples_work_as_written(
    gateway: GatewayProcess, upstream: FakeOpenAI
) -> None:
    """LiteLLM's OpenAI pass-through page: an assistant, a thread, a message, a run, the
    messages, the assistant deleted; a file deleted with X-LiteLLM-Target-Model; a file
    uploaded with target_model_names in the body (only the URL and key substituted)."""
    client = sdk(gateway)
    assistant = client.beta.assistants.create(
        name="Math Tutor",
        instructions="You are a math tutor. Help solve equations.",
        model="gpt-4o",
    )
    thread = client.beta.threads.create()
    client.beta.threads.messages.create(
        thread_id=thread.id, role="user", content="Solve 3x + 11 = 14"
    )
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    status = client.beta.threads.runs.retrieve(thread_id=thread.id, run_id=run.id)
    assert status.status == "completed"
    assert len(client.beta.threads.messages.list(thread_id=thread.id).data) == 1
    assert client.beta.assistants.delete(assistant.id).deleted
    assert upstream.last.header("openai-beta") == "assistants=v2"

    uploaded = client.files.create(
        file=("data.jsonl", b'{"a": 1}\n'),
        purpose="batch",
        extra_body={"target_model_names": "gpt-4"},
    )
    assert b'name="target_model_names"' in upstream.last.body
    targeted = sdk(gateway, **{"X-LiteLLM-Target-Model": "gpt-4"})
    assert targeted.files.delete(file_id=uploaded.id).deleted


def test_models_and_files_content_are_relayed_unmetered(
    gateway: GatewayProcess, upstream: FakeOpenAI
) -> None:
    call = rid()
    client = sdk(gateway, **{"x-request-id": call})
    assert [m.id for m in client.models.list()][:2] == ["gpt-4o", "gpt-4o-mini"]
    row = spend_row(gateway, call)
    assert (row["cost"], row["prompt_tokens"]) == (0.0, None)
    content = client.files.content("file-abc").read()
    assert content == FILE_CONTENT


def test_vllm_priced_from_the_config_and_unpriced_models_cost_null(
    gateway: GatewayProcess, vllm: FakeOpenAI
) -> None:
    priced, unpriced = rid(), rid()
    client = openai.OpenAI(base_url=gateway.url + "/vllm/v1", api_key=MASTER_KEY, max_retries=0)
    client.chat.completions.create(
        model="served-model", messages=MESSAGES, extra_headers={"x-request-id": priced}
    )
    assert vllm.last.header("authorization") is None  # no key set: none is sent
    client.chat.completions.create(
        model="other-model", messages=MESSAGES, extra_headers={"x-request-id": unpriced}
    )
    row = spend_row(gateway, priced)
    assert (row["provider"], row["model"]) == ("vllm", "served-model")
    assert row["cost"] == pytest.approx(
        23 * VLLM_PRICE["input_cost_per_token"] + 41 * VLLM_PRICE["output_cost_per_token"],
        rel=1e-9,
    )
    row = spend_row(gateway, unpriced)
    assert (row["provider"], row["prompt_tokens"], row["cost"]) == ("vllm", 23, None)


def test_a_named_server_from_the_config_file_gets_its_key_header_and_prices(
    gateway: GatewayProcess, named: FakeOpenAI
) -> None:
    priced, unpriced = rid(), rid()
    client = openai.OpenAI(base_url=gateway.url + "/ollama", api_key=MASTER_KEY, max_retries=0)
    client.chat.completions.create(
        model="llama3", messages=MESSAGES, extra_headers={"x-request-id": priced}
    )
    seen = named.last
    assert seen.path == "/api/v1/chat/completions"  # the base URL's path kept, v1 added
    assert seen.header_values("x-api-key") == [NAMED_KEY]
    assert seen.header("authorization") is None
    client.chat.completions.create(
        model="qwen3", messages=MESSAGES, extra_headers={"x-request-id": unpriced}
    )
    row = spend_row(gateway, priced)
    assert (row["provider"], row["model"]) == ("ollama", "llama3")
    assert row["cost"] == pytest.approx(23 * 0.000002 + 41 * 0.000004, rel=1e-9)
    row = spend_row(gateway, unpriced)
    assert (row["provider"], row["total_tokens"], row["cost"]) == ("ollama", 64, None)
    assert NAMED_KEY not in gateway.logs()


def test_litellms_recommended_openai_passthrough_prefix_is_the_same_provider(
    gateway: GatewayProcess, upstream: FakeOpenAI
) -> None:
    call = rid()
    body = b'{"model": "gpt-5", "input": "Hi"}'
    reply = request(
        gateway.url,
        "POST",
        "/openai_passthrough/v1/responses",
        body,
        # the key as Azure-style clients send it
        {"api-key": MASTER_KEY, "Content-Type": "application/json", "x-request-id": call},
    )
    assert reply.status == 200, reply.body
    assert upstream.last.header("api-key") is None
    assert (upstream.last.path, upstream.last.body) == ("/v1/responses", body)
    assert upstream.last.header_values("authorization") == [f"Bearer {UPSTREAM_KEY}"]
    row = spend_row(gateway, call)
    assert (row["provider"], row["route"]) == ("openai", "/openai_passthrough/v1/responses")
    assert row["cost"] == pytest.approx(RESPONSE_COST_5, rel=1e-9)


def test_token_billed_speech_is_priced_from_its_sse_usage_and_unknown_as_audio_bytes(
    gateway: GatewayProcess,
) -> None:
    streamed, binary = rid(), rid()
    client = sdk(gateway)
    with client.audio.speech.with_streaming_response.create(
        model="gpt-4o-mini-tts",
        voice="alloy",
        input="Hello there",
        stream_format="sse",
        extra_headers={"x-request-id": streamed},
    ) as answer:
        events = [line for line in answer.iter_lines() if line.startswith("event:")]
    assert events[-1] == "event: speech.audio.done"
    client.audio.speech.create(
        model="gpt-4o-mini-tts",
        voice="alloy",
        input="Hello there",
        extra_headers={"x-request-id": binary},
    )
    # gpt-4o-mini-tts: $0.60 per million input tokens, $12 per million output audio tokens
    row = spend_row(gateway, streamed)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (14, 101)
    assert row["cost"] == pytest.approx(14 * 0.6 / M + 101 * 12.0 / M, rel=1e-9)
    row = spend_row(gateway, binary)
    assert (row["status"], row["prompt_tokens"], row["cost"]) == (200, None, None)
