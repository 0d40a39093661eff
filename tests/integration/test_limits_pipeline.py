"""Two gateway instances in one process, sharing PostgreSQL and Redis, with the real relay.

Each instance has its own key cache, Redis connections, spend writer and relay, wired
the way the app factory is asked to wire them; calls go through the relay to the fake
upstream. This proves the limits hold across instances before the process-level
acceptance tests (``test_limits_multi.py``) run them as separate ``passgate`` processes.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from passgate.accounting.meter import Meter
from passgate.accounting.pricing import load_catalogs
from passgate.accounting.writer import SpendWriter
from passgate.api.key_schemas import GenerateKeyRequest
from passgate.api.key_service import KeyService
from passgate.auth.authenticator import KeyAuthenticator
from passgate.auth.cache import KeyCache
from passgate.auth.guards import KeyAccessGuard
from passgate.auth.key_state import KeyStateLoader
from passgate.auth.master import MasterKey
from passgate.config import Settings
from passgate.exchange import Usage
from passgate.limits.backend import to_nano
from passgate.limits.directory import key_counter
from passgate.limits.runtime import Limits, build_limits
from passgate.providers.registry import enabled
from passgate.proxy.body import BodyPolicy
from passgate.proxy.hooks import Pipeline
from passgate.proxy.relay import Relay
from passgate.proxy.upstream import Upstream, UpstreamOptions
from passgate.storage.db import session_factory
from passgate.storage.models import EndUser, Key
from passgate.types import Message
from tests.support.databases import fresh_postgres, migrated_engine
from tests.support.fake_mistral import FakeMistral
from tests.support.fake_mistral_payloads import COMPLETION_TOKENS, PROMPT_TOKENS, TOTAL_TOKENS
from tests.support.services import REDIS_URL, require_redis
from tests.unit.limits.test_redis import RedisRelay

MASTER = "sk-master-pipeline-0123456789"
MODEL = "mistral-small-latest"
CATALOGS = load_catalogs()
_PRICE = CATALOGS.lookup("mistral", MODEL)
assert _PRICE is not None
COST = _PRICE.cost(Usage(PROMPT_TOKENS, COMPLETION_TOKENS, total_tokens=TOTAL_TOKENS))
BODY = orjson.dumps({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]})


@dataclass
class Instance:
    relay: Relay
    limits: Limits
    cache: KeyCache
    writer: SpendWriter
    upstream: Upstream

    async def stop(self) -> None:
        await self.limits.stop()
        await self.writer.stop()
        await self.upstream.stop()


async def start_instance(
    settings: Settings, engine: AsyncEngine, sessions: async_sessionmaker[AsyncSession], prefix: str
) -> Instance:
    """One gateway's pipeline, wired as the app factory should wire it."""
    cache = KeyCache(KeyStateLoader(sessions), ttl=5.0)
    limits = build_limits(
        settings,
        sessions,
        CATALOGS,
        on_key_invalidated=cache.invalidate,
        on_resync=cache.clear,
        prefix=prefix,
    )
    writer = SpendWriter(engine, flush_interval=0.05)
    upstream = Upstream(UpstreamOptions.from_settings(settings))
    pipeline = Pipeline.of(
        KeyAuthenticator(MasterKey(MASTER), cache),
        [KeyAccessGuard(), limits.guard, writer],
        metering=Meter(CATALOGS),
    )
    relay = Relay(
        b"/mistral",
        enabled(settings.upstreams())[0],
        upstream,
        pipeline,
        BodyPolicy(settings.max_body_bytes, settings.inspect_body_bytes),
        settings.first_byte_timeout,
        settings.idle_timeout,
    )
    await upstream.start()
    writer.start()
    await limits.start()
    return Instance(relay, limits, cache, writer, upstream)


async def call(
    instance: Instance, key: str, body: bytes = BODY, headers: tuple[tuple[bytes, bytes], ...] = ()
) -> tuple[int, dict[bytes, bytes], Any]:
    """One pass-through call straight into the relay's ASGI interface."""
    done = asyncio.Event()
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/mistral/v1/chat/completions",
        "raw_path": b"/mistral/v1/chat/completions",
        "query_string": b"",
        "headers": [
            (b"authorization", b"Bearer " + key.encode()),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *headers,
        ],
    }
    first = True

    async def receive() -> dict[str, Any]:
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(dict(message))

    await instance.relay(scope, receive, send)
    done.set()
    start = sent[0]
    data = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], dict(start["headers"]), data


@dataclass
class Cluster:
    a: Instance
    b: Instance
    sessions: async_sessionmaker[AsyncSession]
    redis: Redis
    prefix: str

    async def new_key(self, **fields: Any) -> tuple[str, str]:
        service = KeyService(self.sessions, self.a.cache, MasterKey(MASTER))
        secret, row = await service.generate(GenerateKeyRequest.model_validate(fields))
        return secret, row.token


Start = Callable[..., Awaitable[Cluster]]


@pytest.fixture
async def cluster(fake_upstream: FakeMistral) -> AsyncIterator[Start]:
    require_redis()
    fake_upstream.reset()
    prefix = f"passgate-test-{secrets.token_hex(6)}:"
    started: list[Instance] = []
    redis = Redis.from_url(REDIS_URL, decode_responses=True)
    async with fresh_postgres() as url, migrated_engine(url) as engine:
        sessions = session_factory(engine)

        async def start(**options: Any) -> Cluster:
            options.setdefault("redis_url", REDIS_URL)
            settings = Settings.model_validate(
                {
                    "mistral_api_base": fake_upstream.url,
                    "mistral_api_key": "mk-up",
                    "master_key": MASTER,
                    **options,
                }
            )
            for _ in range(2):
                started.append(await start_instance(settings, engine, sessions, prefix))
            return Cluster(started[-2], started[-1], sessions, redis, prefix)

        try:
            yield start
        finally:
            for instance in started:
                await instance.stop()
            keys = [key async for key in redis.scan_iter(match=prefix + "*")]
            if keys:
                await redis.delete(*keys)
            await redis.aclose()


async def test_a_budget_for_ten_calls_admits_exactly_ten_across_instances(cluster: Start) -> None:
    gw = await cluster(budget_estimate_usd=COST)
    secret, token = await gw.new_key(max_budget=10 * COST)
    results = await asyncio.gather(*(call(gw.a if i % 2 else gw.b, secret) for i in range(200)))
    statuses = [status for status, _, _ in results]
    assert statuses.count(200) == 10
    assert statuses.count(429) == 190
    refusal = orjson.loads(next(body for status, _, body in results if status == 429))
    assert refusal["error"]["code"] == "budget_exceeded"
    assert token not in refusal["error"]["message"]

    await gw.a.writer.flush()
    await gw.b.writer.flush()
    async with gw.sessions() as session:
        row = await session.get(Key, token)
    assert row is not None and row.spend == pytest.approx(10 * COST, rel=1e-12)
    counter = await gw.redis.hgetall(f"{gw.prefix}bud:key:{key_counter(token)}")
    assert (int(counter["spend"]), int(counter["reserved"])) == (10 * to_nano(COST), 0)
    assert await gw.redis.zcard(f"{gw.prefix}res:key:{key_counter(token)}") == 0


async def test_rpm_thirty_across_instances(cluster: Start) -> None:
    gw = await cluster()
    secret, _ = await gw.new_key(rpm_limit=30, tpm_limit=10**6)
    results = await asyncio.gather(*(call(gw.a if i % 2 else gw.b, secret) for i in range(100)))
    assert [s for s, _, _ in results].count(200) == 30
    refused = next(headers for status, headers, _ in results if status == 429)
    assert refused[b"x-ratelimit-limit-requests"] == b"30"
    assert refused[b"x-ratelimit-remaining-requests"] == b"0"
    assert refused[b"x-ratelimit-limit-tokens"] == b"1000000"
    assert int(refused[b"retry-after"]) >= 1


async def test_parallel_two_with_a_slow_stream(cluster: Start, fake_upstream: FakeMistral) -> None:
    gw = await cluster()
    secret, _ = await gw.new_key(max_parallel_requests=2)
    fake_upstream.configure(hold_last_event=True)
    stream = orjson.dumps({"model": MODEL, "stream": True, "messages": []})
    first = asyncio.ensure_future(call(gw.a, secret, stream))
    second = asyncio.ensure_future(call(gw.b, secret, stream))
    while sum(1 for r in fake_upstream.requests if r.holding.is_set()) < 2:
        await asyncio.sleep(0.01)
    status, headers, _ = await call(gw.b, secret)
    assert status == 429 and headers[b"retry-after"] == b"1"
    fake_upstream.configure(hold_last_event=False)
    fake_upstream.release_last_event()
    assert (await first)[0] == 200 and (await second)[0] == 200
    assert (await call(gw.a, secret))[0] == 200


async def test_tpm_refuses_once_the_window_is_spent(cluster: Start) -> None:
    gw = await cluster()
    secret, _ = await gw.new_key(tpm_limit=2 * TOTAL_TOKENS)
    assert (await call(gw.a, secret))[0] == 200
    assert (await call(gw.b, secret))[0] == 200
    status, headers, _ = await call(gw.a, secret)
    assert status == 429
    assert headers[b"x-ratelimit-remaining-tokens"] == b"0"


async def test_a_key_blocked_on_one_instance_is_refused_by_the_other(cluster: Start) -> None:
    gw = await cluster()
    secret, token = await gw.new_key()
    assert (await call(gw.b, secret))[0] == 200  # B now holds the key in its cache
    service = KeyService(gw.sessions, gw.a.cache, MasterKey(MASTER))
    await service.set_blocked(token, True)
    started = time.perf_counter()
    await gw.a.limits.key_changed(token)
    while True:
        status, _, body = await call(gw.b, secret)
        if status == 401:
            break
        assert time.perf_counter() - started < 1.0, "B still serves the blocked key after 1 s"
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - started
    assert orjson.loads(body)["error"]["code"] == "key_blocked"
    print(f"\nkey blocked on A refused by B after {elapsed * 1000:.1f} ms")


async def test_end_user_budget_alice_refused_bob_served(cluster: Start) -> None:
    gw = await cluster(budget_estimate_usd=COST)
    secret, _ = await gw.new_key()
    async with gw.sessions.begin() as session:
        session.add_all(
            [
                EndUser(end_user_id="alice", max_budget=COST, spend=COST),
                EndUser(end_user_id="bob", max_budget=1.0),
            ]
        )
    alice = ((b"x-end-user-id", b"alice"),)
    status, _, body = await call(gw.a, secret, headers=alice)
    assert status == 429 and "end user 'alice'" in orjson.loads(body)["error"]["message"]
    status, _, _ = await call(gw.b, secret, headers=((b"x-end-user-id", b"bob"),))
    assert status == 200


@pytest.fixture
async def redis_relay() -> AsyncIterator[RedisRelay]:
    relay = RedisRelay()
    await relay.up()
    yield relay
    if relay.is_up:
        await relay.down()


async def test_redis_down_mid_run_fail_open_serves_then_limits_resume(
    cluster: Start, redis_relay: RedisRelay
) -> None:
    gw = await cluster(redis_url=redis_relay.url, redis_fail_mode="open")
    secret, _ = await gw.new_key(rpm_limit=3)
    assert [(await call(gw.a, secret))[0] for _ in range(4)] == [200, 200, 200, 429]
    await redis_relay.down()
    during = [(await call(gw.a if i % 2 else gw.b, secret))[0] for i in range(6)]
    assert during == [200] * 6  # limits bypassed (and counted), never a 500
    await redis_relay.up()
    deadline = time.monotonic() + 5.0
    while (status := (await call(gw.b, secret))[0]) == 200:
        assert time.monotonic() < deadline, "rpm not enforced again after Redis returned"
        await asyncio.sleep(0.1)
    assert status == 429


async def test_redis_down_mid_run_fail_closed_answers_503_then_recovers(
    cluster: Start, redis_relay: RedisRelay
) -> None:
    gw = await cluster(redis_url=redis_relay.url, redis_fail_mode="closed")
    secret, _ = await gw.new_key(rpm_limit=100)
    assert (await call(gw.a, secret))[0] == 200
    await redis_relay.down()
    status, _, body = await call(gw.b, secret)
    assert status == 503
    error = orjson.loads(body)["error"]
    assert error["code"] == "limits_unavailable" and "Redis" in error["message"]
    await redis_relay.up()
    deadline = time.monotonic() + 5.0
    while (await call(gw.a, secret))[0] == 503:
        assert time.monotonic() < deadline, "still refusing after Redis returned"
        await asyncio.sleep(0.1)
