"""The fake Mistral upstream answers the official SDK, records faithfully and injects faults."""

import gzip
import http.client
import itertools
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from mistralai.client import Mistral, errors

from tests.support import fake_mistral_payloads as payloads
from tests.support.fake_mistral import FakeMistral, closed_port

USAGE = {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}
MESSAGES: Any = [{"role": "user", "content": "Hi"}]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeMistral]:
    with FakeMistral() as fake:
        yield fake


@pytest.fixture
def up(server: FakeMistral) -> FakeMistral:
    server.reset()
    return server


@pytest.fixture
def sdk(up: FakeMistral) -> Iterator[Mistral]:
    with Mistral(api_key="sk-provider", server_url=up.url) as client:
        yield client


def raw(
    up: FakeMistral,
    method: str,
    target: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request with http.client: no client-side rewriting of path, body or encoding."""
    conn = http.client.HTTPConnection("127.0.0.1", up.port, timeout=10)
    try:
        conn.request(method, target, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def test_chat_complete_echoes_model_with_fixed_usage(up: FakeMistral, sdk: Mistral) -> None:
    result = sdk.chat.complete(model="mistral-large-latest", messages=MESSAGES)
    assert result.model == "mistral-large-latest"
    assert result.usage.model_dump(exclude_unset=True) == USAGE
    record = up.last
    assert (record.method, record.path) == ("POST", "/v1/chat/completions")
    assert record.header("authorization") == "Bearer sk-provider"
    assert record.json()["messages"] == MESSAGES


def test_chat_stream_first_event_arrives_before_the_last_is_sent(
    up: FakeMistral, sdk: Mistral
) -> None:
    up.configure(hold_last_event=True)
    with sdk.chat.stream(model="mistral-small-latest", messages=MESSAGES) as stream:
        events = iter(stream)
        first = next(events)
        assert up.last.holding.wait(5)
        sent_while_held = len(up.last.events_sent)
        up.release_last_event()
        rest = list(events)
    assert first.data.choices[0].delta.content == "tok0 "
    assert sent_while_held == 4  # the usage chunk and [DONE] wait for the release
    chunks = [first, *rest]
    assert len(chunks) == 5
    last_usage = chunks[-1].data.usage
    assert last_usage is not None and last_usage.model_dump(exclude_unset=True) == USAGE
    assert all(chunk.data.usage is None for chunk in chunks[:-1])
    assert len(up.last.events_sent) == 6  # five chunks and [DONE]


def test_stream_event_count_and_delay_are_knobs(up: FakeMistral) -> None:
    up.configure(stream_events=3, event_delay=0.05)
    body = b'{"model":"m","stream":true}'
    status, headers, data = raw(up, "POST", "/v1/fim/completions", body)
    assert status == 200 and headers["content-type"] == "text/event-stream"
    events = data.split(b"\n\n")[:-1]
    assert len(events) == 4 and events[-1] == b"data: [DONE]"
    sent = up.last.events_sent
    assert all(later - earlier >= 0.04 for earlier, later in itertools.pairwise(sent))


def test_fim_and_agents_completions(up: FakeMistral, sdk: Mistral) -> None:
    fim = sdk.fim.complete(model="codestral-latest", prompt="def add(a, b):")
    assert fim.model == "codestral-latest" and fim.usage.total_tokens == 30
    agent = sdk.agents.complete(agent_id="ag_123", messages=MESSAGES)
    assert agent.model == payloads.AGENT_MODEL and agent.usage.prompt_tokens == 10
    assert [r.path for r in up.requests] == ["/v1/fim/completions", "/v1/agents/completions"]


def test_embeddings_and_classifiers(up: FakeMistral, sdk: Mistral) -> None:
    emb = sdk.embeddings.create(model="mistral-embed", inputs=["a", "b"])
    assert emb.model == "mistral-embed" and len(emb.data) == 2
    assert emb.usage.prompt_tokens == 10
    moderation = sdk.classifiers.moderate(model="mistral-moderation-latest", inputs=["x"])
    assert moderation.model == "mistral-moderation-latest" and moderation.results
    chat_moderation = sdk.classifiers.moderate_chat(
        model="mistral-moderation-latest", inputs=MESSAGES
    )
    assert chat_moderation.results
    classes = sdk.classifiers.classify(model="ft:classifier", inputs=["x"])
    assert classes.results[0]["intent"].scores["greeting"] == 0.9
    assert [r.path for r in up.requests] == [
        "/v1/embeddings",
        "/v1/moderations",
        "/v1/chat/moderations",
        "/v1/classifications",
    ]


def test_ocr_reports_pages_processed(up: FakeMistral, sdk: Mistral) -> None:
    document: Any = {"type": "document_url", "document_url": "https://arxiv.org/pdf/2201.04234"}
    result = sdk.ocr.process(model="mistral-ocr-latest", document=document)
    assert result.usage_info.pages_processed == 3 and len(result.pages) == 3
    assert result.usage_info.doc_size_bytes == up.last.body_size
    assert up.last.path == "/v1/ocr"


def test_files_round_trip_byte_for_byte(up: FakeMistral, sdk: Mistral) -> None:
    content = bytes(range(256)) * 1000 + b"\r\n--not-a-boundary\r\n"
    created = sdk.files.upload(
        file={"file_name": "data.jsonl", "content": content}, purpose="batch"
    )
    assert created.filename == "data.jsonl" and created.size_bytes == len(content)
    assert up.files[created.id].content == content
    assert (up.last.header("content-type") or "").startswith("multipart/form-data")
    listed = sdk.files.list()
    assert [f.id for f in listed.data] == [created.id]
    assert sdk.files.retrieve(file_id=created.id).deleted is False
    downloaded = sdk.files.download(file_id=created.id)
    assert downloaded.read() == content
    assert downloaded.headers["content-type"] == "application/octet-stream"
    assert sdk.files.delete(file_id=created.id).deleted is True
    assert sdk.files.list().data == []
    with pytest.raises(errors.SDKError):
        sdk.files.retrieve(file_id=created.id)


def test_models_and_batch_jobs(up: FakeMistral, sdk: Mistral) -> None:
    listed = sdk.models.list()
    assert listed.data and "mistral-small-latest" in [getattr(m, "id", "") for m in listed.data]
    job = sdk.batch.jobs.create(
        endpoint="/v1/chat/completions", input_files=["f1"], model="mistral-small-latest"
    )
    assert job.status == "QUEUED" and job.input_files == ["f1"]
    assert [j.id for j in sdk.batch.jobs.list().data or []] == [job.id]
    assert sdk.batch.jobs.cancel(job_id=job.id).status == "CANCELLATION_REQUESTED"
    assert sdk.batch.jobs.get(job_id=job.id).status == "CANCELLATION_REQUESTED"
    assert up.last.path == f"/v1/batch/jobs/{job.id}"


def test_conversations_start_plain_and_streamed(up: FakeMistral, sdk: Mistral) -> None:
    plain = sdk.beta.conversations.start(inputs="Hi", model="mistral-medium-latest")
    assert plain.conversation_id and plain.usage.total_tokens == 30
    with sdk.beta.conversations.start_stream(inputs="Hi", model="mistral-large-latest") as stream:
        events = list(stream)
    kinds = [event.event for event in events]
    assert kinds[0] == "conversation.response.started"
    assert kinds[-1] == "conversation.response.done"
    assert "message.output.delta" in kinds
    assert events[-1].data.usage.total_tokens == 30
    appended = sdk.beta.conversations.append(conversation_id=plain.conversation_id, inputs="More")
    assert appended.conversation_id == plain.conversation_id
    assert up.last.path == f"/v1/conversations/{plain.conversation_id}"


def test_audio_transcription_plain_and_streamed(up: FakeMistral, sdk: Mistral) -> None:
    audio: Any = {"file_name": "hello.mp3", "content": b"ID3\x00fake-mp3" * 100}
    plain = sdk.audio.transcriptions.complete(model="voxtral-mini-latest", file=audio)
    assert plain.model == "voxtral-mini-latest"
    assert plain.usage.prompt_audio_seconds == payloads.AUDIO_SECONDS
    assert b"ID3\x00fake-mp3" in up.last.body
    with sdk.audio.transcriptions.stream(model="voxtral-mini-latest", file=audio) as stream:
        events = list(stream)
    assert [e.event for e in events][-1] == "transcription.done"
    assert events[-1].data.usage.prompt_audio_seconds == 12
    assert len(events) == 5


def test_speech_json_and_sse(up: FakeMistral, sdk: Mistral) -> None:
    spoken = sdk.audio.speech.complete(input="Hello", model="voxtral-tts")
    assert spoken.audio_data == payloads.speech()["audio_data"]
    status, headers, data = raw(up, "POST", "/v1/audio/speech", b'{"input":"x","stream":true}')
    assert status == 200
    assert headers["content-type"] == "text/event-stream"
    assert data.count(b"event: speech.audio.delta") == 4
    assert b'"usage":{"prompt_tokens":10' in data.split(b"event: speech.audio.done")[1]


def test_a_v2_route(up: FakeMistral, sdk: Mistral) -> None:
    page = sdk.audio.voices.search()
    assert page is not None and page.result.data[0].id == "voice_fake"
    assert up.last.path == "/v2/audio/voices"


def test_invalid_json_gets_mistral_422(up: FakeMistral) -> None:
    body = b'{"model": "mistral-small-latest", "messages": [],}'
    status, _, data = raw(up, "POST", "/v1/chat/completions", body)
    assert status == 422
    assert json.loads(data)["detail"][0]["type"] == "json_invalid"
    assert up.last.body == body


def test_unknown_route_is_404_and_recorded_verbatim(up: FakeMistral) -> None:
    target = "/v1/nope/%2Fx?b=2&a=1&a=1&e=%20"
    status, _, data = raw(up, "PUT", target, b"\x00\xff", {"X-Custom": "One", "x-custom": "Two"})
    assert (status, json.loads(data)) == (404, {"detail": "Not Found"})
    record = up.last
    assert record.raw_path == target.encode()
    assert record.query == b"b=2&a=1&a=1&e=%20"
    assert record.body == b"\x00\xff"
    assert record.header_values("x-custom") == ["One", "Two"]
    names = [name for name, _ in record.headers]
    assert names.index("x-custom") > names.index("host")


def test_set_response_overrides_a_path(up: FakeMistral) -> None:
    up.set_response(
        "/v1/chat/completions",
        '{"error":"busy"}',
        status=429,
        headers=[("content-type", "application/json"), ("retry-after", "3")],
    )
    status, headers, data = raw(up, "POST", "/v1/chat/completions", b"{}")
    assert (status, headers["retry-after"], data) == (429, "3", b'{"error":"busy"}')


def test_path_prefix_is_routed_and_recorded(up: FakeMistral) -> None:
    up.configure(path_prefix="/some/prefix")
    status, _, _ = raw(up, "GET", "/some/prefix/v1/models")
    assert status == 200 and up.last.path == "/some/prefix/v1/models"
    assert raw(up, "GET", "/v1/models")[0] == 404


def test_gzip_mode_compresses_once(up: FakeMistral) -> None:
    up.configure(gzip=True)
    status, headers, data = raw(up, "POST", "/v1/chat/completions", b'{"model":"m"}')
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert int(headers["content-length"]) == len(data)
    assert json.loads(gzip.decompress(data))["usage"] == USAGE


def test_closed_port_refuses_connections() -> None:
    with closed_port() as url:
        port = int(url.rsplit(":", 1)[1])
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2)


def test_client_leaving_during_first_byte_delay_is_seen(up: FakeMistral) -> None:
    up.configure(delay_first_byte=30)
    conn = socket.create_connection(("127.0.0.1", up.port))
    conn.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
    record = up.wait_for_requests(1)[0]
    closed_at = time.monotonic()
    conn.close()
    assert record.disconnected.wait(5)
    assert record.disconnected_at is not None and record.disconnected_at >= closed_at
    assert record.completed_at is None


def test_client_leaving_mid_stream_stops_the_stream(up: FakeMistral) -> None:
    up.configure(stream_events=100, event_delay=0.02)
    conn = socket.create_connection(("127.0.0.1", up.port))
    body = b'{"stream":true}'
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 15\r\n\r\n"
    conn.sendall(head + body)
    assert conn.recv(65536).startswith(b"HTTP/1.1 200")
    conn.close()
    record = up.wait_for_requests(1)[0]
    assert record.disconnected.wait(5)
    sent = len(record.events_sent)
    time.sleep(0.1)
    assert len(record.events_sent) == sent < 100


def test_cut_stream_drops_the_connection_without_the_end(up: FakeMistral) -> None:
    up.configure(cut_stream_after=2)
    conn = http.client.HTTPConnection("127.0.0.1", up.port, timeout=10)
    conn.request("POST", "/v1/chat/completions", body=b'{"stream":true}')
    response = conn.getresponse()
    with pytest.raises(http.client.IncompleteRead) as caught:
        response.read()
    conn.close()
    assert caught.value.partial.count(b"data: ") == 2
    assert len(up.last.events_sent) == 2


def test_in_flight_counts_concurrent_requests(up: FakeMistral) -> None:
    up.configure(delay_first_byte=0.5)
    results: list[int] = []
    threads = [
        threading.Thread(target=lambda: results.append(raw(up, "GET", "/v1/models")[0]))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200, 200, 200]
    assert up.max_in_flight == 3 and up.in_flight == 0


def test_bodies_can_be_left_unkept(up: FakeMistral) -> None:
    up.configure(keep_bodies=False)
    status, _, _ = raw(up, "POST", "/v1/embeddings", b"x" * 100_000)
    assert status == 200
    assert (up.last.body, up.last.body_size) == (b"", 100_000)


def test_reset_forgets_everything(up: FakeMistral) -> None:
    up.configure(gzip=True)
    raw(up, "GET", "/v1/models")
    up.reset()
    assert up.requests == [] and up.knobs.gzip is False
