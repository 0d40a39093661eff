"""Key changes broadcast to every instance over Redis pub/sub.

When a key is updated, blocked, deleted or regenerated, the instance that did it
publishes the key's id; every instance (itself included) drops its cached copy
as the message arrives, instead of serving it until the cache TTL runs out.
Budget changes of users, teams and end users travel the same way. After Redis
comes back, messages published meanwhile are lost, so subscribers are told to
drop everything (``on_resync``).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Callable
from typing import Any, get_args

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from passgate.limits.backend import ScopeKind
from passgate.tasks import cancel_and_wait

log = logging.getLogger("passgate.limits")

_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)
_KINDS = frozenset(get_args(ScopeKind))


class KeyEvents:
    """Publishes key and budget invalidations, and calls back on the ones it receives."""

    def __init__(
        self,
        client: Redis,
        on_key: Callable[[str], object],
        on_scope: Callable[[ScopeKind, str], object] | None = None,
        on_resync: Callable[[], object] | None = None,
        channel: str = "passgate:invalidate",
        retry_delay: float = 0.5,
    ) -> None:
        self._client = client
        self._on_key = on_key
        self._on_scope = on_scope
        self._on_resync = on_resync
        self._channel = channel
        self._retry_delay = retry_delay
        self._task: asyncio.Task[None] | None = None
        self._sending: set[asyncio.Task[bool]] = set()

    async def publish(self, token: str) -> bool:
        """Tell every instance to drop its copy of a key; False when Redis is unreachable."""
        return await self._send("key", token)

    def publish_soon(self, token: str) -> None:
        """``publish`` from synchronous code (e.g. a cache's invalidate hook)."""
        task = asyncio.get_running_loop().create_task(self.publish(token))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def publish_scope(self, kind: ScopeKind, id: str) -> bool:
        """Tell every instance that a user's, team's or end user's budget changed."""
        return await self._send(kind, id)

    async def start(self) -> None:
        """Subscribe, returning once subscribed (or after the first failed attempt)."""
        if self._task is not None:
            return
        ready = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._listen(ready))
        await ready.wait()

    async def stop(self) -> None:
        """Finish sending, then stop listening."""
        if self._sending:
            await asyncio.gather(*self._sending, return_exceptions=True)
        await cancel_and_wait(self._task)
        self._task = None

    async def _send(self, kind: str, id: str) -> bool:
        try:
            await self._client.publish(self._channel, f"{kind} {id}")
        except (RedisError, OSError):
            log.warning(
                "could not broadcast a %s change: Redis is unreachable "
                "(other instances see it when their cache expires)",
                kind,
            )
            return False
        return True

    async def _listen(self, ready: asyncio.Event) -> None:
        lost = False  # a subscription was lost: messages may have been missed meanwhile
        while True:
            # PubSub is untyped in redis-py
            pubsub: Any = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                # redis-py may reconnect and resubscribe by itself after a short blip
                pubsub.connection.register_connect_callback(self._reconnected)
                if lost:
                    log.warning("key change broadcast resumed; dropping cached keys")
                    await _call(self._on_resync)
                    lost = False
                ready.set()
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None and message.get("type") == "message":
                        await self._dispatch(message["data"])
            except _UNREACHABLE as exc:
                if not lost:
                    log.warning(
                        "key change broadcast interrupted (%s); retrying", type(exc).__name__
                    )
                lost = True
                ready.set()
                await asyncio.sleep(self._retry_delay)
            except Exception:
                log.exception("key change listener failed; restarting it")
                lost = True
                await asyncio.sleep(self._retry_delay)
            finally:
                if pubsub.connection is not None:
                    # pooled connections are reused: the callback must not outlive this pubsub
                    pubsub.connection.deregister_connect_callback(self._reconnected)
                with contextlib.suppress(*_UNREACHABLE):
                    await pubsub.aclose()

    async def _reconnected(self, _connection: Any) -> None:
        log.warning("key change broadcast reconnected; dropping cached keys")
        await _call(self._on_resync)

    async def _dispatch(self, data: Any) -> None:
        text = data.decode() if isinstance(data, bytes) else str(data)
        kind, _, id = text.partition(" ")
        if not id:
            return
        if kind == "key":
            await _call(self._on_key, id)
        elif kind in _KINDS and self._on_scope is not None:
            await _call(self._on_scope, kind, id)


async def _call(callback: Callable[..., object] | None, *args: Any) -> None:
    if callback is None:
        return
    result = callback(*args)
    if inspect.isawaitable(result):
        await result
