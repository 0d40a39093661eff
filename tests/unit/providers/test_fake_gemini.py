"""The fake Gemini upstream answers as Google does: credential errors, shapes, fixed usage."""

import io
import json
from collections.abc import Iterator

import httpx
import pytest
from google import genai
from google.genai import errors, types

from tests.support import fake_gemini_payloads as payloads
from tests.support.fake_gemini import API_KEY, FakeGemini

GENERATE = "/v1beta/models/gemini-3.5-flash:generateContent"
STREAM = "/v1beta/models/gemini-3.5-flash:streamGenerateContent"


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeGemini]:
    with FakeGemini() as fake:
        yield fake


@pytest.fixture
def up(upstream: FakeGemini) -> FakeGemini:
    upstream.reset()
    return upstream


def _post(
    up: FakeGemini, path: str, body: bytes = b"{}", headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.post(up.url + path, content=body, headers=headers or {})


def test_credential_errors_have_googles_shapes(up: FakeGemini) -> None:
    wrong = _post(up, GENERATE + "?key=wrong")
    assert wrong.status_code == 400
    assert wrong.json()["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    missing = _post(up, GENERATE)
    assert (missing.status_code, missing.json()["error"]["status"]) == (403, "PERMISSION_DENIED")
    bearer = _post(up, GENERATE, headers={"authorization": "Bearer " + API_KEY})
    assert (bearer.status_code, bearer.json()["error"]["status"]) == (401, "UNAUTHENTICATED")
    assert _post(up, GENERATE + "?key=" + API_KEY).status_code == 200
    assert _post(up, GENERATE, headers={"x-goog-api-key": API_KEY}).status_code == 200


def test_generate_reports_the_fixed_usage_and_cache_when_asked(up: FakeGemini) -> None:
    body = b'{"contents": [{"parts": [{"text": "hi"}]}], "cachedContent": "cachedContents/c1",}'
    answer = _post(up, GENERATE + "?key=" + API_KEY, body).json()
    usage = answer["usageMetadata"]
    assert usage["promptTokenCount"] == payloads.PROMPT_TOKENS
    assert usage["cachedContentTokenCount"] == payloads.CACHED_TOKENS
    assert usage["candidatesTokenCount"] == payloads.CANDIDATE_TOKENS
    assert usage["thoughtsTokenCount"] == payloads.THOUGHT_TOKENS
    assert usage["totalTokenCount"] == payloads.TOTAL_TOKENS
    assert answer["modelVersion"] == "gemini-3.5-flash"
    assert up.last.body == body
    not_json = _post(up, GENERATE + "?key=" + API_KEY, b"{nope")
    assert (not_json.status_code, not_json.json()["error"]["status"]) == (400, "INVALID_ARGUMENT")


def test_sse_stream_events_end_in_crlf_and_carry_growing_usage(up: FakeGemini) -> None:
    up.configure(stream_events=3)
    raw = _post(up, STREAM + "?alt=sse&key=" + API_KEY).content
    events = [json.loads(e.removeprefix(b"data: ")) for e in raw.split(b"\r\n\r\n") if e]
    assert len(events) == 3
    counts = [event["usageMetadata"]["candidatesTokenCount"] for event in events]
    assert counts == sorted(counts) and counts[-1] == payloads.CANDIDATE_TOKENS
    assert events[-1]["usageMetadata"]["totalTokenCount"] == payloads.TOTAL_TOKENS


def test_stream_without_alt_sse_is_a_json_array(up: FakeGemini) -> None:
    response = _post(up, STREAM + "?key=" + API_KEY)
    assert response.headers["content-type"] == "application/json"
    events = response.json()
    assert len(events) == up.knobs.stream_events
    assert events[-1]["usageMetadata"]["candidatesTokenCount"] == payloads.CANDIDATE_TOKENS


def test_the_official_sdk_works_against_the_fake(up: FakeGemini) -> None:
    client = genai.Client(api_key=API_KEY, http_options=types.HttpOptions(base_url=up.url))
    answer = client.models.generate_content(model="gemini-3.5-flash", contents="hi")
    assert answer.usage_metadata is not None
    assert answer.usage_metadata.thoughts_token_count == payloads.THOUGHT_TOKENS
    chunks = list(client.models.generate_content_stream(model="gemini-3.5-flash", contents="hi"))
    assert chunks[-1].usage_metadata is not None
    assert chunks[-1].usage_metadata.candidates_token_count == payloads.CANDIDATE_TOKENS
    embedded = client.models.embed_content(model="gemini-embedding-001", contents=["a", "b"])
    assert embedded.embeddings is not None and len(embedded.embeddings) == 2
    counted = client.models.count_tokens(model="gemini-3.5-flash", contents="x")
    assert counted.total_tokens == payloads.PROMPT_TOKENS
    assert next(m.name for m in client.models.list()) == "models/gemini-3.5-flash"
    stored = client.files.upload(
        file=io.BytesIO(b"some bytes"),
        config=types.UploadFileConfig(mime_type="text/plain", display_name="notes"),
    )
    assert stored.name is not None and stored.size_bytes == 10
    assert [f.content for f in up.uploaded.values()] == [b"some bytes"]
    client.files.delete(name=stored.name)
    assert up.uploaded == {}
    bad = genai.Client(api_key="wrong", http_options=types.HttpOptions(base_url=up.url))
    with pytest.raises(errors.ClientError) as refused:
        bad.models.generate_content(model="gemini-3.5-flash", contents="hi")
    assert refused.value.code == 400


def test_multipart_related_upload(up: FakeGemini) -> None:
    boundary = "b0undary"
    media = bytes(range(256))
    body = (
        (
            f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n"
            '{"file": {"displayName": "pic"}}'
            f"\r\n--{boundary}\r\nContent-Type: image/png\r\n\r\n"
        ).encode()
        + media
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {
        "x-goog-api-key": API_KEY,
        "x-goog-upload-protocol": "multipart",
        "content-type": f"multipart/related; boundary={boundary}",
    }
    answer = httpx.post(up.url + "/upload/v1beta/files", content=body, headers=headers)
    assert answer.json()["file"]["sizeBytes"] == "256"
    [stored] = up.uploaded.values()
    assert (stored.display_name, stored.mime_type, stored.content) == ("pic", "image/png", media)


def test_interactions_report_the_same_fixed_usage(up: FakeGemini) -> None:
    client = genai.Client(api_key=API_KEY, http_options=types.HttpOptions(base_url=up.url))
    made = client.interactions.create(model="gemini-3.5-flash", input="hi")
    assert made.usage is not None and made.usage.total_tokens == payloads.TOTAL_TOKENS
    events = list(client.interactions.create(model="gemini-3.5-flash", input="hi", stream=True))
    assert events[0].event_type == "interaction.created"
    assert events[-1].event_type == "interaction.completed"
