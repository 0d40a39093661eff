"""The /key routes, with LiteLLM's request and response fields.

All of them need the master key, except ``GET /key/info`` without ``key``, where a
virtual key reads its own settings. Keys are named by their secret or token id;
responses carry the token id, and a secret only when it was just created.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from passgate import errors
from passgate.api.admin_auth import AdminContext, caller, require_admin
from passgate.api.key_schemas import (
    DeleteKeysRequest,
    GenerateKeyRequest,
    InfoQuery,
    KeyRef,
    ListQuery,
    RegenerateKeyRequest,
    UpdateKeyRequest,
    key_info,
    key_page,
)
from passgate.api.key_service import KeyService
from passgate.api.responses import json_response
from passgate.api.validation import parse_body, parse_query, read_body
from passgate.storage.models import Key


def _with_secret(secret: str, row: Key, **extra: Any) -> dict[str, Any]:
    return {"key": secret, **key_info(row), **extra}


class KeyRoutes:
    """Endpoints of the /key routes, bound to one gateway's database and key cache."""

    def __init__(self, ctx: AdminContext) -> None:
        self._ctx = ctx
        self._service = KeyService(
            ctx.sessions,
            ctx.cache,
            ctx.authenticator.master,
            on_change=ctx.on_key_change,
            propagation_delay=2 * ctx.settings.key_change_poll_interval,
        )

    async def generate(self, request: Request) -> Response:
        """POST /key/generate."""
        await require_admin(request, self._ctx)
        req = parse_body(GenerateKeyRequest, await read_body(request))
        secret, row = await self._service.generate(req)
        return json_response(_with_secret(secret, row, duration=req.duration))

    async def info(self, request: Request) -> Response:
        """GET /key/info?key=... (or no key: the caller's own key)."""
        principal = await caller(request, self._ctx)
        query = parse_query(InfoQuery, request)
        if query.key is None:
            if principal.token is None:
                raise errors.bad_request(
                    "key: give the key (or its token id) to look up", "missing_field"
                )
            token = principal.token
        else:
            token = self._service.token_of(query.key)
            if not principal.is_admin and token != principal.token:
                raise errors.forbidden(
                    "A virtual key may only read its own info; this needs the master key.",
                    "admin_only",
                )
        row = await self._service.get(token)
        return json_response({"key": row.token, "info": key_info(row)})

    async def list(self, request: Request) -> Response:
        """GET /key/list."""
        await require_admin(request, self._ctx)
        query = parse_query(ListQuery, request)
        rows, total = await self._service.page(query)
        return json_response(key_page(rows, total, query, query.return_full_object))

    async def update(self, request: Request) -> Response:
        """POST /key/update."""
        await require_admin(request, self._ctx)
        req = parse_body(UpdateKeyRequest, await read_body(request))
        return json_response(key_info(await self._service.update(req)))

    async def delete(self, request: Request) -> Response:
        """POST /key/delete."""
        await require_admin(request, self._ctx)
        req = parse_body(DeleteKeysRequest, await read_body(request))
        return json_response({"deleted_keys": await self._service.delete(req)})

    async def regenerate(self, request: Request) -> Response:
        """POST /key/regenerate."""
        await require_admin(request, self._ctx)
        req = parse_body(RegenerateKeyRequest, await read_body(request))
        secret, row = await self._service.regenerate(req)
        return json_response(_with_secret(secret, row, grace_period=req.grace_period))

    async def block(self, request: Request) -> Response:
        """POST /key/block."""
        return await self._set_blocked(request, True)

    async def unblock(self, request: Request) -> Response:
        """POST /key/unblock."""
        return await self._set_blocked(request, False)

    async def _set_blocked(self, request: Request, blocked: bool) -> Response:
        await require_admin(request, self._ctx)
        req = parse_body(KeyRef, await read_body(request))
        return json_response(key_info(await self._service.set_blocked(req.key, blocked)))


def key_routes(ctx: AdminContext) -> list[Route]:
    """The Starlette routes of the key management API."""
    routes = KeyRoutes(ctx)
    return [
        Route("/key/generate", routes.generate, methods=["POST"]),
        Route("/key/info", routes.info, methods=["GET"]),
        Route("/key/list", routes.list, methods=["GET"]),
        Route("/key/update", routes.update, methods=["POST"]),
        Route("/key/delete", routes.delete, methods=["POST"]),
        Route("/key/regenerate", routes.regenerate, methods=["POST"]),
        Route("/key/block", routes.block, methods=["POST"]),
        Route("/key/unblock", routes.unblock, methods=["POST"]),
    ]
