"""Acceptance for virtual keys against real ``passgate`` processes.

Every test runs twice: on the embedded SQLite file (the default one, in the process's
PASSGATE_DATA_DIR) and on a fresh PostgreSQL database. The gateways run with the
seed's environment (``DATABASE_URL``, ``LITELLM_MASTER_KEY=sk-1234``,
``MISTRAL_API_BASE``) in front of the fake Mistral upstream, and every refusal is
checked to happen before anything reaches that upstream.
"""

from __future__ import annotations

import asyncio
import http.client
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest

from passgate.auth.keys import hash_key
from tests.conftest import PROVIDER_KEY
from tests.integration.test_seed_curls import run_curl
from tests.support.databases import fresh_postgres
from tests.support.fake_mistral import FakeMistral
from tests.support.gateway import GatewayProcess
from tests.support.http import Reply, request

SEED_MASTER = "sk-1234"
ADMIN = {"Authorization": f"Bearer {SEED_MASTER}", "Content-Type": "application/json"}
CHAT = "/mistral/v1/chat/completions"
OCR = "/mistral/v1/ocr"
TRANSCRIBE = "/mistral/v1/audio/transcriptions"
MiB = 1024 * 1024

# Copied verbatim from the seed page ("Advanced - Use with Virtual Keys", steps 2 and 3).
SEED_GENERATE = """curl -X POST 'http://0.0.0.0:4000/key/generate' \\
-H 'Authorization: Bearer sk-1234' \\
-H 'Content-Type: application/json' \\
-d '{}'"""

SEED_VIRTUAL_KEY = "sk-1234ewknldferwedojwojw"
SEED_CHAT = """curl -L -X POST 'http://0.0.0.0:4000/mistral/v1/chat/completions' \\
-H 'Content-Type: application/json' \\
-H 'Authorization: Bearer sk-1234ewknldferwedojwojw' \\
  --data '{
    "messages": [
        {
            "role": "user",
            "content": "I am going to Paris, what should I see?"
        }
    ],
    "max_tokens": 2048,
    "temperature": 0.8,
    "top_p": 0.1,
    "model": "qwen2.5-7b-instruct",
}'"""


@dataclass
class Backend:
    """One database, and the gateway processes started on it (stopped before it is dropped)."""

    name: str
    database_url: str  # "": the seed's `export DATABASE_URL=""`, i.e. the default SQLite file
    data_dir: Path
    processes: list[GatewayProcess] = field(default_factory=list)

    def start(self, upstream: FakeMistral, workers: int = 1, **extra: str) -> GatewayProcess:
        """A gateway with the seed's environment on this database."""
        env = {
            "DATABASE_URL": self.database_url,
            "LITELLM_MASTER_KEY": SEED_MASTER,
            "MISTRAL_API_BASE": upstream.url,
            "MISTRAL_API_KEY": PROVIDER_KEY,
            **extra,
        }
        gateway = GatewayProcess(env, workers=workers, data_dir=self.data_dir)
        self.processes.append(gateway)
        return gateway.start()

    def close(self) -> None:
        for gateway in self.processes:
            gateway.close()


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    data_dir = tmp_path_factory.mktemp(f"e2e-keys-{request.param}")
    if request.param == "sqlite":
        sqlite = Backend("sqlite", "", data_dir)
        try:
            yield sqlite
        finally:
            sqlite.close()
        return
    runner = asyncio.new_event_loop()
    manager = fresh_postgres()
    try:
        postgres = Backend("postgres", runner.run_until_complete(manager.__aenter__()), data_dir)
        try:
            yield postgres
        finally:
            postgres.close()
            runner.run_until_complete(manager.__aexit__(None, None, None))
    finally:
        runner.close()


@pytest.fixture(scope="module")
def gateway(backend: Backend, fake_upstream: FakeMistral) -> GatewayProcess:
    return backend.start(fake_upstream)


def call(
    gateway: GatewayProcess,
    path: str,
    body: Any = None,
    *,
    token: str | None = SEED_MASTER,
    method: str = "POST",
    headers: dict[str, str] | None = None,
) -> Reply:
    """One request; a dict or list body is sent as JSON, bytes as they are."""
    sent = {"Authorization": f"Bearer {token}"} if token is not None else {}
    raw = body if body is None or isinstance(body, bytes) else orjson.dumps(body)
    if raw is not None and not isinstance(body, bytes):
        sent["Content-Type"] = "application/json"
    sent.update(headers or {})
    return request(gateway.url, method, path, raw, sent)


def generate(gateway: GatewayProcess, **fields: Any) -> dict[str, Any]:
    reply = call(gateway, "/key/generate", fields)
    assert reply.status == 200, reply.body
    created = reply.json()
    assert isinstance(created, dict)
    return created


def chat(gateway: GatewayProcess, key: str, model: str = "mistral-small-latest") -> Reply:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return call(gateway, CHAT, body, token=key)


def refused(
    upstream: FakeMistral, reply: Reply, status: int, code: str, *secrets_: str
) -> dict[str, object]:
    """Check a refusal: status, code, no secret in the body, and nothing went upstream."""
    assert reply.status == status, reply.body
    assert reply.error["code"] == code, reply.body
    for secret in secrets_:
        assert secret.encode() not in reply.body
    assert upstream.requests == [], [r.path for r in upstream.requests]
    return reply.error


def served(upstream: FakeMistral, reply: Reply, path: str, key: str) -> None:
    """Check a call went through, with the provider key and not the virtual key."""
    assert reply.status == 200, reply.body
    record = upstream.last
    assert record.path == path.removeprefix("/mistral")
    assert record.header("authorization") == f"Bearer {PROVIDER_KEY}"
    assert key not in str(record.headers) and hash_key(key) not in str(record.headers)
    upstream.reset()


def multipart(fields: list[tuple[str, bytes, str | None]]) -> tuple[bytes, str]:
    """A multipart/form-data body (name, content, filename) and its Content-Type."""
    boundary = "passgate-" + secrets.token_hex(8)
    parts = []
    for name, content, filename in fields:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"\r\nContent-Type: audio/mpeg'
        parts.append(
            f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode()
            + content
            + b"\r\n"
        )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def transcribe(gateway: GatewayProcess, key: str, fields: list[Any]) -> tuple[Reply, bytes]:
    body, content_type = multipart(fields)
    return call(gateway, TRANSCRIBE, body, token=key, headers={"Content-Type": content_type}), body


# --- the seed's flow, and durability -------------------------------------------------


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_seed_virtual_key_flow_as_written(
    backend: Backend, gateway: GatewayProcess, upstream: FakeMistral
) -> None:
    status, body = run_curl(SEED_GENERATE, gateway)
    assert status == 200, body
    key = orjson.loads(body)["key"]
    assert key.startswith("sk-") and len(key) >= 35
    if backend.name == "sqlite":
        assert (backend.data_dir / "passgate.db").is_file()
    assert upstream.requests == []

    status, body = run_curl(SEED_CHAT.replace(SEED_VIRTUAL_KEY, key), gateway)
    (record,) = upstream.wait_for_requests(1)
    assert (record.method, record.path) == ("POST", "/v1/chat/completions")
    assert record.header("authorization") == f"Bearer {PROVIDER_KEY}"
    assert key not in str(record.headers)
    sent = SEED_CHAT.split("--data '", 1)[1].rsplit("'", 1)[0].encode()
    assert record.body == sent
    # The trailing comma makes the body invalid JSON: the upstream's own 422 comes back.
    assert status == 422 and b"detail" in body


def test_keys_survive_a_restart(backend: Backend, upstream: FakeMistral) -> None:
    first = backend.start(upstream)
    kept = generate(first, key_alias=f"durable-{backend.name}", models=["mistral-small-latest"])
    blocked = generate(first)
    assert call(first, "/key/block", {"key": blocked["token"]}).status == 200
    first.stop()

    second = backend.start(upstream)
    served(upstream, chat(second, kept["key"]), CHAT, kept["key"])
    refused(upstream, chat(second, kept["key"], "mistral-large-latest"), 403, "model_not_allowed")
    refused(upstream, chat(second, blocked["key"]), 401, "key_blocked", blocked["key"])
    info = call(second, f"/key/info?key={kept['token']}", method="GET")
    assert info.status == 200
    assert info.json()["info"]["key_alias"] == f"durable-{backend.name}"  # type: ignore[index]
    second.close()


# --- one test per rule ------------------------------------------------------------------


def test_expired_key(gateway: GatewayProcess, upstream: FakeMistral) -> None:
    created = generate(gateway, duration="1s")
    key = created["key"]
    expires = datetime.fromisoformat(created["expires"])
    lifetime = (expires - datetime.fromisoformat(created["created_at"])).total_seconds()
    assert 0.9 <= lifetime <= 1.1
    served(upstream, chat(gateway, key), CHAT, key)  # now in the key cache
    wait = (expires - datetime.now(UTC)).total_seconds() + 0.05
    assert wait <= 1.1
    time.sleep(max(wait, 0.0))
    error = refused(upstream, chat(gateway, key), 401, "key_expired", key, created["token"])
    assert "expired" in str(error["message"])


def test_blocked_then_unblocked(gateway: GatewayProcess, upstream: FakeMistral) -> None:
    created = generate(gateway)
    key, token = created["key"], created["token"]
    served(upstream, chat(gateway, key), CHAT, key)
    reply = call(gateway, "/key/block", {"key": token})
    assert reply.status == 200 and reply.json()["blocked"] is True  # type: ignore[index]
    refused(upstream, chat(gateway, key), 401, "key_blocked", key, token)
    assert call(gateway, "/key/unblock", {"key": key}).status == 200
    served(upstream, chat(gateway, key), CHAT, key)


def test_deleted_key(gateway: GatewayProcess, upstream: FakeMistral) -> None:
    alias = "delete-me-" + secrets.token_hex(4)
    created = generate(gateway, key_alias=alias)
    key, token = created["key"], created["token"]
    served(upstream, chat(gateway, key), CHAT, key)
    reply = call(gateway, "/key/delete", {"key_aliases": [alias]})
    assert reply.status == 200 and reply.json() == {"deleted_keys": [token]}
    refused(upstream, chat(gateway, key), 401, "invalid_api_key", key, token)
    assert call(gateway, f"/key/info?key={token}", method="GET").status == 404
    assert call(gateway, "/key/delete", {"keys": [key]}).status == 404


def test_regenerated_key(gateway: GatewayProcess, upstream: FakeMistral) -> None:
    created = generate(gateway, key_alias="regen-" + secrets.token_hex(4), rpm_limit=100)
    old = created["key"]
    served(upstream, chat(gateway, old), CHAT, old)
    reply = call(gateway, "/key/regenerate", {"key": old})
    assert reply.status == 200
    renewed = reply.json()
    assert isinstance(renewed, dict)
    new = renewed["key"]
    assert new != old and renewed["token"] == hash_key(new)
    assert (renewed["key_alias"], renewed["rpm_limit"]) == (created["key_alias"], 100)
    refused(upstream, chat(gateway, old), 401, "invalid_api_key", old, new, hash_key(old))
    served(upstream, chat(gateway, new), CHAT, new)


def test_model_allowlist_on_chat(gateway: GatewayProcess, upstream: FakeMistral) -> None:
    key = generate(gateway, models=["mistral-small-latest"])["key"]
    error = refused(upstream, chat(gateway, key, "mistral-large-latest"), 403, "model_not_allowed")
    assert "mistral-large-latest" in str(error["message"])
    refused(upstream, call(gateway, CHAT, {"messages": []}, token=key), 400, "model_unreadable")
    trailing_comma = b'{"model": "mistral-small-latest",}'
    reply = call(gateway, CHAT, trailing_comma, token=key, headers={"Content-Type": "x/json"})
    refused(upstream, reply, 400, "model_unreadable", key)
    served(upstream, chat(gateway, key, "mistral-small-latest"), CHAT, key)


def test_model_allowlist_on_ocr(gateway: GatewayProcess, upstream: FakeMistral) -> None:
    key = generate(gateway, models=["mistral-ocr-latest"])["key"]
    document = {"type": "document_url", "document_url": "https://example.invalid/a.pdf"}
    reply = call(gateway, OCR, {"model": "mistral-ocr-2505", "document": document}, token=key)
    error = refused(upstream, reply, 403, "model_not_allowed", key)
    assert "mistral-ocr-2505" in str(error["message"])
    refused(
        upstream, call(gateway, OCR, {"document": document}, token=key), 400, "model_unreadable"
    )
    reply = call(gateway, OCR, {"model": "mistral-ocr-latest", "document": document}, token=key)
    served(upstream, reply, OCR, key)


def test_model_allowlist_on_audio_multipart(gateway: GatewayProcess, upstream: FakeMistral) -> None:
    key = generate(gateway, models=["voxtral-mini-latest"])["key"]
    audio = b"ID3\x00fake-mp3" * 100

    reply, _ = transcribe(
        gateway, key, [("model", b"voxtral-small-latest", None), ("file", audio, "a.mp3")]
    )
    error = refused(upstream, reply, 403, "model_not_allowed", key)
    assert "voxtral-small-latest" in str(error["message"])

    reply, _ = transcribe(gateway, key, [("file", audio, "a.mp3"), ("language", b"fr", None)])
    refused(upstream, reply, 400, "model_unreadable", key)

    reply, body = transcribe(
        gateway, key, [("file", audio, "a.mp3"), ("model", b"voxtral-mini-latest", None)]
    )
    assert upstream.last.body == body
    served(upstream, reply, TRANSCRIBE, key)


def test_large_multipart_with_the_model_first_streams_through(
    gateway: GatewayProcess, upstream: FakeMistral
) -> None:
    key = generate(gateway, models=["voxtral-mini-latest"])["key"]
    audio = secrets.token_bytes(2 * MiB)  # past the 1 MiB the gateway reads to inspect
    reply, body = transcribe(
        gateway, key, [("model", b"voxtral-mini-latest", None), ("file", audio, "big.mp3")]
    )
    assert len(body) > 2 * MiB
    (record,) = upstream.wait_for_requests(1)
    assert record.body_size == len(body) and record.body == body
    served(upstream, reply, TRANSCRIBE, key)

    reply, _ = transcribe(
        gateway, key, [("model", b"voxtral-small-latest", None), ("file", audio, "big.mp3")]
    )
    refused(upstream, reply, 403, "model_not_allowed", key)
    # A model after a large file cannot be read without buffering the file: refused, not guessed.
    reply, _ = transcribe(
        gateway, key, [("file", audio, "big.mp3"), ("model", b"voxtral-mini-latest", None)]
    )
    refused(upstream, reply, 400, "model_unreadable", key)
    reply, _ = transcribe(gateway, key, [("file", audio, "big.mp3")])
    refused(upstream, reply, 400, "model_unreadable", key)


def test_allowed_routes(gateway: GatewayProcess, upstream: FakeMistral) -> None:
    key = generate(gateway, allowed_routes=[OCR])["key"]
    error = refused(upstream, chat(gateway, key), 403, "route_not_allowed", key)
    assert CHAT in str(error["message"])
    refused(
        upstream,
        call(gateway, "/mistral/v1/models", token=key, method="GET"),
        403,
        "route_not_allowed",
    )
    refused(upstream, call(gateway, "/mistral/v1/ocrx", {}, token=key), 403, "route_not_allowed")
    reply = call(gateway, OCR, {"model": "mistral-ocr-latest", "document": {}}, token=key)
    served(upstream, reply, OCR, key)


def test_a_virtual_key_cannot_manage_keys(gateway: GatewayProcess, upstream: FakeMistral) -> None:
    created = generate(gateway)
    key, token = created["key"], created["token"]
    other = generate(gateway)["token"]
    reply = call(gateway, "/key/generate", {}, token=key)
    refused(upstream, reply, 403, "admin_only", key, token)
    for path, body in [
        ("/key/update", {"key": other, "rpm_limit": 1}),
        ("/key/delete", {"keys": [other]}),
        ("/key/regenerate", {"key": key}),
        ("/key/block", {"key": other}),
        ("/key/unblock", {"key": key}),
    ]:
        refused(upstream, call(gateway, path, body, token=key), 403, "admin_only", key, token)
    refused(upstream, call(gateway, "/key/list", token=key, method="GET"), 403, "admin_only")
    own = call(gateway, "/key/info", token=key, method="GET")
    assert own.status == 200 and own.json()["key"] == token  # type: ignore[index]
    assert call(gateway, f"/key/info?key={other}", token=key, method="GET").status == 403
    # The master key still works everywhere.
    assert call(gateway, "/key/update", {"key": other, "rpm_limit": 1}).status == 200
    served(upstream, chat(gateway, SEED_MASTER), CHAT, SEED_MASTER)


def test_a_chunked_json_body_is_read_for_its_model(
    gateway: GatewayProcess, upstream: FakeMistral
) -> None:
    key = generate(gateway, models=["mistral-small-latest"])["key"]
    conn = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=10)
    try:
        conn.putrequest("POST", CHAT)
        conn.putheader("Authorization", f"Bearer {key}")
        conn.putheader("Content-Type", "application/json")
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        for piece in (b'{"model": ', b'"mistral-small-latest"}'):
            conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
            time.sleep(0.2)  # two separate reads on the gateway's side
        conn.send(b"0\r\n\r\n")
        response = conn.getresponse()
        status, body = response.status, response.read()
    finally:
        conn.close()
    assert status == 200, body
    assert upstream.last.body == b'{"model": "mistral-small-latest"}'


def test_a_block_applies_at_once_on_every_worker(upstream: FakeMistral) -> None:
    # Not a database matter: run once, on the default SQLite file.
    env = {"LITELLM_MASTER_KEY": SEED_MASTER, "MISTRAL_API_BASE": upstream.url}
    with GatewayProcess(env, workers=2) as gw:
        key = generate(gw)["key"]
        # Separate connections, spread over both workers: the key is cached on each.
        assert {chat(gw, key).status for _ in range(20)} == {200}
        assert call(gw, "/key/block", {"key": key}).status == 200
        statuses = [chat(gw, key).status for _ in range(20)]
    assert statuses == [401] * 20


# --- what refusals say ------------------------------------------------------------------


def test_401_messages_never_echo_the_key(gateway: GatewayProcess, upstream: FakeMistral) -> None:
    unknown = "sk-" + secrets.token_urlsafe(32)
    odd = "sk-.~" + secrets.token_hex(20)  # a shape the log redactor would not catch
    not_a_key = "pk-" + secrets.token_hex(20)
    long = "sk-" + "A" * 250
    for token in (unknown, odd, not_a_key, long):
        for path in (CHAT, OCR):
            reply = call(gateway, path, {"model": "m"}, token=token)
            error = refused(upstream, reply, 401, "invalid_api_key", token, hash_key(token))
            assert token[3:13] not in str(error["message"])
        reply = call(gateway, "/key/generate", {}, token=token)
        refused(upstream, reply, 401, "invalid_api_key", token, hash_key(token))
        reply = call(gateway, CHAT, {}, token=None, headers={"x-api-key": token})
        refused(upstream, reply, 401, "invalid_api_key", token, hash_key(token))
    refused(upstream, call(gateway, CHAT, {}, token=None), 401, "missing_api_key")


# --- SQL injection -------------------------------------------------------------------------

PROBES = [
    "x' OR (SELECT pg_sleep(3)) IS NOT NULL--",
    "sk-'OR(SELECT(pg_sleep(3)))IS(NOT(NULL))--",
    "' OR '1'='1",
    "sk-1' UNION SELECT token FROM keys--",
    "'; DROP TABLE keys; --",
    '" OR ""="',
    "%27%20OR%201%3D1",
    "a\x00b",
    "\\x00' OR 1=1",
]
SLOW_PROBE = "x' OR (SELECT pg_sleep(3)) IS NOT NULL--"


class Probe:
    """Sends probes; checks every answer is fast, never a server error, always JSON."""

    def __init__(self, gateway: GatewayProcess) -> None:
        self.gateway = gateway

    def send(self, expected: set[int], path: str, body: Any = None, **kwargs: Any) -> Reply:
        started = time.monotonic()
        reply = call(self.gateway, path, body, **kwargs)
        elapsed = time.monotonic() - started
        # pg_sleep(3) would run if a probe reached SQL as code: a bound, not a benchmark.
        assert elapsed < 1.0, (path, body, elapsed)
        assert reply.status in expected, (path, body, reply.status, reply.body)
        if reply.status >= 400:
            assert reply.body.startswith(b'{"error":'), reply.body
        return reply


def test_sql_injection_probes(gateway: GatewayProcess, upstream: FakeMistral) -> None:
    probe = Probe(gateway)
    survivor = generate(gateway, key_alias="survivor-" + secrets.token_hex(4))
    for text in PROBES:
        header_safe = "\x00" not in text
        if header_safe:
            for path in (CHAT, "/mistral/v1/models"):
                probe.send({401}, path, {"model": "m"}, token=text)
            probe.send({401}, "/key/generate", {}, token=text)
            probe.send({401}, "/key/list", token=text, method="GET")
        assert upstream.requests == []

        probe.send({404, 422}, f"/key/info?key={quote(text, safe='')}", method="GET")
        for name in ("user_id", "team_id", "key_alias", "page", "size", "return_full_object"):
            reply = probe.send({200, 422}, f"/key/list?{name}={quote(text, safe='')}", method="GET")
            if reply.status == 200:
                assert reply.json()["total_count"] == 0  # type: ignore[index]
        probe.send({422}, f"/key/list?{quote(text, safe='')}=1", method="GET")
        for path in ("/key/update", "/key/block", "/key/unblock", "/key/regenerate"):
            probe.send({404, 422}, path, {"key": text})
        probe.send({404, 422}, "/key/delete", {"keys": [text]})
        probe.send({404, 422}, "/key/delete", {"key_aliases": [text]})
        probe.send({422}, "/key/generate", {text: 1})
        for name in ("duration", "budget_duration"):
            probe.send({422}, "/key/generate", {name: text})
        probe.send({422}, "/key/generate", {"allowed_routes": [text]})
        probe.send({422}, "/key/generate", {"allowed_deployments": [text]})
        probe.send({422}, "/key/regenerate", {"key": survivor["token"], "grace_period": text})
        probe.send({422}, "/key/update", {"key": survivor["token"], "rpm_limit": text})

        # Stored as data, never run: what goes in comes back as it was, or is refused.
        fields = {
            "key_alias": f"{text} {secrets.token_hex(4)}",
            "user_id": text,
            "team_id": text,
            "end_user_id": text,
            "models": [text],
            "tags": [text],
            "metadata": {text: text},
        }
        reply = probe.send({200, 422}, "/key/generate", fields)
        if reply.status == 422:
            assert "\x00" in text, reply.body
            continue
        created = reply.json()
        assert isinstance(created, dict)
        for name, value in fields.items():
            if name != "metadata":
                assert created[name] == value, name
        assert created["metadata"] == {text: text, "tags": [text]}
        listed = probe.send({200}, f"/key/list?user_id={quote(text, safe='')}", method="GET")
        assert listed.json()["keys"] == [created["token"]]  # type: ignore[index]
        probe.send({200}, "/key/delete", {"key_aliases": [fields["key_alias"]]})

        reply = probe.send({200, 422}, "/key/generate", {"key": text})
        if reply.status == 200:  # an sk-... probe is a valid caller-chosen secret
            assert text.startswith("sk-")
            probe.send({200}, "/key/delete", {"keys": [text]})

    # Each probe's pg_sleep(3), if it had run, would have shown in the timings above.
    started = time.monotonic()
    probe.send({401}, CHAT, {"model": "m"}, token=SLOW_PROBE)
    assert time.monotonic() - started < 1.0
    served(upstream, chat(gateway, survivor["key"]), CHAT, survivor["key"])
    assert call(gateway, "/key/list", method="GET").json()["total_count"] >= 1  # type: ignore[index]


def test_impossible_numbers_are_422_naming_the_field(gateway: GatewayProcess) -> None:
    for name in ("rpm_limit", "tpm_limit", "max_parallel_requests"):
        for value in (2**31, 10**30, -1):
            raw = f'{{"{name}": {value}}}'.encode()  # orjson cannot write 10**30
            reply = call(
                gateway, "/key/generate", raw, headers={"Content-Type": "application/json"}
            )
            assert reply.status == 422, (name, value, reply.body)
            assert name in str(reply.error["message"])
    assert call(gateway, "/key/generate", {"rpm_limit": 2**31 - 1}).status == 200
    reply = call(gateway, "/key/generate", {"max_budget": -0.5})
    assert reply.status == 422 and "max_budget" in str(reply.error["message"])


# --- secrets in logs -----------------------------------------------------------------------


def test_no_key_or_hash_in_the_output_or_error_bodies(
    backend: Backend, upstream: FakeMistral
) -> None:
    gw = backend.start(upstream, PASSGATE_LOG_LEVEL="debug")
    errors: list[bytes] = []
    secrets_: set[str] = {SEED_MASTER}

    def do(path: str, body: Any = None, **kwargs: Any) -> Reply:
        reply = call(gw, path, body, **kwargs)
        assert reply.status < 500, (path, reply.body)
        if reply.status >= 400:
            errors.append(reply.body)
        return reply

    def remember(created: Any) -> str:
        assert isinstance(created, dict)
        secrets_.update((created["key"], created["token"]))
        key: str = created["key"]
        return key

    # A caller-chosen key that the log redactor's sk- pattern would not catch.
    chosen = "sk-.~" + secrets.token_hex(24)
    secrets_.update((chosen, hash_key(chosen)))
    plain = remember(do("/key/generate", {"key_alias": "logged-" + backend.name}).json())
    assert do("/key/generate", {"key": chosen, "models": ["mistral-small-latest"]}).status == 200
    limited = remember(do("/key/generate", {"models": ["mistral-small-latest"]}).json())

    for key in (plain, chosen, limited):
        do(CHAT, {"model": "mistral-small-latest"}, token=key)
        do(CHAT, {"model": "mistral-small-latest", "stream": True}, token=key)
        do(CHAT, {"model": "mistral-large-latest"}, token=key)
        do(OCR, {"document": {}}, token=key)
        do(CHAT, {}, token=None, headers={"x-api-key": key})
        do("/key/info", token=key, method="GET")
        do(f"/key/info?key={quote(key, safe='')}", method="GET")
        do(f"/key/info?key={hash_key(key)}", method="GET")
        do("/key/generate", {}, token=key)
        do("/key/generate", {"key": key})  # 409: already exists
    upstream.set_response("/v1/ocr", b'{"message":"boom"}', status=500)
    failed = call(gw, OCR, {"model": "mistral-ocr-latest"}, token=plain)
    assert (failed.status, failed.body) == (500, b'{"message":"boom"}')  # relayed as is

    do("/key/block", {"key": chosen})
    do(CHAT, {"model": "m"}, token=chosen)
    do("/key/unblock", {"key": hash_key(chosen)})
    renewed = remember(do("/key/regenerate", {"key": plain}).json())
    do(CHAT, {"model": "m"}, token=plain)
    do(CHAT, {"model": "m"}, token=renewed)
    do("/key/update", {"key": renewed, "key_alias": None, "rpm_limit": 5})
    do("/key/update", {"key": plain, "rpm_limit": 5})  # the old secret: 404
    do("/key/delete", {"keys": [renewed, chosen, limited]})
    for key in (renewed, chosen, limited):
        do(CHAT, {"model": "m"}, token=key)
        do("/key/delete", {"keys": [key]})
        do(f"/key/info?key={hash_key(key)}", method="GET")
    unknown = "sk-" + secrets.token_urlsafe(32)
    secrets_.update((unknown, hash_key(unknown)))
    do(CHAT, {"model": "m"}, token=unknown)
    do("/key/block", {"key": unknown})
    do("/key/generate", {"key": unknown, "rpm_limit": -1})

    gw.stop()  # flushes the log queue
    output = gw.logs()
    assert '"passgate.access"' in output and '"status":401' in output
    assert len(errors) >= 25
    for secret in secrets_:
        assert secret not in output, "a secret is in the process output"
        if len(secret) > 20:  # also without its prefix (the master key's "1234" is too short)
            assert secret.removeprefix("sk-") not in output
        for body in errors:
            assert secret.encode() not in body, body
