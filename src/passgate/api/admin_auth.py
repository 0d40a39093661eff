"""Who calls an admin route: the same authenticator as the pass-through routes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request

from passgate import errors
from passgate.auth.authenticator import KeyAuthenticator
from passgate.auth.cache import KeyCache
from passgate.config import Settings
from passgate.principal import Principal
from passgate.proxy.caller_key import bearer


@dataclass(frozen=True, slots=True)
class AdminContext:
    """What admin routes need: database sessions, the key cache and the authenticator."""

    sessions: async_sessionmaker[AsyncSession]
    cache: KeyCache
    authenticator: KeyAuthenticator
    settings: Settings
    # Tells other instances a key changed (Redis pub/sub), so they drop their cached copy.
    on_key_change: Callable[[str], None] | None = None


def bearer_token(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header, or None (the relay's parser)."""
    header = request.headers.get("authorization")
    return None if header is None else bearer(header.encode("latin-1"))


async def caller(request: Request, ctx: AdminContext) -> Principal:
    """The principal of an admin request, or ``GatewayError`` 401."""
    return await ctx.authenticator.resolve(bearer_token(request))


async def require_admin(request: Request, ctx: AdminContext) -> Principal:
    """The caller, who must hold the master key (or the gateway is open); 403 otherwise."""
    principal = await caller(request, ctx)
    if not principal.is_admin:
        raise errors.forbidden(
            f"{request.url.path} needs the master key; a virtual key may not call it.",
            "admin_only",
        )
    return principal
