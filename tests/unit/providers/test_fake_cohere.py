"""The fake Cohere upstream answers the official SDK (v1 and v2), records faithfully and
refuses a wrong key the way Cohere does."""

import http.client
import json
from collections.abc import Iterator
from typing import Any

import cohere
import httpx
import pytest

from tests.support import fake_cohere_payloads as payloads
from tests.support.fake_cohere import DEFAULT_KEY, JSON_LINES_TYPE, TRACE_HEADER, FakeCohere

MESSAGES: Any = [{"role": "user", "content": "Hi"}]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeCohere]:
    with FakeCohere() as fake:
        yield fake


@pytest.fixture
def up(server: FakeCohere) -> FakeCohere:
    server.reset()
    return server


@pytest.fixture
def http_client() -> Iterator[httpx.Client]:
    # the SDK leaves a client it made itself open: hand it one that is closed after the test
    with httpx.Client(timeout=5) as client:
        yield client


@pytest.fixture
def v2(up: FakeCohere, http_client: httpx.Client) -> cohere.ClientV2:
    return cohere.ClientV2(api_key=DEFAULT_KEY, base_url=up.url, httpx_client=http_client)


@pytest.fixture
def v1(up: FakeCohere, http_client: httpx.Client) -> cohere.Client:
    return cohere.Client(api_key=DEFAULT_KEY, base_url=up.url, httpx_client=http_client)


def _raw(up: FakeCohere, method: str, path: str, body: bytes, key: str) -> tuple[int, Any]:
    connection = http.client.HTTPConnection("127.0.0.1", up.port, timeout=5)
    try:
        headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_v2_chat_whole_and_streamed(up: FakeCohere, v2: cohere.ClientV2) -> None:
    answer = v2.chat(model=payloads.DEFAULT_MODEL, messages=MESSAGES)
    assert answer.usage is not None and answer.usage.billed_units is not None
    assert answer.usage.billed_units.input_tokens == payloads.BILLED_INPUT
    assert answer.usage.cached_tokens == payloads.CACHED
    assert up.last.json() == {
        "model": payloads.DEFAULT_MODEL,
        "messages": MESSAGES,
        "stream": False,
    }

    events = list(v2.chat_stream(model=payloads.DEFAULT_MODEL, messages=MESSAGES))
    kinds = [event.type for event in events]
    assert kinds[0] == "message-start"
    assert kinds[-1] == "message-end"
    assert kinds.count("content-delta") == len(payloads.TEXT)
    end: Any = events[-1]
    assert end.delta.usage.billed_units.output_tokens == payloads.BILLED_OUTPUT
    assert up.last.path == "/v2/chat"


def test_v1_chat_whole_and_streamed(up: FakeCohere, v1: cohere.Client) -> None:
    answer = v1.chat(message="What year was he born?")
    assert answer.meta is not None and answer.meta.billed_units is not None
    assert answer.meta.billed_units.input_tokens == payloads.BILLED_INPUT
    assert answer.chat_history is not None

    events = list(v1.chat_stream(message="Tell me about LLMs", model=payloads.DEFAULT_MODEL))
    assert events[0].event_type == "stream-start"
    end: Any = events[-1]
    assert end.event_type == "stream-end"
    assert end.response.meta.billed_units.output_tokens == payloads.BILLED_OUTPUT
    assert up.last.json()["stream"] is True


def test_v1_stream_is_json_lines(up: FakeCohere) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", up.port, timeout=5)
    try:
        body = json.dumps({"message": "Hi", "stream": True})
        headers = {"Authorization": f"Bearer {DEFAULT_KEY}"}
        connection.request("POST", "/v1/chat", body=body, headers=headers)
        response = connection.getresponse()
        assert response.getheader("content-type") == JSON_LINES_TYPE
        lines = response.read().splitlines()
    finally:
        connection.close()
    assert len(lines) == len(payloads.TEXT) + 2
    assert json.loads(lines[-1])["event_type"] == "stream-end"


def test_embed_rerank_models(up: FakeCohere, v1: cohere.Client, v2: cohere.ClientV2) -> None:
    embedded = v2.embed(
        model="embed-v4.0",
        input_type="search_document",
        texts=["a", "b"],
        embedding_types=["float"],
    )
    assert embedded.embeddings.float_ is not None and len(embedded.embeddings.float_) == 2
    assert embedded.meta is not None and embedded.meta.billed_units is not None
    assert embedded.meta.billed_units.input_tokens == payloads.EMBED_BILLED_INPUT
    v1_embedded: Any = v1.embed(
        model="embed-english-v3.0", texts=["a"], input_type="classification"
    )
    assert v1_embedded.response_type == "embeddings_floats"

    ranked = v2.rerank(model="rerank-v3.5", query="q", documents=["x", "y", "z"], top_n=2)
    assert [result.index for result in ranked.results] == [2, 1]
    assert ranked.meta is not None and ranked.meta.billed_units is not None
    assert ranked.meta.billed_units.search_units == payloads.SEARCH_UNITS

    listed = v1.models.list()
    assert listed.models is not None
    assert payloads.DEFAULT_MODEL in [model.name for model in listed.models]


def test_transcription_is_multipart(up: FakeCohere, v2: cohere.ClientV2) -> None:
    audio = b"RIFF\x24\x00\x00\x00WAVEfmt fake"
    answer = v2.audio.transcriptions.create(
        model="cohere-transcribe-03-2026", language="en", file=("a.wav", audio, "audio/wav")
    )
    assert answer.text == f"{len(audio)} bytes of audio from a.wav"
    assert (up.last.header("content-type") or "").startswith("multipart/form-data; boundary=")
    assert audio in up.last.body


def test_wrong_key_gets_cohere_401(up: FakeCohere) -> None:
    status, body = _raw(up, "POST", "/v2/chat", b"{}", "sk-gateway-key")
    assert status == 401
    assert body["message"] == "invalid api token"
    assert set(body) == {"id", "message"}


def test_wrong_key_raises_in_the_sdk(up: FakeCohere, http_client: httpx.Client) -> None:
    client = cohere.ClientV2(api_key="wrong", base_url=up.url, httpx_client=http_client)
    with pytest.raises(cohere.UnauthorizedError):
        client.chat(model=payloads.DEFAULT_MODEL, messages=MESSAGES)


def test_bad_json_and_unknown_route(up: FakeCohere) -> None:
    status, body = _raw(up, "POST", "/v2/chat", b"{not json", DEFAULT_KEY)
    assert status == 400
    assert "not valid JSON" in body["message"]
    status, body = _raw(up, "POST", "/v9/nothing", b"{}", DEFAULT_KEY)
    assert status == 404
    assert set(body) == {"id", "message"}


def test_answers_name_a_trace_id(up: FakeCohere) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", up.port, timeout=5)
    try:
        connection.request("GET", "/v1/models", headers={"Authorization": f"Bearer {DEFAULT_KEY}"})
        response = connection.getresponse()
        response.read()
    finally:
        connection.close()
    assert len(response.getheader(TRACE_HEADER) or "") == 32


def test_cut_stream(up: FakeCohere, v2: cohere.ClientV2) -> None:
    up.configure(cut_stream_after=2)
    with pytest.raises(httpx.RemoteProtocolError):
        list(v2.chat_stream(model=payloads.DEFAULT_MODEL, messages=MESSAGES))
    assert len(up.last.events_sent) == 2
