"""Acceptance: a budget holds in a burst of calls that set no ``max_tokens``.

The fake upstream's usage is fixed, so every chat costs exactly ``COST`` and a key's
``max_budget`` of ``5 x COST`` covers exactly five chats. No flat estimate is set:
each call reserves its input plus an output allowance, never more than the budget
has unreserved.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest

from passgate.accounting.pricing import load_catalog
from passgate.exchange import Usage
from tests.conftest import MASTER_KEY, PROVIDER_KEY, GatewayFactory
from tests.support.fake_mistral import FakeMistral
from tests.support.fake_mistral_payloads import COMPLETION_TOKENS, PROMPT_TOKENS, TOTAL_TOKENS
from tests.support.gateway import GatewayProcess
from tests.support.services import REDIS_URL, require_redis

MODEL = "mistral-small-latest"
_PRICE = load_catalog().lookup(MODEL)
assert _PRICE is not None
COST = _PRICE.cost(Usage(PROMPT_TOKENS, COMPLETION_TOKENS, total_tokens=TOTAL_TOKENS))
CHAT = "/mistral/v1/chat/completions"
BODY = orjson.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]})
ADMIN = {"Authorization": f"Bearer {MASTER_KEY}"}
CHATS = 5


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        yield session


def start(start_gateway: GatewayFactory, upstream: FakeMistral, setup: str) -> GatewayProcess:
    """``redis``: two workers sharing Redis; ``workers``: two workers and no Redis (the
    limits process); ``single``: one worker, no Redis."""
    env = {
        "MISTRAL_API_BASE": upstream.url,
        "MISTRAL_API_KEY": PROVIDER_KEY,
        "PASSGATE_MASTER_KEY": MASTER_KEY,
    }
    if setup == "redis":
        require_redis()
        env["REDIS_URL"] = REDIS_URL
        env["PASSGATE_REDIS_PREFIX"] = f"test-{secrets.token_hex(4)}:"
        return start_gateway(env, workers=2)
    return start_gateway(env, workers=2 if setup == "workers" else 1)


async def new_key(http: aiohttp.ClientSession, gateway: GatewayProcess) -> str:
    fields = {"max_budget": CHATS * COST}
    async with http.post(f"{gateway.url}/key/generate", json=fields, headers=ADMIN) as reply:
        assert reply.status == 200, await reply.text()
        key: str = (await reply.json())["key"]
        return key


async def chat(http: aiohttp.ClientSession, gateway: GatewayProcess, key: str) -> int:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    async with http.post(gateway.url + CHAT, data=BODY, headers=headers) as reply:
        body = await reply.read()
        if reply.status != 200:
            assert reply.status == 429, body
            assert orjson.loads(body)["error"]["code"] == "budget_exceeded"
        return reply.status


async def until_refused(http: aiohttp.ClientSession, gateway: GatewayProcess, key: str) -> int:
    """Sequential calls until the budget refuses one; how many passed."""
    passed = 0
    while await chat(http, gateway, key) == 200:
        passed += 1
        assert passed <= 2 * CHATS, "the budget never refused"
    return passed


async def recorded_spend(
    http: aiohttp.ClientSession, gateway: GatewayProcess, key: str, calls: int
) -> float:
    """The key's spend once the spend writer recorded ``calls`` calls."""
    deadline = time.monotonic() + 10
    while True:
        async with http.get(f"{gateway.url}/key/info", params={"key": key}, headers=ADMIN) as r:
            spend: float = (await r.json())["info"]["spend"]
        if spend >= calls * COST * (1 - 1e-9) or time.monotonic() > deadline:
            return spend
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("setup", ["redis", "workers", "single"])
async def test_a_burst_without_max_tokens_overspends_at_most_one_call(
    setup: str,
    fake_upstream: FakeMistral,
    start_gateway: GatewayFactory,
    http: aiohttp.ClientSession,
) -> None:
    fake_upstream.reset()
    gateway = start(start_gateway, fake_upstream, setup)
    key = await new_key(http, gateway)
    statuses = await asyncio.gather(*(chat(http, gateway, key) for _ in range(20)))
    burst = statuses.count(200)
    assert 1 <= burst <= CHATS + 1, statuses
    total = burst + await until_refused(http, gateway, key)
    assert CHATS <= total <= CHATS + 1
    spend = await recorded_spend(http, gateway, key, total)
    assert spend == pytest.approx(total * COST, rel=1e-9)
    assert spend <= (CHATS + 1) * COST * (1 + 1e-9)

    fresh = await new_key(http, gateway)
    assert await until_refused(http, gateway, fresh) == CHATS
