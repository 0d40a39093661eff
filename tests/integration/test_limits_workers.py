"""Acceptance: exact limits over two workers of one real ``passgate`` process, no Redis.

The workers share their counters through the instance's limits process. Its
being killed mid-run is followed as ``redis_fail_mode`` says, and it comes back
without a gateway restart.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import psutil
import pytest

from tests.conftest import MASTER_KEY, PROVIDER_KEY, GatewayFactory
from tests.integration.test_budget_burst import CHATS, COST
from tests.support.fake_mistral import FakeMistral
from tests.support.gateway import GatewayProcess

MODEL = "mistral-small-latest"
CHAT = "/mistral/v1/chat/completions"
BODY = orjson.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]})
STREAM = orjson.dumps({"model": MODEL, "stream": True, "messages": []})
ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}


def env(upstream: FakeMistral, **extra: str) -> dict[str, str]:
    return {
        "MISTRAL_API_BASE": upstream.url,
        "MISTRAL_API_KEY": PROVIDER_KEY,
        "PASSGATE_MASTER_KEY": MASTER_KEY,
        **extra,
    }


@pytest.fixture(scope="module")
def gateway(fake_upstream: FakeMistral, start_gateway: GatewayFactory) -> GatewayProcess:
    return start_gateway(env(fake_upstream), workers=2)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # no keep-alive: every request takes its own connection, so both workers get some
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    async with aiohttp.ClientSession(connector=connector) as session:
        yield session


@pytest.fixture
async def pooled() -> AsyncIterator[aiohttp.ClientSession]:
    """Keep-alive connections: ``spread`` opens many at once, and a burst reuses them."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        yield session


async def spread(http: aiohttp.ClientSession, gateway: GatewayProcess, connections: int) -> None:
    """Open ``connections`` connections at once: both workers accept some of them."""

    async def health() -> None:
        async with http.get(gateway.url + "/health/liveliness") as reply:
            await reply.read()

    await asyncio.gather(*(health() for _ in range(connections)))


async def new_key(http: aiohttp.ClientSession, gateway: GatewayProcess, **fields: Any) -> str:
    async with http.post(f"{gateway.url}/key/generate", json=fields, headers=ADMIN) as reply:
        assert reply.status == 200, await reply.text()
        key: str = (await reply.json())["key"]
        return key


async def call(
    http: aiohttp.ClientSession, gateway: GatewayProcess, key: str, body: bytes = BODY
) -> tuple[int, str | None]:
    """(status, error code) of one chat."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    async with http.post(gateway.url + CHAT, data=body, headers=headers) as reply:
        raw = await reply.read()
        code = orjson.loads(raw)["error"]["code"] if reply.status != 200 else None
        return reply.status, code


def limits_process(gateway: GatewayProcess) -> psutil.Process:
    for child in psutil.Process(gateway.pid).children(recursive=True):
        if "passgate.runtime.limits_process" in child.cmdline():
            return child
    raise AssertionError("no limits process under the gateway")


async def held_stream(
    http: aiohttp.ClientSession, gateway: GatewayProcess, upstream: FakeMistral, key: str
) -> asyncio.Future[tuple[int, str | None]]:
    """A streamed call that stays in flight until ``upstream.release_last_event()``."""
    held = sum(1 for r in upstream.requests if r.holding.is_set())
    upstream.configure(hold_last_event=True)
    stream = asyncio.ensure_future(call(http, gateway, key, STREAM))
    while sum(1 for r in upstream.requests if r.holding.is_set()) <= held:
        assert not stream.done(), (await stream, gateway.logs()[-3000:])
        await asyncio.sleep(0.01)
    return stream


async def release(upstream: FakeMistral, stream: asyncio.Future[tuple[int, str | None]]) -> None:
    upstream.configure(hold_last_event=False)
    upstream.release_last_event()
    assert (await stream)[0] == 200


async def test_rpm_thirty_holds_over_two_workers(
    gateway: GatewayProcess,
    upstream: FakeMistral,
    http: aiohttp.ClientSession,
    pooled: aiohttp.ClientSession,
) -> None:
    key = await new_key(http, gateway, rpm_limit=30)
    await spread(pooled, gateway, 100)
    replies = await asyncio.gather(*(call(pooled, gateway, key) for _ in range(100)))
    assert replies.count((200, None)) == 30
    assert replies.count((429, "rate_limit_exceeded")) == 70


async def test_the_third_parallel_call_is_refused_on_either_worker(
    gateway: GatewayProcess, upstream: FakeMistral, http: aiohttp.ClientSession
) -> None:
    key = await new_key(http, gateway, max_parallel_requests=2)
    first = await held_stream(http, gateway, upstream, key)
    second = await held_stream(http, gateway, upstream, key)
    # ten calls on fresh connections: each lands on one worker or the other
    replies = await asyncio.gather(*(call(http, gateway, key) for _ in range(10)))
    assert set(replies) == {(429, "rate_limit_exceeded")}
    await release(upstream, first)
    await release(upstream, second)
    assert await call(http, gateway, key) == (200, None)


@pytest.mark.parametrize("mode", ["open", "closed"])
async def test_the_limits_process_killed_mid_run(
    mode: str,
    fake_upstream: FakeMistral,
    start_gateway: GatewayFactory,
    http: aiohttp.ClientSession,
) -> None:
    upstream = fake_upstream
    upstream.reset()
    gateway = start_gateway(env(upstream, PASSGATE_REDIS_FAIL_MODE=mode), workers=2)
    held = await new_key(http, gateway, max_parallel_requests=1, max_budget=CHATS * COST)
    rated = await new_key(http, gateway, rpm_limit=2)
    stream = await held_stream(http, gateway, upstream, held)
    # the stream holds the slot and, with no max_tokens, all of the budget; refused on
    # fresh connections, so both workers are connected to the limits process when it dies
    for _ in range(10):
        assert await call(http, gateway, held) == (429, "rate_limit_exceeded")

    holder = limits_process(gateway)
    os.kill(holder.pid, signal.SIGKILL)
    status = await call(http, gateway, rated)
    assert status == ((200, None) if mode == "open" else (503, "limits_unavailable"))

    # back on both workers: the rpm limit refuses every call again, whichever worker
    deadline = time.monotonic() + 5
    seen: list[tuple[int, str | None]] = []
    refused_in_a_row = 0
    while refused_in_a_row < 10:
        status = await call(http, gateway, rated)
        if status == (429, "rate_limit_exceeded"):
            refused_in_a_row += 1
            continue
        refused_in_a_row = 0
        seen.append(status)
        assert time.monotonic() < deadline, f"limits did not come back: {seen}"
        await asyncio.sleep(0.05)
    allowed = {(200, None)} if mode == "open" else {(200, None), (503, "limits_unavailable")}
    assert set(seen) <= allowed
    assert limits_process(gateway).pid != holder.pid

    await release(upstream, stream)
    # neither the slot nor the reservation of the stream the dead holder knew is leaked
    again = await held_stream(http, gateway, upstream, held)
    assert await call(http, gateway, held) == (429, "rate_limit_exceeded")
    await release(upstream, again)
    # the slot is given back just after the last byte, on the worker's own connection to
    # the holder: a call on the other worker may get there first, so allow that moment
    # (far shorter than the lease a leaked slot would wait for)
    deadline = time.monotonic() + 2
    while (status := await call(http, gateway, held)) != (200, None):
        assert status == (429, "rate_limit_exceeded")
        assert time.monotonic() < deadline, "the slot of the finished stream was not given back"
        await asyncio.sleep(0.05)
    assert "Traceback" not in gateway.logs()
