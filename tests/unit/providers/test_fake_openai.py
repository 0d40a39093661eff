"""The fake OpenAI upstream answers the official SDK, records faithfully, streams as OpenAI does
and refuses a wrong or missing key with OpenAI's 401."""

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.support import fake_openai_payloads as payloads
from tests.support.fake_openai import FakeOpenAI

KEY = "sk-fake-test-key"
MESSAGES: Any = [{"role": "user", "content": "Hi"}]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(key=KEY) as fake:
        yield fake


@pytest.fixture
def http_client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as client:
        yield client


def client(server: FakeOpenAI, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)


def test_a_wrong_or_missing_key_gets_openais_401(
    server: FakeOpenAI, http_client: httpx.Client
) -> None:
    with pytest.raises(openai.AuthenticationError) as wrong:
        client(server, "sk-wrong").models.list()
    assert wrong.value.code == "invalid_api_key"
    assert "sk-wrong" not in str(wrong.value.body)
    reply = http_client.get(server.url + "/v1/models")
    assert reply.status_code == 401
    assert reply.json()["error"]["type"] == "invalid_request_error"


def test_chat_is_recorded_and_answered_with_the_fixed_usage(server: FakeOpenAI) -> None:
    answer = client(server).chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert answer.usage is not None and answer.usage.prompt_tokens == 23
    seen = server.last
    assert (seen.method, seen.path) == ("POST", "/v1/chat/completions")
    assert seen.json()["messages"] == MESSAGES
    assert seen.header("authorization") == f"Bearer {KEY}"


def test_a_chat_stream_carries_usage_only_when_asked(server: FakeOpenAI) -> None:
    sdk = client(server)
    plain = list(sdk.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True))
    assert all(chunk.usage is None for chunk in plain)
    with_usage = list(
        sdk.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
    )
    assert with_usage[-1].choices == [] and with_usage[-1].usage is not None
    assert with_usage[-1].usage.total_tokens == payloads.CHAT_USAGE["total_tokens"]


def test_a_response_stream_ends_with_response_completed(server: FakeOpenAI) -> None:
    events = list(client(server).responses.create(model="gpt-5", input="Hi", stream=True))
    assert events[0].type == "response.created" and events[-1].type == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))


def test_audio_images_and_stored_objects(server: FakeOpenAI) -> None:
    sdk = client(server)
    assert sdk.audio.speech.create(model="tts-1", voice="alloy", input="Hi").content == (
        payloads.SPEECH_AUDIO
    )
    text = sdk.audio.transcriptions.create(model="whisper-1", file=("a.mp3", b"ID3"))
    assert text.text == "Hello there."
    assert b'name="model"' in server.last.body  # multipart recorded as sent
    assert len(sdk.images.generate(model="gpt-image-1", prompt="x", n=2).data or []) == 2
    uploaded = sdk.files.create(file=("d.jsonl", b"{}\n"), purpose="batch")
    assert uploaded.bytes == 3
    assert sdk.files.retrieve(uploaded.id).id == uploaded.id
    assert sdk.files.delete(uploaded.id).deleted
    with pytest.raises(openai.NotFoundError):
        sdk.files.retrieve(uploaded.id)
