"""The spend query routes over rows stored by the real writer, on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
from pydantic import SecretStr
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette

from passgate.accounting.writer import SpendWriter
from passgate.api.admin_auth import AdminContext
from passgate.api.boundary import admin_app
from passgate.api.spend import spend_routes
from passgate.auth.authenticator import KeyAuthenticator
from passgate.auth.cache import KeyCache
from passgate.auth.key_state import KeyStateLoader
from passgate.auth.keys import generate_key, hash_key
from passgate.auth.master import MasterKey
from passgate.config import Settings
from passgate.exchange import Exchange, Usage
from passgate.principal import MASTER, Principal
from passgate.storage.db import session_factory
from passgate.storage.models import Key
from tests.support.databases import fresh_postgres, migrated_engine, sqlite_url

MASTER_KEY = "sk-master-for-spend-tests"
KEY_A = generate_key()
KEY_B = generate_key()
TOKEN_A, TOKEN_B = hash_key(KEY_A), hash_key(KEY_B)
PRINCIPAL_A = Principal(
    kind="virtual", token=TOKEN_A, key_alias="alpha", user_id="u1", team_id="t1"
)
PRINCIPAL_B = Principal(
    kind="virtual", token=TOKEN_B, key_alias="beta", user_id="u2", end_user_id="carol"
)
DAY = 86_400
JAN_1 = datetime(2025, 1, 1, tzinfo=UTC).timestamp()


@dataclass(frozen=True)
class Spec:
    """One stored call, as the test knows it."""

    request_id: str
    principal: Principal
    when: float
    model: str
    end_user: str | None
    route: str
    status: int
    cost: float | None
    prompt: int
    completion: int
    pages: int | None = None

    @property
    def group(self) -> dict[str, Any]:
        day = datetime.fromtimestamp(self.when, UTC).date().isoformat()
        return {
            "key": self.principal.key_alias,
            "user": self.principal.user_id,
            "team": self.principal.team_id,
            "end_user": self.end_user,
            "model": self.model,
            "route": self.route,
            "day": day,
        }


CHAT = "/mistral/v1/chat/completions"
OCR = "/mistral/v1/ocr"
SPECS = [
    Spec(
        "r01", PRINCIPAL_A, JAN_1 + 3600, "mistral-small-latest", "alice", CHAT, 200, 0.01, 10, 20
    ),
    Spec(
        "r02", PRINCIPAL_A, JAN_1 + 7200, "mistral-large-latest", "alice", CHAT, 200, 0.25, 100, 50
    ),
    Spec(
        "r03", PRINCIPAL_A, JAN_1 + DAY + 60, "mistral-ocr-latest", "bob", OCR, 200, 0.012, 0, 0, 3
    ),
    Spec(
        "r04",
        PRINCIPAL_B,
        JAN_1 + DAY + 120,
        "mistral-small-latest",
        "carol",
        CHAT,
        200,
        0.02,
        5,
        5,
    ),
    Spec("r05", PRINCIPAL_B, JAN_1 + 2 * DAY + 5, "qwen-x", "carol", CHAT, 200, None, 7, 8),
    Spec("r06", MASTER, JAN_1 + 2 * DAY + 10, "mistral-small-latest", None, CHAT, 429, 0.0, 0, 0),
    Spec(
        "r07",
        PRINCIPAL_A,
        JAN_1 + 2 * DAY + 20,
        "mistral-small-latest",
        "alice",
        CHAT,
        200,
        0.03,
        1,
        2,
    ),
]


def exchange(spec: Spec) -> Exchange:
    now = time.perf_counter()
    return Exchange(
        request_id=spec.request_id,
        method="POST",
        route=spec.route,
        upstream_path=spec.route.removeprefix("/mistral"),
        provider="mistral",
        start_time=spec.when,
        start=now,
        principal=spec.principal,
        end_user=spec.end_user,
        model=spec.model,
        status=spec.status,
        end=now + 0.1,
        usage=Usage(prompt_tokens=spec.prompt, completion_tokens=spec.completion, pages=spec.pages),
        cost=spec.cost,
    )


class Client:
    """Calls the ASGI app directly: real routing, auth and JSON, no socket needed."""

    def __init__(self, app: Starlette) -> None:
        self.app = app

    async def get(self, path: str, token: str | None = MASTER_KEY, **params: Any) -> Any:
        headers = [(b"host", b"gateway")]
        if token is not None:
            headers.append((b"authorization", b"Bearer " + token.encode()))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
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
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: Any) -> None:
            sent.append(message)

        await self.app(scope, receive, send)
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        assert TOKEN_A.encode() not in body and TOKEN_B.encode() not in body  # never a hash
        return sent[0]["status"], orjson.loads(body)


async def _stored(engine: AsyncEngine) -> Client:
    async with engine.begin() as conn:
        await conn.execute(
            insert(Key),
            [
                {
                    "token": TOKEN_A,
                    "key_alias": "alpha",
                    "user_id": "u1",
                    "team_id": "t1",
                    "end_user_id": None,
                },
                {
                    "token": TOKEN_B,
                    "key_alias": "beta",
                    "user_id": "u2",
                    "team_id": None,
                    "end_user_id": "carol",
                },
            ],
        )
    writer = SpendWriter(engine)
    for spec in SPECS:
        await writer.finished(exchange(spec))
    await writer.stop()
    sessions = session_factory(engine)
    cache = KeyCache(KeyStateLoader(sessions), ttl=5.0)
    settings = Settings(master_key=SecretStr(MASTER_KEY))
    authenticator = KeyAuthenticator(MasterKey(MASTER_KEY), cache)
    ctx = AdminContext(sessions, cache, authenticator, settings)
    return Client(admin_app(spend_routes(ctx)))


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
async def client(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Client]:
    # the tests only read: one database per backend for the whole module
    if request.param == "sqlite":
        async with migrated_engine(sqlite_url(tmp_path_factory.mktemp("spend"))) as engine:
            yield await _stored(engine)
    else:
        async with fresh_postgres() as url, migrated_engine(url) as engine:
            yield await _stored(engine)


def ids(body: Any) -> list[str]:
    return [row["request_id"] for row in body["data"]]


async def test_the_master_key_reads_every_row_newest_first(client: Client) -> None:
    status, body = await client.get("/spend/logs")
    assert status == 200
    assert ids(body) == [s.request_id for s in sorted(SPECS, key=lambda s: -s.when)]
    assert (body["total"], body["page"], body["total_pages"]) == (7, 1, 1)
    row = next(r for r in body["data"] if r["request_id"] == "r03")
    assert "token" not in row
    assert (row["key_alias"], row["user_id"], row["team_id"], row["end_user"]) == (
        "alpha",
        "u1",
        "t1",
        "bob",
    )
    assert (row["pages"], row["cost"], row["status"]) == (3, 0.012, 200)
    assert row["start_time"].startswith("2025-01-02T00:01:00")


async def test_pages(client: Client) -> None:
    seen: list[str] = []
    for page in (1, 2, 3, 4):
        status, body = await client.get("/spend/logs", page=page, size=2)
        assert status == 200 and body["total_pages"] == 4
        seen += ids(body)
    assert seen == [s.request_id for s in sorted(SPECS, key=lambda s: -s.when)]
    assert (await client.get("/spend/logs", page=9, size=2))[1]["data"] == []


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"key": KEY_A}, {"r01", "r02", "r03", "r07"}),
        ({"key": TOKEN_B}, {"r04", "r05"}),
        ({"api_key": KEY_B}, {"r04", "r05"}),
        ({"user_id": "u2"}, {"r04", "r05"}),
        ({"team_id": "t1"}, {"r01", "r02", "r03", "r07"}),
        ({"end_user": "alice"}, {"r01", "r02", "r07"}),
        ({"end_user_id": "carol"}, {"r04", "r05"}),
        ({"model": "mistral-small-latest"}, {"r01", "r04", "r06", "r07"}),
        ({"route": OCR}, {"r03"}),
        ({"status": 429}, {"r06"}),
        ({"request_id": "r05"}, {"r05"}),
        ({"start_time": "2025-01-02", "end_time": "2025-01-02"}, {"r03", "r04"}),
        ({"start_time": "2025-01-03T00:00:07Z"}, {"r06", "r07"}),
        ({"end_time": "2025-01-01T02:00:00+00:00"}, {"r01"}),
        (
            {"start_date": "2025-01-01", "end_date": "2025-01-01", "model": "mistral-large-latest"},
            {"r02"},
        ),
    ],
)
async def test_filters(client: Client, params: dict[str, str], expected: set[str]) -> None:
    status, body = await client.get("/spend/logs", **params)
    assert status == 200
    assert set(ids(body)) == expected
    assert body["total"] == len(expected)


async def test_a_virtual_key_sees_only_its_own_rows(client: Client) -> None:
    status, body = await client.get("/spend/logs", token=KEY_B)
    assert status == 200 and set(ids(body)) == {"r04", "r05"}
    status, body = await client.get("/spend/logs", token=KEY_B, key=KEY_B, model="qwen-x")
    assert status == 200 and ids(body) == ["r05"]
    status, body = await client.get("/spend/logs", token=KEY_B, key=KEY_A)
    assert status == 403 and body["error"]["code"] == "not_your_key"
    status, body = await client.get("/spend/report", token=KEY_B, group_by="model")
    assert {g["group"] for g in body["data"]} == {"mistral-small-latest", "qwen-x"}


@pytest.mark.parametrize(
    "params",
    [
        {"colour": "blue"},
        {"start_time": "yesterday"},
        {"status": "abc"},
        {"status": "42"},
        {"key": "not-a-key"},
        {"size": "1001"},
        {"page": "0"},
        {"end_time": "9999-12-31"},
        {"end_time": "9999-12-31T23:59:59-01:00"},
        {"start_time": "0001-01-01T00:00:00+01:00"},
        {"start_time": "1969-12-31T23:59:59Z"},
        {"model": "a\x00b"},
    ],
)
async def test_bad_queries_are_refused_by_name(client: Client, params: dict[str, str]) -> None:
    status, body = await client.get("/spend/logs", **params)
    assert status == 422
    assert next(iter(params)) in body["error"]["message"]


async def test_callers_without_a_valid_key_are_refused(client: Client) -> None:
    assert (await client.get("/spend/logs", token=None))[0] == 401
    assert (await client.get("/spend/report", token="sk-unknown"))[0] == 401
    assert (await client.get("/customer/info", token=None, end_user_id="alice"))[0] == 401


@pytest.mark.parametrize("group_by", ["key", "user", "team", "end_user", "model", "route", "day"])
async def test_the_report_equals_the_sum_of_the_rows(client: Client, group_by: str) -> None:
    status, body = await client.get("/spend/report", group_by=group_by)
    assert status == 200 and body["group_by"] == group_by
    expected: dict[Any, dict[str, Any]] = defaultdict(
        lambda: {
            "requests": 0,
            "cost": 0.0,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "pages": 0,
            "unpriced_requests": 0,
        }
    )
    for spec in SPECS:
        group = expected[spec.group[group_by]]
        group["requests"] += 1
        group["cost"] += spec.cost or 0.0
        group["unpriced_requests"] += spec.cost is None
        group["prompt_tokens"] += spec.prompt
        group["completion_tokens"] += spec.completion
        group["pages"] += spec.pages or 0
    got = {g["group"]: g for g in body["data"]}
    assert set(got) == set(expected)
    for name, want in expected.items():
        for field, value in want.items():
            assert got[name][field] == pytest.approx(value), (name, field)
    assert body["totals"]["requests"] == len(SPECS)
    assert body["totals"]["cost"] == pytest.approx(sum(s.cost or 0.0 for s in SPECS))


async def test_the_report_over_a_time_range(client: Client) -> None:
    status, body = await client.get(
        "/spend/report", group_by="end_user", start_time="2025-01-02", end_time="2025-01-02"
    )
    assert status == 200
    assert {g["group"]: g["cost"] for g in body["data"]} == {
        "bob": pytest.approx(0.012),
        "carol": pytest.approx(0.02),
    }
    assert body["start_time"].startswith("2025-01-02T00:00:00")
    assert body["end_time"].startswith("2025-01-03T00:00:00")
    assert (await client.get("/spend/report", group_by="colour"))[0] == 422


async def test_customer_info(client: Client) -> None:
    status, body = await client.get("/customer/info", end_user_id="alice")
    assert status == 200
    assert body["user_id"] == body["end_user_id"] == "alice"
    assert body["spend"] == pytest.approx(0.01 + 0.25 + 0.03)
    assert (body["max_budget"], body["blocked"]) == (None, False)
    status, body = await client.get("/customer/info", token=KEY_B, end_user_id="carol")
    assert status == 200 and body["spend"] == pytest.approx(0.02)  # r05 is unpriced
    assert (await client.get("/customer/info", token=KEY_B, end_user_id="alice"))[0] == 403
    status, body = await client.get("/customer/info", end_user_id="nobody")
    assert status == 404 and body["error"]["code"] == "end_user_not_found"
    assert (await client.get("/customer/info"))[0] == 422
