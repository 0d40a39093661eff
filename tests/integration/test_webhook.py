"""The webhook exporter against a real aiohttp receiver on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiohttp import web

from passgate.observability.webhook import WebhookExporter


@dataclass
class Receiver:
    """Records every POSTed batch; answers ``fail_first`` requests with ``fail_status``."""

    fail_first: int = 0
    fail_status: int = 500
    stall_first: float = 0.0  # seconds the first request hangs (after recording it)
    requests: int = 0
    batches: list[list[dict[str, Any]]] = field(default_factory=list)
    batch_ids: list[str] = field(default_factory=list)
    url: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        number = self.requests
        if number <= self.fail_first:
            return web.Response(status=self.fail_status)
        assert request.content_type == "application/json"
        self.batch_ids.append(request.headers["x-passgate-batch-id"])
        self.batches.append(orjson.loads(await request.read()))
        if number == 1 and self.stall_first:
            await asyncio.sleep(self.stall_first)
        return web.Response(status=204)

    def rows(self) -> list[dict[str, Any]]:
        return [row for batch in self.batches for row in batch]

    def deduplicated(self) -> dict[str, dict[str, Any]]:
        """What a receiver that dedups by request_id keeps."""
        return {row["request_id"]: row for row in self.rows()}


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()
    app = web.Application()
    app.router.add_post("/hook", state.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    state.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    yield state
    await runner.cleanup()


def spend_rows(count: int, prefix: str = "req") -> list[dict[str, Any]]:
    return [
        {"request_id": f"{prefix}-{i}", "model": "mistral-small-latest", "cost": i / 1000}
        for i in range(count)
    ]


def exporter(url: str, **options: Any) -> WebhookExporter:
    defaults: dict[str, Any] = {"batch_size": 100, "flush_interval": 0.05, "backoff": 0.01}
    return WebhookExporter(url, **(defaults | options))


async def test_every_row_arrives_once_after_two_failures(receiver: Receiver) -> None:
    receiver.fail_first = 2
    webhook = exporter(receiver.url)
    await webhook.start()
    rows = spend_rows(250)
    await webhook.deliver(rows[:120])
    await webhook.deliver(rows[120:])
    await webhook.stop()
    assert receiver.requests == 2 + 3  # two refusals, then batches of 100, 100, 50
    assert [row["request_id"] for row in receiver.rows()] == [r["request_id"] for r in rows]
    assert receiver.deduplicated() == {row["request_id"]: row for row in rows}
    assert (webhook.delivered, webhook.dropped, webhook.pending) == (250, 0, 0)


async def test_a_timed_out_batch_is_resent_with_the_same_batch_id(receiver: Receiver) -> None:
    receiver.stall_first = 1.0
    webhook = exporter(receiver.url, timeout=0.2)
    await webhook.start()
    rows = spend_rows(30)
    await webhook.deliver(rows)
    await webhook.stop()
    # The receiver got the first attempt although the gateway gave up waiting: at least once.
    assert len(receiver.rows()) == 60
    assert receiver.batch_ids[0] == receiver.batch_ids[1]
    assert receiver.deduplicated() == {row["request_id"]: row for row in rows}


async def test_stop_flushes_rows_before_the_interval(receiver: Receiver) -> None:
    webhook = exporter(receiver.url, flush_interval=60.0)
    await webhook.start()
    await webhook.deliver(spend_rows(5))
    await webhook.stop()
    assert len(receiver.deduplicated()) == 5


async def test_a_full_batch_is_sent_without_waiting_for_the_interval(receiver: Receiver) -> None:
    webhook = exporter(receiver.url, batch_size=10, flush_interval=60.0)
    await webhook.start()
    await webhook.deliver(spend_rows(10))
    async with asyncio.timeout(5):
        while len(receiver.rows()) < 10:
            await asyncio.sleep(0.01)
    await webhook.stop()
    assert receiver.requests == 1


async def test_a_refused_batch_is_dropped_and_later_ones_delivered(receiver: Receiver) -> None:
    receiver.fail_first, receiver.fail_status = 1, 400
    webhook = exporter(receiver.url, batch_size=10)
    await webhook.start()
    await webhook.deliver(spend_rows(10, "first"))
    await webhook.deliver(spend_rows(10, "second"))
    await webhook.stop()
    assert set(receiver.deduplicated()) == {f"second-{i}" for i in range(10)}
    assert (webhook.delivered, webhook.dropped) == (10, 10)


async def test_the_buffer_is_bounded() -> None:
    webhook = WebhookExporter("http://127.0.0.1:9/hook", max_buffer=10)
    assert webhook.submit(spend_rows(15)) == 10
    assert (webhook.pending, webhook.dropped) == (10, 5)


async def test_stop_gives_up_when_the_receiver_stays_down(receiver: Receiver) -> None:
    receiver.fail_first = 10**6
    webhook = exporter(receiver.url, stop_timeout=0.3)
    await webhook.start()
    await webhook.deliver(spend_rows(3))
    async with asyncio.timeout(5):
        await webhook.stop()
    assert receiver.requests >= 2  # it retried
    assert webhook.pending == 3
    assert webhook.submit(spend_rows(1)) == 0  # closed: nothing more is accepted


async def test_a_row_that_cannot_be_encoded_drops_only_its_batch(receiver: Receiver) -> None:
    webhook = exporter(receiver.url, batch_size=1)
    await webhook.start()
    await webhook.deliver([{"request_id": "bad", "tokens": 2**70}])  # past JSON's 64-bit ints
    await webhook.deliver(spend_rows(2))
    await webhook.stop()
    assert set(receiver.deduplicated()) == {"req-0", "req-1"}
    assert (webhook.delivered, webhook.dropped) == (2, 1)
