"""The user, team and customer routes against a real SQLite database, wired to the limits."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette

from passgate.accounting.pricing import load_catalogs
from passgate.api.admin_auth import AdminContext
from passgate.api.boundary import admin_app
from passgate.api.entities import entity_routes
from passgate.api.spend import spend_routes
from passgate.auth.authenticator import KeyAuthenticator
from passgate.auth.cache import KeyCache
from passgate.auth.key_state import KeyStateLoader
from passgate.auth.master import MasterKey
from passgate.config import Settings
from passgate.errors import GatewayError
from passgate.exchange import Exchange
from passgate.limits.backend import ScopeKind
from passgate.limits.guard import TICKET
from passgate.limits.runtime import Limits, build_limits
from passgate.storage.db import session_factory
from tests.support.databases import migrated_engine, sqlite_url

MASTER_KEY = "sk-master-entities-0123456789"


class Client:
    """Calls the ASGI app directly: real routing, auth and JSON, no socket needed."""

    def __init__(self, app: Starlette) -> None:
        self.app = app

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = MASTER_KEY,
        **params: str,
    ) -> tuple[int, Any]:
        raw = b"" if body is None else orjson.dumps(body)
        headers = [
            (b"host", b"gateway"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(raw)).encode()),
        ]
        if token is not None:
            headers.append((b"authorization", b"Bearer " + token.encode()))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": urlencode(params).encode(),
            "headers": headers,
            "server": ("gateway", 80),
            "client": ("127.0.0.1", 40000),
        }
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": raw, "more_body": False}

        async def send(message: Any) -> None:
            sent.append(message)

        await self.app(scope, receive, send)
        data = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return sent[0]["status"], orjson.loads(data)


class Gateway:
    def __init__(self, client: Client, limits: Limits, changes: list[tuple[str, str]]) -> None:
        self.client, self.limits, self.changes = client, limits, changes


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with migrated_engine(sqlite_url(tmp_path)) as engine:
        sessions = session_factory(engine)
        cache = KeyCache(KeyStateLoader(sessions), ttl=5.0)
        settings = Settings(
            master_key=SecretStr(MASTER_KEY), budget_estimate_usd=0.1, redis_url=None
        )
        ctx = AdminContext(
            sessions, cache, KeyAuthenticator(MasterKey(MASTER_KEY), cache), settings
        )
        limits = build_limits(settings, sessions, load_catalogs())
        changes: list[tuple[str, str]] = []

        async def changed(kind: ScopeKind, entity_id: str) -> None:
            changes.append((kind, entity_id))
            await limits.budget_changed(kind, entity_id)

        app = admin_app([*entity_routes(ctx, changed), *spend_routes(ctx)])
        await limits.start()
        try:
            yield Gateway(Client(app), limits, changes)
        finally:
            await limits.stop()


def call_for(end_user: str) -> Exchange:
    return Exchange(
        "r",
        "POST",
        "/mistral/v1/chat/completions",
        "/v1/chat/completions",
        "mistral",
        time.time(),
        time.perf_counter(),
        end_user=end_user,
    )


async def test_user_new_creates_a_user_with_a_budget_and_a_key(gateway: Gateway) -> None:
    status, body = await gateway.client.call(
        "POST",
        "/user/new",
        {
            "user_id": "u1",
            "max_budget": 10.0,
            "budget_duration": "30d",
            "key_alias": "u1-key",
            "user_email": "u1@example.com",
        },
    )
    assert status == 200, body
    assert body["key"].startswith("sk-") and body["key_alias"] == "u1-key"
    assert (body["user_id"], body["max_budget"], body["budget_duration"]) == ("u1", 10.0, "30d")
    reset = datetime.fromisoformat(body["budget_reset_at"])
    assert abs(reset - datetime.now(reset.tzinfo) - timedelta(days=30)) < timedelta(minutes=1)

    status, info = await gateway.client.call("GET", "/user/info", user_id="u1")
    assert status == 200
    assert info["user_info"]["spend"] == 0.0
    assert info["user_info"]["metadata"] == {"user_email": "u1@example.com"}
    assert [k["key_alias"] for k in info["keys"]] == ["u1-key"]
    assert info["keys"][0]["user_id"] == "u1"

    status, error = await gateway.client.call("POST", "/user/new", {"user_id": "u1"})
    assert (status, error["error"]["code"]) == (409, "conflict")
    status, bare = await gateway.client.call(
        "POST", "/user/new", {"user_alias": "no key", "auto_create_key": False}
    )
    assert status == 200 and "key" not in bare and bare["user_id"]


async def test_team_new_and_info(gateway: Gateway) -> None:
    status, team = await gateway.client.call(
        "POST", "/team/new", {"team_id": "t1", "team_alias": "core", "max_budget": 5.0}
    )
    assert status == 200
    assert (team["team_id"], team["team_alias"], team["budget_reset_at"]) == ("t1", "core", None)
    status, info = await gateway.client.call("GET", "/team/info", team_id="t1")
    assert status == 200 and info["team_info"]["max_budget"] == 5.0 and info["keys"] == []
    status, generated = await gateway.client.call("POST", "/team/new", {"team_alias": "x"})
    assert status == 200 and len(generated["team_id"]) == 36
    status, missing = await gateway.client.call("GET", "/team/info", team_id="nope")
    assert (status, missing["error"]["code"]) == (404, "team_not_found")


async def test_customer_budget_is_enforced_and_updates_apply_at_once(gateway: Gateway) -> None:
    status, alice = await gateway.client.call(
        "POST",
        "/customer/new",
        {"user_id": "alice", "max_budget": 1.0, "budget_duration": "1d", "alias": "Alice"},
    )
    assert status == 200
    assert (alice["end_user_id"], alice["alias"], alice["blocked"]) == ("alice", "Alice", False)
    status, info = await gateway.client.call("GET", "/customer/info", end_user_id="alice")
    assert status == 200
    assert (info["max_budget"], info["budget_duration"]) == (1.0, "1d")
    assert info["budget_reset_at"] is not None

    guard = gateway.limits.guard
    ok = call_for("alice")
    await guard.admit(ok)
    await guard.cleanup(ok)

    status, _ = await gateway.client.call(
        "POST", "/customer/update", {"user_id": "alice", "max_budget": 0.0}
    )
    assert status == 200
    assert gateway.changes[-1] == ("end_user", "alice")
    with pytest.raises(GatewayError) as refused:
        await guard.admit(call_for("alice"))
    assert refused.value.code == "budget_exceeded"

    await gateway.client.call("POST", "/customer/new", {"user_id": "bob", "max_budget": 1.0})
    bob = call_for("bob")
    await guard.admit(bob)
    assert TICKET.get(bob) is not None
    await guard.cleanup(bob)

    await gateway.client.call("POST", "/customer/update", {"user_id": "bob", "blocked": True})
    with pytest.raises(GatewayError) as blocked:
        await guard.admit(call_for("bob"))
    assert (blocked.value.status, blocked.value.code) == (403, "end_user_blocked")


async def test_the_routes_need_the_master_key(gateway: Gateway) -> None:
    status, body = await gateway.client.call("POST", "/team/new", {"team_id": "t"}, token=None)
    assert status == 401
    _, user = await gateway.client.call("POST", "/user/new", {"user_id": "v"})
    status, body = await gateway.client.call(
        "POST", "/customer/new", {"user_id": "c"}, token=user["key"]
    )
    assert (status, body["error"]["code"]) == (403, "admin_only")


async def test_invalid_fields_are_refused(gateway: Gateway) -> None:
    status, body = await gateway.client.call(
        "POST", "/team/new", {"team_id": "t", "budget_duration": "soon"}
    )
    assert status == 422 and "budget_duration" in body["error"]["message"]
    status, body = await gateway.client.call("POST", "/customer/new", {"max_budget": 1})
    assert status == 422 and "user_id" in body["error"]["message"]
    status, body = await gateway.client.call(
        "POST", "/user/new", {"user_id": "neg", "max_budget": -1}
    )
    assert status == 422
    status, body = await gateway.client.call("POST", "/user/update", {"user_alias": "x"})
    assert status == 422
    status, body = await gateway.client.call("POST", "/team/update", {"team_id": "ghost"})
    assert status == 404
