"""The one shared upstream HTTP client: a keep-alive pool, created once per app."""

from __future__ import annotations

import aiohttp

from passgate.config import Settings

# aiohttp adds these unless told not to; a faithful relay sends only the client's own.
_SKIP_AUTO = ("User-Agent", "Accept-Encoding", "Accept", "Content-Type")


class Upstream:
    """Owns the aiohttp session; ``start`` and ``stop`` run in the app's lifespan."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The live session; only valid between ``start`` and ``stop``."""
        if self._session is None:
            raise RuntimeError("upstream client used before start()")
        return self._session

    async def start(self) -> None:
        """Open the connection pool."""
        connector = aiohttp.TCPConnector(
            limit=self._settings.upstream_pool_size,
            limit_per_host=0,
            ttl_dns_cache=300,
            keepalive_timeout=30,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,  # compressed bodies pass through untouched
            skip_auto_headers=_SKIP_AUTO,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=self._settings.connect_timeout),
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def stop(self) -> None:
        """Close the pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None
