"""Deployments set aside, shared by every worker and instance through Redis.

A worker that sets a deployment aside writes its state under one key per deployment, which
expires when the cooldown ends; every worker reads all of them back every
``deployment_sync_interval`` and takes the states that set a deployment aside for longer
than it knows of. Choosing a deployment never waits on Redis: it reads the worker's own
copy. When Redis is away each worker goes on with what it saw itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

import orjson
from redis.asyncio import Redis
from redis.exceptions import RedisError

from passgate.proxy.deployments import DeploymentPool, Health
from passgate.tasks import cancel_and_wait

log = logging.getLogger("passgate.deployments")

_STATES = frozenset({"cooling_down", "dead"})


def encode(health: Health) -> bytes:
    """A state as stored in Redis."""
    return orjson.dumps(
        {"state": health.state, "until": health.until, "since": health.since, "error": health.error}
    )


def decode(raw: bytes | str | None) -> Health | None:
    """A state read from Redis; None when absent or not one."""
    if raw is None:
        return None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    state, until, since, error = (data.get(k) for k in ("state", "until", "since", "error"))
    if state not in _STATES or not isinstance(until, int | float) or isinstance(until, bool):
        return None
    since = since if isinstance(since, int | float) and not isinstance(since, bool) else None
    return Health(state, float(until), since, error if isinstance(error, str) else None)


class SharedHealth:
    """Keeps the pools' states in step with the other workers' through Redis."""

    def __init__(
        self,
        client: Redis,
        pools: Sequence[DeploymentPool],
        *,
        prefix: str = "passgate:",
        interval: float = 0.25,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._client = client
        self._pools = [pool for pool in pools if not pool.single]
        self._interval = interval
        self._clock = clock
        self._prefix = prefix
        self._keys = [
            (pool, dep.name, self._key(pool.provider, dep.name))
            for pool in self._pools
            for dep in pool.deployments
        ]
        self._writes: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        for pool in self._pools:
            pool.listeners.append(self.publish)

    def _key(self, provider: str, deployment: str) -> str:
        return f"{self._prefix}deployment:{provider}:{deployment}"

    def publish(self, provider: str, deployment: str, health: Health) -> None:
        """Write a state this worker set (in the background: the call goes on at once)."""
        ttl = int((health.until - self._clock()) * 1000)
        if ttl <= 0:
            return
        task = asyncio.get_running_loop().create_task(
            self._write(self._key(provider, deployment), encode(health), ttl)
        )
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, key: str, value: bytes, ttl_ms: int) -> None:
        try:
            await self._client.set(key, value, px=ttl_ms)
        except (RedisError, OSError) as exc:
            self._failed(exc)

    async def sync(self) -> None:
        """Read every deployment's shared state once."""
        if not self._keys:
            return
        try:
            values = await self._client.mget([key for _, _, key in self._keys])
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return
        if self._failing:
            self._failing = False
            log.info("deployment states are shared through Redis again")
        for (pool, name, _), raw in zip(self._keys, values, strict=True):
            health = decode(raw)
            if health is not None:
                pool.apply(name, health)

    def _failed(self, exc: BaseException) -> None:
        if not self._failing:
            self._failing = True
            log.warning(
                "deployment states cannot be shared through Redis (%s): each worker "
                "goes on with what it sees",
                type(exc).__name__,
            )

    async def _run(self) -> None:
        while True:
            await self.sync()
            await asyncio.sleep(self._interval)

    async def start(self) -> None:
        """Start reading the shared states."""
        if self._task is None and self._keys:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop reading; let pending writes finish, and close the client."""
        await cancel_and_wait(self._task)
        self._task = None
        if self._writes:
            await asyncio.gather(*self._writes, return_exceptions=True)
        await self._client.aclose()
