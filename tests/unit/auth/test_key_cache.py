"""The in-process key cache: TTL, invalidation, negative entries, single flight."""

from __future__ import annotations

import asyncio

import pytest

from passgate.auth.cache import KeyCache
from passgate.auth.key_state import KeyState
from passgate.principal import Principal


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Store:
    """A loader over a dict that counts its calls and can be held or made to fail."""

    def __init__(self) -> None:
        self.keys: dict[str, KeyState] = {}
        self.calls: list[str] = []
        self.gate: asyncio.Event | None = None
        self.fail: Exception | None = None
        self.started = asyncio.Event()

    def put(self, token: str, alias: str) -> KeyState:
        state = KeyState(Principal(kind="virtual", token=token, key_alias=alias))
        self.keys[token] = state
        return state

    async def __call__(self, token: str) -> KeyState | None:
        self.calls.append(token)
        self.started.set()
        snapshot = self.keys.get(token)
        if self.gate is not None:
            await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return snapshot


@pytest.fixture
def store() -> Store:
    return Store()


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def test_hit_within_ttl_does_not_reload(store: Store, clock: Clock) -> None:
    state = store.put("t1", "a")
    cache = KeyCache(store, ttl=5.0, clock=clock)
    assert await cache.get("t1") is state
    clock.now += 4.9
    assert await cache.get("t1") is state
    assert store.calls == ["t1"]


async def test_entry_is_reloaded_after_ttl(store: Store, clock: Clock) -> None:
    store.put("t1", "a")
    cache = KeyCache(store, ttl=5.0, clock=clock)
    await cache.get("t1")
    newer = store.put("t1", "b")
    clock.now += 5.0
    assert await cache.get("t1") is newer
    assert store.calls == ["t1", "t1"]


async def test_invalidate_applies_a_change_at_once(store: Store, clock: Clock) -> None:
    store.put("t1", "a")
    cache = KeyCache(store, ttl=5.0, clock=clock)
    await cache.get("t1")
    del store.keys["t1"]
    cache.invalidate("t1")
    assert await cache.get("t1") is None


async def test_unknown_keys_are_cached_negatively(store: Store, clock: Clock) -> None:
    cache = KeyCache(store, ttl=5.0, negative_ttl=1.0, clock=clock)
    for _ in range(50):
        assert await cache.get("nope") is None
    assert store.calls == ["nope"]
    clock.now += 1.0
    assert await cache.get("nope") is None
    assert store.calls == ["nope", "nope"]


async def test_concurrent_misses_share_one_load(store: Store, clock: Clock) -> None:
    state = store.put("t1", "a")
    store.gate = asyncio.Event()
    cache = KeyCache(store, ttl=5.0, clock=clock)
    waiters = [asyncio.ensure_future(cache.get("t1")) for _ in range(20)]
    await store.started.wait()
    store.gate.set()
    assert await asyncio.gather(*waiters) == [state] * 20
    assert store.calls == ["t1"]


async def test_a_load_under_way_during_invalidate_is_not_stored(store: Store, clock: Clock) -> None:
    store.put("t1", "old")
    store.gate = asyncio.Event()
    cache = KeyCache(store, ttl=5.0, clock=clock)
    stale = asyncio.ensure_future(cache.get("t1"))
    await store.started.wait()
    fresh = store.put("t1", "new")
    cache.invalidate("t1")
    store.gate.set()
    old = await stale
    assert old is not None and old.principal.key_alias == "old"
    assert await cache.get("t1") is fresh


async def test_errors_reach_every_waiter_and_are_not_cached(store: Store, clock: Clock) -> None:
    state = store.put("t1", "a")
    store.gate = asyncio.Event()
    store.fail = ConnectionRefusedError("db down")
    cache = KeyCache(store, ttl=5.0, clock=clock)
    waiters = [asyncio.ensure_future(cache.get("t1")) for _ in range(3)]
    await store.started.wait()
    store.gate.set()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, ConnectionRefusedError) for r in results)
    store.fail = None
    store.gate = None
    assert await cache.get("t1") is state
    assert len(store.calls) == 2


async def test_a_cancelled_waiter_does_not_cancel_the_shared_load(
    store: Store, clock: Clock
) -> None:
    state = store.put("t1", "a")
    store.gate = asyncio.Event()
    cache = KeyCache(store, ttl=5.0, clock=clock)
    first = asyncio.ensure_future(cache.get("t1"))
    second = asyncio.ensure_future(cache.get("t1"))
    await store.started.wait()
    first.cancel()
    store.gate.set()
    assert await second is state
    assert first.cancelled()


async def test_size_is_bounded_oldest_first(store: Store, clock: Clock) -> None:
    cache = KeyCache(store, ttl=5.0, max_entries=3, clock=clock)
    for token in ("a", "b", "c", "d"):
        await cache.get(token)
    assert len(cache) == 3
    await cache.get("a")  # evicted: loads again
    assert store.calls == ["a", "b", "c", "d", "a"]


def test_rejects_a_non_positive_ttl(store: Store) -> None:
    with pytest.raises(ValueError, match="ttl"):
        KeyCache(store, ttl=0)
