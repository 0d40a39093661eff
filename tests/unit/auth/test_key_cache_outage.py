"""The key cache through a key store outage: known keys keep working, unknown ones fail."""

from __future__ import annotations

import asyncio
import logging

import pytest

from passgate.auth.cache import KeyCache
from tests.unit.auth.test_key_cache import Clock, Store


@pytest.fixture
def store() -> Store:
    return Store()


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def test_a_failed_reload_serves_the_last_state_and_retries_later(
    store: Store, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    state = store.put("t1", "a")
    cache = KeyCache(store, ttl=5.0, clock=clock, retry_after=1.0)
    await cache.get("t1")
    clock.now += 5.0
    store.fail = ConnectionRefusedError("db down for 0123456789abcdef")
    with caplog.at_level(logging.WARNING, logger="passgate.auth.cache"):
        assert await cache.get("t1") is state
    assert "ConnectionRefusedError" in caplog.text and "0123456789abcdef" not in caplog.text
    for _ in range(20):  # within retry_after: no new attempt on the store
        assert await cache.get("t1") is state
    assert store.calls == ["t1", "t1"]
    clock.now += 1.0
    assert await cache.get("t1") is state
    assert store.calls == ["t1", "t1", "t1"]
    assert cache.stale_served == 2


async def test_the_store_back_brings_fresh_states(store: Store, clock: Clock) -> None:
    store.put("t1", "a")
    cache = KeyCache(store, ttl=5.0, clock=clock, retry_after=1.0)
    await cache.get("t1")
    clock.now += 5.0
    store.fail = ConnectionRefusedError("db down")
    await cache.get("t1")
    store.fail = None
    newer = store.put("t1", "b")
    clock.now += 1.0
    assert await cache.get("t1") is newer


async def test_a_slow_reload_does_not_hold_requests_with_a_known_key(
    store: Store, clock: Clock
) -> None:
    state = store.put("t1", "a")
    cache = KeyCache(store, ttl=5.0, clock=clock, stale_wait=0.05, retry_after=1.0)
    await cache.get("t1")
    clock.now += 5.0
    store.gate = asyncio.Event()  # the store hangs
    assert await cache.get("t1") is state
    assert await asyncio.wait_for(cache.get("t1"), 0.01) is state  # no second wait
    store.gate.set()
    await asyncio.sleep(0.01)  # the held load completes and lands
    clock.now += 2.0  # past retry_after, within the ttl of the load that landed late
    assert await cache.get("t1") is state
    assert store.calls == ["t1", "t1"]


async def test_a_key_never_loaded_still_fails(store: Store, clock: Clock) -> None:
    store.put("t1", "a")
    store.fail = ConnectionRefusedError("db down")
    cache = KeyCache(store, ttl=5.0, clock=clock)
    with pytest.raises(ConnectionRefusedError):
        await cache.get("t1")


async def test_an_invalidated_key_is_not_served_stale(store: Store, clock: Clock) -> None:
    store.put("t1", "a")
    cache = KeyCache(store, ttl=5.0, clock=clock)
    await cache.get("t1")
    cache.invalidate("t1")
    store.fail = ConnectionRefusedError("db down")
    with pytest.raises(ConnectionRefusedError):
        await cache.get("t1")


async def test_an_unknown_key_stays_unknown_during_an_outage(store: Store, clock: Clock) -> None:
    cache = KeyCache(store, ttl=5.0, clock=clock)
    assert await cache.get("nope") is None
    clock.now += 5.0
    store.fail = ConnectionRefusedError("db down")
    assert await cache.get("nope") is None


def test_rejects_non_positive_outage_settings(store: Store) -> None:
    with pytest.raises(ValueError, match="stale_wait"):
        KeyCache(store, ttl=1.0, stale_wait=0)
    with pytest.raises(ValueError, match="retry_after"):
        KeyCache(store, ttl=1.0, retry_after=-1)


async def test_expire_reloads_at_once_but_keeps_the_state_for_an_outage(
    store: Store, clock: Clock
) -> None:
    state = store.put("t1", "a")
    cache = KeyCache(store, ttl=60.0, clock=clock)
    assert await cache.get("t1") is state
    newer = store.put("t1", "b")
    cache.expire("t1")  # a change learnt from the key-change feed
    assert await cache.get("t1") is newer
    assert store.calls == ["t1", "t1"]
    store.fail = ConnectionRefusedError("db down")
    cache.expire_all()
    assert await cache.get("t1") is newer  # the store is down: the last state is served
    cache.invalidate("t1")
    with pytest.raises(ConnectionRefusedError):
        await cache.get("t1")
