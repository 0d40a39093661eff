"""In-process cache of key states, so a known key never costs a database round trip.

Entries live ``ttl`` seconds (at most 5 s: the bound on how stale a change made on
another instance can be); changes made on this instance call ``invalidate`` and apply
at once. Unknown keys are cached too (negative entries), so a flood of one bad key
does not reach the database, and concurrent misses for one key share a single load.

A key store outage must not lock out the keys already known: when the reload of an
expired entry fails, or takes longer than ``stale_wait``, the last state loaded is
served, and the store is asked again ``retry_after`` seconds later. A key never loaded
still fails (the authenticator answers 503). ``invalidate`` and ``clear`` drop the
entry for good, stale copy included.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from functools import partial

from passgate.auth.key_state import KeyState

log = logging.getLogger(__name__)

Loader = Callable[[str], Awaitable[KeyState | None]]
DEFAULT_MAX_ENTRIES = 100_000
DEFAULT_STALE_WAIT = 0.5  # seconds a request with a known key waits for a slow reload
DEFAULT_RETRY_AFTER = 1.0  # seconds between reloads of a key while the store fails
_STALE_LOG_EVERY = 10.0  # seconds between two "serving stale keys" log lines


class KeyCache:
    """Key states by token id, with TTL, negative entries, single-flight loads, and the
    last known state served while the key store is unavailable."""

    def __init__(
        self,
        loader: Loader,
        ttl: float,
        negative_ttl: float | None = None,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
        stale_wait: float = DEFAULT_STALE_WAIT,
        retry_after: float = DEFAULT_RETRY_AFTER,
    ) -> None:
        if ttl <= 0 or max_entries < 1:
            raise ValueError("ttl must be positive and max_entries at least 1")
        if stale_wait <= 0 or retry_after <= 0:
            raise ValueError("stale_wait and retry_after must be positive")
        self._loader = loader
        self._ttl = ttl
        self._negative_ttl = ttl if negative_ttl is None else negative_ttl
        self._max_entries = max_entries
        self._clock = clock
        self._stale_wait = stale_wait
        self._retry_after = min(retry_after, ttl)
        self._entries: dict[str, tuple[float, KeyState | None]] = {}
        self._inflight: dict[str, asyncio.Task[KeyState | None]] = {}
        self._last_stale_log = -_STALE_LOG_EVERY
        self.stale_served = 0  # answers given from an expired entry because a reload failed

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, token: str) -> KeyState | None:
        """The state of the key with this token id, or None when there is no such key."""
        entry = self._entries.get(token)
        if entry is not None and entry[0] > self._clock():
            return entry[1]
        task = self._inflight.get(token)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._load(token))
            self._inflight[token] = task
            task.add_done_callback(partial(self._landed, token))
        # A waiter that is cancelled (client gone) must not cancel the shared load.
        if entry is None:
            return await asyncio.shield(task)
        try:
            async with asyncio.timeout(self._stale_wait):
                return await asyncio.shield(task)
        except Exception:
            # Serve what we knew, unless the key was invalidated meanwhile.
            current = self._entries.get(token)
            if current is None:
                raise
            now = self._clock()
            if current[0] <= now:  # the reload is slow: the next callers need not wait
                self._entries[token] = (now + self._retry_after, current[1])
            self.stale_served += 1
            return current[1]

    def invalidate(self, token: str) -> None:
        """Forget a key now; a load already under way for it will not be stored."""
        self._entries.pop(token, None)
        self._inflight.pop(token, None)

    def expire(self, token: str) -> None:
        """Reload a key on its next use, keeping its last state for a key store outage.

        For changes learnt from elsewhere (the key-change feed, a Redis resync): the
        change is committed, so the reload sees it, and an outage does not lock out a
        key only because it changed earlier.
        """
        entry = self._entries.get(token)
        if entry is not None:
            self._entries[token] = (self._clock(), entry[1])
        self._inflight.pop(token, None)

    def expire_all(self) -> None:
        """``expire`` every key."""
        now = self._clock()
        self._entries = {token: (now, state) for token, (_, state) in self._entries.items()}
        self._inflight.clear()

    def clear(self) -> None:
        """Forget every key."""
        self._entries.clear()
        self._inflight.clear()

    async def _load(self, token: str) -> KeyState | None:
        return await self._loader(token)

    def _landed(self, token: str, task: asyncio.Task[KeyState | None]) -> None:
        if self._inflight.get(token) is not task:
            return  # invalidated while loading: the result may predate the change
        del self._inflight[token]
        if task.cancelled() or task.exception() is not None:
            # errors are not cached; a known key keeps its last state until a retry works
            self._keep_stale(token, task)
            return
        state = task.result()
        ttl = self._ttl if state is not None else self._negative_ttl
        self._entries.pop(token, None)  # re-insert at the end: oldest entries go first
        self._entries[token] = (self._clock() + ttl, state)
        while len(self._entries) > self._max_entries:
            del self._entries[next(iter(self._entries))]

    def _keep_stale(self, token: str, task: asyncio.Task[KeyState | None]) -> None:
        entry = self._entries.get(token)
        if entry is None:
            return
        self._entries[token] = (self._clock() + self._retry_after, entry[1])
        now = self._clock()
        if now - self._last_stale_log >= _STALE_LOG_EVERY:
            self._last_stale_log = now
            error = "cancelled" if task.cancelled() else type(task.exception()).__name__
            # the exception's text may carry SQL parameters (a key hash): its type only
            log.warning("key store unavailable (%s): serving cached keys as last loaded", error)
