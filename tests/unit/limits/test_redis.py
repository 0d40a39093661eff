"""Redis-only behaviour: leases, script reloads, Redis going away and coming back, broadcasts.

Redis "going away" is a TCP relay in front of the machine's Redis that the test
closes (connections cut, port refusing) and reopens on the same port; the real
redis-server, which others use, is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from passgate.errors import GatewayError
from passgate.exchange import Exchange, Usage
from passgate.limits.backend import (
    AdmitRequest,
    BudgetScope,
    KeyLimits,
    LimitsUnavailable,
    RateState,
    ScopeKind,
    Seed,
    Ticket,
    to_nano,
)
from passgate.limits.directory import BudgetDirectory
from passgate.limits.estimate import Estimator
from passgate.limits.events import KeyEvents
from passgate.limits.guard import TICKET, FailMode, LimitsGuard
from passgate.limits.redis_backend import RedisCounters, redis_client
from passgate.limits.store import BudgetRow
from passgate.principal import Principal
from tests.support.services import REDIS_URL, require_redis
from tests.unit.limits.test_backends import T0, Clock, Seeds


def ticket_of(ex: Exchange) -> Ticket:
    ticket = TICKET.get(ex)
    assert ticket is not None
    return ticket


class RedisRelay:
    """A TCP relay to the real Redis that can be taken down and brought back on its port."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def is_up(self) -> bool:
        return self._server is not None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.close()
        await self._server.wait_closed()
        self._server = None
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def kick(self) -> None:
        """Cut every connection but keep accepting new ones (like CLIENT KILL)."""
        for writer in list(self._writers):
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", 6379)
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}
        self._tasks.discard(task)


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    require_redis()
    name = f"passgate-test-{secrets.token_hex(6)}:"
    yield name
    client = Redis.from_url(REDIS_URL)
    keys = [key async for key in client.scan_iter(match=name + "*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


Connect = Callable[[str], Redis]


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """Redis clients (as the gateway makes them), all closed when the test ends."""
    made: list[Redis] = []

    def make(url: str) -> Redis:
        made.append(redis_client(url))
        return made[-1]

    yield make
    for client in made:
        await client.aclose()


@pytest.fixture
async def relay() -> AsyncIterator[RedisRelay]:
    require_redis()
    proxy = RedisRelay()
    await proxy.up()
    yield proxy
    with contextlib.suppress(AssertionError):
        await proxy.down()


def scope(name: str, max_usd: float) -> BudgetScope:
    return BudgetScope("team", name, f"team '{name}'", f"team:{name}", to_nano(max_usd))


async def test_leases_of_a_crashed_instance_expire(prefix: str, connect: Connect) -> None:
    clock = Clock()
    crashed = RedisCounters(connect(REDIS_URL), Seeds(), prefix, clock, lease_ttl=30.0)
    alive = RedisCounters(connect(REDIS_URL), Seeds(), prefix, clock, lease_ttl=30.0)
    key, team = KeyLimits("k-lease", parallel=1), scope("lease", 1.0)
    request = AdmitRequest(key, (team,), to_nano(1.0))
    assert (await crashed.admit(request)).ticket is not None  # never finished
    assert (await alive.admit(request)).reason == "parallel"

    clock.advance(29.0)
    await alive.maintain()  # refreshes only its own leases (it holds none)
    assert (await alive.admit(request)).reason == "parallel"
    clock.advance(1.0)
    ok = await alive.admit(request)
    assert ok.ticket is not None
    state = await alive.budget_state(team)
    assert state is not None
    assert state.reserved == to_nano(1.0)  # the crashed reservation was given back


async def test_leases_of_a_live_instance_are_refreshed(prefix: str, connect: Connect) -> None:
    clock = Clock()
    counters = RedisCounters(connect(REDIS_URL), Seeds(), prefix, clock, lease_ttl=30.0)
    request = AdmitRequest(KeyLimits("k-long", parallel=1), (scope("long", 1.0),), to_nano(0.5))
    long_call = await counters.admit(request)
    assert long_call.ticket is not None
    for _ in range(4):  # a two-minute stream, refreshed every 20 s
        clock.advance(20.0)
        await counters.maintain()
        assert (await counters.admit(request)).reason == "parallel"
    await counters.finish(long_call.ticket, 0, to_nano(0.4))
    assert (await counters.admit(request)).ticket is not None


async def test_scripts_are_reloaded_when_redis_does_not_know_them(
    prefix: str, connect: Connect
) -> None:
    counters = RedisCounters(connect(REDIS_URL), Seeds(), prefix, Clock())
    # a restarted Redis has an empty script cache: EVALSHA fails and the script is loaded
    counters._admit.sha = "0" * 40
    counters._finish.sha = "0" * 40
    admitted = await counters.admit(AdmitRequest(KeyLimits("k-sha", parallel=1)))
    assert admitted.ticket is not None
    await counters.finish(admitted.ticket, 0, 0)
    assert (await counters.admit(AdmitRequest(KeyLimits("k-sha", parallel=1)))).ticket


def _guard(counters: RedisCounters, mode: FailMode, bypassed: list[str]) -> LimitsGuard:
    class NoRows:
        async def load(self, kind: ScopeKind, id: str) -> BudgetRow | None:
            return None

    return LimitsGuard(
        counters, BudgetDirectory(NoRows()), Estimator(lambda _p, _m: None), mode, bypassed.append
    )


def _exchange(principal: Principal | None = None) -> Exchange:
    principal = principal or Principal(
        kind="virtual", token="a" * 64, rpm_limit=100, max_parallel_requests=1
    )
    return Exchange(
        "r",
        "POST",
        "/mistral/v1/chat/completions",
        "/v1/chat/completions",
        "mistral",
        time.time(),
        time.perf_counter(),
        principal=principal,
    )


async def test_redis_down_fail_open_serves_and_counts_the_bypass(
    relay: RedisRelay, prefix: str, connect: Connect
) -> None:
    counters = RedisCounters(connect(relay.url), Seeds(), prefix, Clock(), cooldown=0.0)
    bypassed: list[str] = []
    guard = _guard(counters, "open", bypassed)
    ex = _exchange()
    await guard.admit(ex)
    assert TICKET.get(ex) is not None
    await guard.cleanup(ex)

    await relay.down()
    during = _exchange()
    await guard.admit(during)  # served: no exception
    assert ticket_of(during).id.startswith("bypass-")  # holds nothing, counts usage later
    assert bypassed == ["Redis is unreachable"]
    await guard.cleanup(during)

    await relay.up()  # Redis is back: counters resume without a restart
    after, second = _exchange(), _exchange()
    await guard.admit(after)
    assert TICKET.get(after) is not None
    with pytest.raises(GatewayError) as refused:
        await guard.admit(second)  # max_parallel_requests=1 is enforced again
    assert refused.value.status == 429
    assert bypassed == ["Redis is unreachable"]
    await guard.cleanup(after)


async def test_redis_down_fail_closed_refuses_with_503(
    relay: RedisRelay, prefix: str, connect: Connect
) -> None:
    counters = RedisCounters(connect(relay.url), Seeds(), prefix, Clock(), cooldown=0.0)
    bypassed: list[str] = []
    guard = _guard(counters, "closed", bypassed)
    await relay.down()
    with pytest.raises(GatewayError) as refused:
        await guard.admit(_exchange())
    assert refused.value.status == 503
    assert refused.value.code == "limits_unavailable"
    assert "cannot be checked" in refused.value.message
    assert bypassed == []
    await relay.up()
    ex = _exchange()
    await guard.admit(ex)
    assert TICKET.get(ex) is not None
    await guard.cleanup(ex)


async def test_a_finish_during_an_outage_is_applied_when_redis_returns(
    relay: RedisRelay, prefix: str, connect: Connect
) -> None:
    clock = Clock()
    counters = RedisCounters(connect(relay.url), Seeds(), prefix, clock, cooldown=0.0)
    team = scope("outage", 1.0)
    admitted = await counters.admit(AdmitRequest(budgets=(team,), amount=to_nano(0.5)))
    assert admitted.ticket is not None
    await relay.down()
    with pytest.raises(LimitsUnavailable):
        await counters.finish(admitted.ticket, 0, to_nano(0.3))
    assert counters.pending == 1
    with pytest.raises(LimitsUnavailable):
        await counters.maintain()
    await relay.up()
    await counters.maintain()
    assert counters.pending == 0
    state = await counters.budget_state(team)
    assert state is not None
    assert (state.spent, state.reserved) == (to_nano(0.3), 0)


async def test_the_breaker_skips_redis_during_the_cooldown(
    relay: RedisRelay, prefix: str, connect: Connect
) -> None:
    counters = RedisCounters(connect(relay.url), Seeds(), prefix, Clock(), cooldown=60.0)
    await relay.down()
    with pytest.raises(LimitsUnavailable):
        await counters.admit(AdmitRequest(KeyLimits("k-breaker", rpm=1)))
    await relay.up()
    with pytest.raises(LimitsUnavailable):  # still cooling down: no connection attempted
        await counters.admit(AdmitRequest(KeyLimits("k-breaker", rpm=1)))


async def test_key_invalidation_reaches_another_instance(prefix: str, connect: Connect) -> None:
    received: asyncio.Queue[tuple[str, float]] = asyncio.Queue()
    scopes: list[tuple[str, str]] = []
    instance_a = KeyEvents(connect(REDIS_URL), lambda _t: None, channel=prefix + "inv")
    instance_b = KeyEvents(
        connect(REDIS_URL),
        lambda token: received.put_nowait((token, time.perf_counter())),
        on_scope=lambda kind, id: scopes.append((kind, id)),
        channel=prefix + "inv",
    )
    await instance_a.start()
    await instance_b.start()
    try:
        latencies = []
        for i in range(20):
            sent = time.perf_counter()
            assert await instance_a.publish(f"{i:064x}")
            token, arrived = await asyncio.wait_for(received.get(), timeout=1.0)
            assert token == f"{i:064x}"
            latencies.append(arrived - sent)
        assert await instance_a.publish_scope("end_user", "alice")
        for _ in range(100):
            if scopes:
                break
            await asyncio.sleep(0.01)
        assert scopes == [("end_user", "alice")]
    finally:
        await instance_a.stop()
        await instance_b.stop()
    latencies.sort()
    print(
        f"\ninvalidation latency over Redis pub/sub: median {latencies[10] * 1000:.2f} ms, "
        f"max {latencies[-1] * 1000:.2f} ms"
    )


async def test_subscribers_resync_after_redis_returns(
    relay: RedisRelay, prefix: str, connect: Connect
) -> None:
    resyncs: list[bool] = []
    received: list[str] = []
    events = KeyEvents(
        connect(relay.url),
        received.append,
        on_resync=lambda: resyncs.append(True),
        channel=prefix + "inv",
        retry_delay=0.05,
    )
    publisher = KeyEvents(connect(REDIS_URL), lambda _t: None, channel=prefix + "inv")
    await events.start()
    await relay.down()
    assert not await KeyEvents(connect(relay.url), print).publish("x")
    await relay.up()
    for _ in range(200):
        if resyncs:
            break
        await asyncio.sleep(0.01)
    assert resyncs == [True]
    assert await publisher.publish("b" * 64)
    for _ in range(100):
        if received:
            break
        await asyncio.sleep(0.01)
    assert received == ["b" * 64]
    await events.stop()
    await publisher.stop()


async def test_budget_seed_uses_the_period_grid(prefix: str, connect: Connect) -> None:
    clock = Clock(T0 + 100)
    seeds = Seeds({"team:grid": Seed(to_nano(5.0), T0)})
    counters = RedisCounters(connect(REDIS_URL), seeds, prefix, clock)
    grid = BudgetScope("team", "grid", "team 'grid'", "team:grid", to_nano(5.0), 60.0)
    # the seeded reset time passed while the counter was absent: a new period has begun
    admitted = await counters.admit(AdmitRequest(budgets=(grid,), amount=to_nano(1.0)))
    assert admitted.ticket is not None
    state = await counters.budget_state(grid)
    assert state is not None
    assert (state.spent, state.reset_at) == (0, T0 + 120)


async def test_subscribers_resync_after_a_dropped_connection(
    relay: RedisRelay, prefix: str, connect: Connect
) -> None:
    resyncs: list[bool] = []
    received: list[str] = []
    events = KeyEvents(
        connect(relay.url),
        received.append,
        on_resync=lambda: resyncs.append(True),
        channel=prefix + "inv",
        retry_delay=0.05,
    )
    publisher = KeyEvents(connect(REDIS_URL), lambda _t: None, channel=prefix + "inv")
    await events.start()
    await relay.kick()  # redis-py reconnects and resubscribes by itself
    for _ in range(200):
        if resyncs:
            break
        await asyncio.sleep(0.01)
    assert resyncs == [True]
    for _ in range(100):
        assert await publisher.publish("c" * 64)
        await asyncio.sleep(0.01)
        if received:
            break
    assert received[0] == "c" * 64
    await events.stop()
    await publisher.stop()


async def test_spend_served_during_an_outage_is_counted_when_redis_returns(
    relay: RedisRelay, prefix: str, connect: Connect
) -> None:
    class TeamRows:
        async def load(self, kind: ScopeKind, id: str) -> BudgetRow | None:
            return BudgetRow(1.0, None, 0.0, None) if (kind, id) == ("team", "t-out") else None

    directory = BudgetDirectory(TeamRows())
    counters = RedisCounters(connect(relay.url), directory.seed, prefix, Clock(), cooldown=0.0)
    guard = LimitsGuard(counters, directory, Estimator(lambda _p, _m: None), "open")
    principal = Principal(kind="virtual", token="b" * 64, team_id="t-out", tpm_limit=1000)
    before = _exchange(principal)
    await guard.admit(before)
    before.cost = 0.25
    await guard.cleanup(before)

    await relay.down()
    during = _exchange(principal)
    await guard.admit(during)
    during.cost, during.usage = 0.5, Usage(total_tokens=30)
    await guard.cleanup(during)
    assert counters.pending == 1

    await counters.start()  # upkeep runs every 20 s, or at once when Redis returns
    await relay.up()
    after = _exchange(principal)
    await guard.admit(after)  # the first success after the outage wakes the upkeep
    for _ in range(200):
        if counters.pending == 0:
            break
        await asyncio.sleep(0.01)
    assert counters.pending == 0
    await counters.stop()
    (team,) = await directory.scopes(principal, None)
    state = await counters.budget_state(team)
    assert state is not None
    assert state.spent == to_nano(0.75)
    assert isinstance(TICKET.get(after), Ticket)
    assert (await counters.admit(AdmitRequest(ticket_of(after).key))).tokens_used == 30


async def test_a_repeated_delivery_of_a_clamped_reservation_takes_it_once(
    prefix: str, connect: Connect
) -> None:
    counters = RedisCounters(connect(REDIS_URL), Seeds(), prefix, Clock())
    team = scope("clamped", 1.0)
    request = AdmitRequest(budgets=(team,), amount=to_nano(5.0))
    await counters._seed_missing([team])
    keys, args = counters._admit_call(request, "ticket-2", T0)
    first, again = (
        await counters._admit(keys=keys, args=args),
        await counters._admit(keys=keys, args=args),
    )
    assert (first[0], again[0]) == ("ok", "ok")
    assert int(first[3]) == int(again[3]) == to_nano(1.0)
    state = await counters.budget_state(team)
    assert state is not None and state.reserved == to_nano(1.0)
    await counters.finish(Ticket("ticket-2", None, (team,), to_nano(1.0)), 0, 300)
    state = await counters.budget_state(team)
    assert state is not None and (state.spent, state.reserved) == (300, 0)


async def test_a_repeated_delivery_counts_nothing_twice(prefix: str, connect: Connect) -> None:
    counters = RedisCounters(connect(REDIS_URL), Seeds(), prefix, Clock())
    team = scope("twice", 1.0)
    request = AdmitRequest(KeyLimits("k-twice", rpm=5, tpm=100, parallel=2), (team,), 1000)
    await counters._seed_missing([team])
    # the same script sent twice (a client retry after a lost reply) takes everything once
    keys, args = counters._admit_call(request, "ticket-1", T0)
    first, again = (
        await counters._admit(keys=keys, args=args),
        await counters._admit(keys=keys, args=args),
    )
    assert (first[0], again[0]) == ("ok", "ok")
    state = await counters.budget_state(team)
    assert state is not None and state.reserved == 1000
    ticket = Ticket("ticket-1", request.key, request.budgets, request.amount)
    await counters.finish(ticket, 7, 400)
    await counters.finish(ticket, 7, 400)  # e.g. a queued retry of a finish that did land
    state = await counters.budget_state(team)
    assert state is not None and (state.spent, state.reserved) == (400, 0)
    admitted = await counters.admit(request)
    assert (admitted.requests_used, admitted.tokens_used) == (1, 7)


async def test_rate_state_writes_nothing_and_skips_expired_leases(
    prefix: str, connect: Connect
) -> None:
    clock = Clock()
    client = connect(REDIS_URL)
    crashed = RedisCounters(client, Seeds(), prefix, clock, lease_ttl=30.0)
    key = KeyLimits("k-read", rpm=10, parallel=2)
    assert (await crashed.admit(AdmitRequest(key))).ticket is not None  # never finished
    names = sorted([name async for name in client.scan_iter(match=prefix + "*")])
    assert await crashed.rate_state("k-unknown") == RateState(0, 0, 0)
    assert (await crashed.rate_state(key.counter)).parallel == 1
    clock.advance(30.0)  # the lease ran out: the slot is free though still stored
    assert await crashed.rate_state(key.counter) == RateState(1, 0, 0)
    clock.advance(30.0)  # the request left the window: not counted, not trimmed
    assert await crashed.rate_state(key.counter) == RateState(0, 0, 0)
    assert sorted([name async for name in client.scan_iter(match=prefix + "*")]) == names
    assert await client.zcard(f"{prefix}rpm:{key.counter}") == 1
    assert await client.zcard(f"{prefix}par:{key.counter}") == 1
