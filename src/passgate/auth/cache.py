"""In-process cache of key states, so a known key never costs a database round trip.

Entries live ``ttl`` seconds (at most 5 s: the bound on how stale a change made on
another instance can be); changes made on this instance call ``invalidate`` and apply
at once. Unknown keys are cached too (negative entries), so a flood of one bad key
does not reach the database, and concurrent misses for one key share a single load.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from functools import partial

from passgate.auth.key_state import KeyState

Loader = Callable[[str], Awaitable[KeyState | None]]
DEFAULT_MAX_ENTRIES = 100_000


class KeyCache:
    """Key states by token id, with TTL, negative entries and single-flight loads."""

    def __init__(
        self,
        loader: Loader,
        ttl: float,
        negative_ttl: float | None = None,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl <= 0 or max_entries < 1:
            raise ValueError("ttl must be positive and max_entries at least 1")
        self._loader = loader
        self._ttl = ttl
        self._negative_ttl = ttl if negative_ttl is None else negative_ttl
        self._max_entries = max_entries
        self._clock = clock
        self._entries: dict[str, tuple[float, KeyState | None]] = {}
        self._inflight: dict[str, asyncio.Task[KeyState | None]] = {}

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
        return await asyncio.shield(task)

    def invalidate(self, token: str) -> None:
        """Forget a key now; a load already under way for it will not be stored."""
        self._entries.pop(token, None)
        self._inflight.pop(token, None)

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
            return  # errors are not cached: the next request tries again
        state = task.result()
        ttl = self._ttl if state is not None else self._negative_ttl
        self._entries.pop(token, None)  # re-insert at the end: oldest entries go first
        self._entries[token] = (self._clock() + ttl, state)
        while len(self._entries) > self._max_entries:
            del self._entries[next(iter(self._entries))]
