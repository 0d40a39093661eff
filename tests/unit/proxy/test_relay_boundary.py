"""The relay's last-resort boundary: a defect in a stage is answered, never raised to the server.

In process: the relay is called as an ASGI app by a scripted client, in front of the fake
upstream (a real HTTP server on loopback).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from passgate.asgi import CLOSE_CONNECTION
from passgate.auth.master import MasterKey, MasterKeyAuthenticator
from passgate.config import Settings
from passgate.exchange import Exchange
from passgate.providers.registry import enabled
from passgate.proxy.body import BodyPolicy
from passgate.proxy.hooks import Guard, Pipeline
from passgate.proxy.relay import Relay
from passgate.proxy.upstream import Upstream, UpstreamOptions
from passgate.types import Message
from tests.support.fake_mistral import FakeMistral

CHAT = b'{"model":"mistral-small-latest","messages":[],"stream":true}'


class Recorder:
    def __init__(self) -> None:
        self.exchanges: list[Exchange] = []

    async def finished(self, ex: Exchange) -> None:
        self.exchanges.append(ex)


class BrokenGuard:
    async def admit(self, ex: Exchange) -> None:
        raise RuntimeError("a defect in a guard")


class Client:
    """Sends one body; records what it gets; its ``send`` fails after ``fail_after`` sends."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.sent: list[Message] = []
        self.closed = 0
        self._fail_after = fail_after
        self._body_sent = False

    async def receive(self) -> Message:
        assert not self._body_sent, "receive() after the body in a call this short"
        self._body_sent = True
        return {"type": "http.request", "body": CHAT, "more_body": False}

    async def send(self, message: Message) -> None:
        if self._fail_after is not None and len(self.sent) >= self._fail_after:
            raise RuntimeError("the server refused a message")
        self.sent.append(message)

    def close(self) -> None:
        self.closed += 1

    def scope(self) -> dict[str, Any]:
        return {
            "type": "http",
            "method": "POST",
            "path": "/mistral/v1/chat/completions",
            "raw_path": b"/mistral/v1/chat/completions",
            "query_string": b"",
            "headers": [(b"content-type", b"application/json"), (b"x-request-id", b"rid-1")],
            "extensions": {CLOSE_CONNECTION: {"close": self.close}},
        }


@pytest.fixture
async def upstream_client(upstream: FakeMistral) -> AsyncIterator[tuple[Upstream, Settings]]:
    settings = Settings.model_validate({"mistral_api_base": upstream.url, "mistral_api_key": "k"})
    client = Upstream(UpstreamOptions.from_settings(settings))
    await client.start()
    yield client, settings
    await client.stop()


def _relay(
    upstream: tuple[Upstream, Settings], recorder: Recorder, guards: tuple[Guard, ...] = ()
) -> Relay:
    client, settings = upstream
    pipeline = Pipeline(
        MasterKeyAuthenticator(MasterKey(None)), guards=guards, observers=(recorder,)
    )
    return Relay(
        b"/mistral",
        enabled(settings.upstreams())[0],
        client,
        pipeline,
        BodyPolicy(1 << 20, 1 << 20),
        settings.first_byte_timeout,
        settings.idle_timeout,
    )


async def test_a_defect_before_the_answer_is_a_json_500_logged_once(
    upstream_client: tuple[Upstream, Settings], caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    relay = _relay(upstream_client, recorder, guards=(BrokenGuard(),))
    client = Client()
    with caplog.at_level(logging.ERROR, logger="passgate.relay"):
        await relay(client.scope(), client.receive, client.send)  # must not raise
    start, body = client.sent
    assert start["status"] == 500
    assert (b"x-request-id", b"rid-1") in start["headers"]
    assert orjson.loads(body["body"])["error"]["code"] == "internal_error"
    assert client.closed == 0
    (ex,) = recorder.exchanges
    assert (ex.status, ex.error, ex.interrupted) == (500, "internal error in the gateway", False)
    (record,) = [r for r in caplog.records if r.name == "passgate.relay"]
    logged = record.getMessage()
    # the type and the stack, never the exception's text (it may carry request data)
    assert ex.call_id in logged and "RuntimeError" in logged and "in admit" in logged
    assert "a defect in a guard" not in logged and record.exc_info is None


async def test_a_defect_after_the_head_went_out_cuts_the_connection(
    upstream_client: tuple[Upstream, Settings],
) -> None:
    recorder = Recorder()
    relay = _relay(upstream_client, recorder)
    client = Client(fail_after=2)  # the head and the first events go out, then send fails
    await relay(client.scope(), client.receive, client.send)  # must not raise
    assert client.sent[0]["status"] == 200
    assert client.closed == 1
    (ex,) = recorder.exchanges
    assert (ex.error, ex.interrupted) == ("internal error in the gateway", True)


class Phases:
    """A feature in every phase, recording the order they ran in (into a shared list)."""

    def __init__(self, name: str, log: list[str], fail: str = "") -> None:
        self.name, self.log, self.fail = name, log, fail

    async def admit(self, ex: Exchange) -> None:
        self.log.append(f"{self.name}.admit")

    async def cleanup(self, ex: Exchange) -> None:
        self.log.append(f"{self.name}.cleanup")
        if self.fail == "cleanup":
            raise RuntimeError("cleanup broke")

    async def finished(self, ex: Exchange) -> None:
        self.log.append(f"{self.name}.finished")
        if self.fail == "finished":
            raise RuntimeError("observer broke")


def _relay_of(upstream: tuple[Upstream, Settings], features: list[object]) -> Relay:
    client, settings = upstream
    pipeline = Pipeline.of(MasterKeyAuthenticator(MasterKey(None)), features)
    return Relay(
        b"/mistral",
        enabled(settings.upstreams())[0],
        client,
        pipeline,
        BodyPolicy(1 << 20, 1 << 20),
        settings.first_byte_timeout,
        settings.idle_timeout,
    )


async def test_cleanups_always_run_each_on_its_own_before_the_observers(
    upstream_client: tuple[Upstream, Settings],
) -> None:
    order: list[str] = []
    first = Phases("a", order, fail="cleanup")
    second = Phases("b", order, fail="finished")
    relay = _relay_of(upstream_client, [first, second, BrokenGuard(), Phases("c", order)])
    client = Client()
    await relay(client.scope(), client.receive, client.send)  # the guard's defect: a 500
    assert client.sent[0]["status"] == 500
    # c was never admitted (the broken guard came first), yet every cleanup ran, each once,
    # the failing one did not stop the next, and the observers came after all of them
    assert order == [
        "a.admit",
        "b.admit",
        "a.cleanup",
        "b.cleanup",
        "c.cleanup",
        "a.finished",
        "b.finished",
        "c.finished",
    ]


def test_a_feature_is_registered_once_in_every_phase_it_implements() -> None:
    order: list[str] = []
    both, watcher = Phases("both", order), Recorder()
    pipeline = Pipeline.of(MasterKeyAuthenticator(MasterKey(None)), [both, watcher])
    assert list(pipeline.guards) == [both]
    assert list(pipeline.cleanups) == [both]
    assert list(pipeline.observers) == [both, watcher]
    with pytest.raises(ValueError, match="registered twice"):
        Pipeline.of(MasterKeyAuthenticator(MasterKey(None)), [both, watcher, both])
    with pytest.raises(TypeError, match="object implement no hook"):
        Pipeline.of(MasterKeyAuthenticator(MasterKey(None)), [object()])
