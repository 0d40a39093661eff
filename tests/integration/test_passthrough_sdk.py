"""The official mistralai SDK works through passgate for every kind of endpoint."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from mistralai.client import Mistral

from tests.conftest import MASTER_KEY, PROVIDER_KEY
from tests.support.fake_mistral import FakeMistral
from tests.support.gateway import GatewayProcess

MESSAGES: Any = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def sdk(upstream: FakeMistral, gateway: GatewayProcess) -> Iterator[Mistral]:
    with Mistral(api_key=MASTER_KEY, server_url=gateway.url + "/mistral") as client:
        yield client


def _assert_provider_auth(up: FakeMistral) -> None:
    for record in up.requests:
        assert record.header("authorization") == f"Bearer {PROVIDER_KEY}"
        assert MASTER_KEY not in str(record.headers)


def test_chat_complete(upstream: FakeMistral, sdk: Mistral) -> None:
    result = sdk.chat.complete(model="mistral-large-latest", messages=MESSAGES)
    assert result.model == "mistral-large-latest"
    assert result.usage.total_tokens == 30
    assert upstream.last.path == "/v1/chat/completions"
    _assert_provider_auth(upstream)


def test_chat_stream_first_event_arrives_before_the_last_is_sent(
    upstream: FakeMistral, sdk: Mistral
) -> None:
    upstream.configure(hold_last_event=True)
    with sdk.chat.stream(model="mistral-small-latest", messages=MESSAGES) as stream:
        events = iter(stream)
        first = next(events)
        # The upstream is still holding its last event: the first one was not batched.
        assert upstream.last.completed_at is None
        held = len(upstream.last.events_sent)
        upstream.release_last_event()
        rest = list(events)
    assert first.data.choices[0].delta.content
    assert held < upstream.knobs.stream_events
    assert rest[-1].data.usage is not None
    assert rest[-1].data.usage.total_tokens == 30


def test_fim_embeddings_agents(upstream: FakeMistral, sdk: Mistral) -> None:
    assert sdk.fim.complete(model="codestral-latest", prompt="def f():").usage.total_tokens == 30
    assert len(sdk.embeddings.create(model="mistral-embed", inputs=["a", "b"]).data) == 2
    assert sdk.agents.complete(agent_id="ag_1", messages=MESSAGES).usage.prompt_tokens == 10
    assert [r.path for r in upstream.requests] == [
        "/v1/fim/completions",
        "/v1/embeddings",
        "/v1/agents/completions",
    ]
    _assert_provider_auth(upstream)


def test_ocr(upstream: FakeMistral, sdk: Mistral) -> None:
    document: Any = {"type": "document_url", "document_url": "https://example.com/x.pdf"}
    result = sdk.ocr.process(model="mistral-ocr-latest", document=document)
    assert result.usage_info.pages_processed == 3
    assert upstream.last.path == "/v1/ocr"


def test_files_upload_list_retrieve_download_delete(upstream: FakeMistral, sdk: Mistral) -> None:
    content = bytes(range(256)) * 4000 + b"\r\n--not-a-boundary\r\n"
    created = sdk.files.upload(
        file={"file_name": "data.jsonl", "content": content}, purpose="batch"
    )
    assert upstream.files[created.id].content == content
    upload = upstream.requests[-1]
    assert (upload.header("content-type") or "").startswith("multipart/form-data")
    assert [f.id for f in sdk.files.list().data] == [created.id]
    assert sdk.files.retrieve(file_id=created.id).size_bytes == len(content)
    downloaded = sdk.files.download(file_id=created.id)
    assert downloaded.read() == content
    assert downloaded.headers["content-type"] == "application/octet-stream"
    assert sdk.files.delete(file_id=created.id).deleted is True
    _assert_provider_auth(upstream)


def test_models_and_batch(upstream: FakeMistral, sdk: Mistral) -> None:
    assert sdk.models.list().data
    job = sdk.batch.jobs.create(
        endpoint="/v1/chat/completions", input_files=["f1"], model="mistral-small-latest"
    )
    assert [j.id for j in sdk.batch.jobs.list().data or []] == [job.id]
    assert sdk.batch.jobs.cancel(job_id=job.id).status == "CANCELLATION_REQUESTED"


def test_conversations_plain_and_streamed(upstream: FakeMistral, sdk: Mistral) -> None:
    plain = sdk.beta.conversations.start(inputs="Hi", model="mistral-medium-latest")
    assert plain.usage.total_tokens == 30
    with sdk.beta.conversations.start_stream(inputs="Hi", model="mistral-large-latest") as stream:
        events = list(stream)
    assert events[0].event == "conversation.response.started"
    assert events[-1].event == "conversation.response.done"


def test_audio_transcription_multipart(upstream: FakeMistral, sdk: Mistral) -> None:
    audio: Any = {"file_name": "hello.mp3", "content": b"ID3\x00fake-mp3" * 100}
    result = sdk.audio.transcriptions.complete(model="voxtral-mini-latest", file=audio)
    assert result.model == "voxtral-mini-latest"
    assert b"ID3\x00fake-mp3" * 100 in upstream.last.body
    with sdk.audio.transcriptions.stream(model="voxtral-mini-latest", file=audio) as stream:
        events = list(stream)
    assert events[-1].event == "transcription.done"


def test_a_v2_route(upstream: FakeMistral, sdk: Mistral) -> None:
    page = sdk.audio.voices.search()
    assert page is not None
    assert upstream.last.path == "/v2/audio/voices"
