"""No admin input gets a 5xx: Hypothesis against a real ``passgate`` process.

For every route of the admin app (read from a built app, so a new route is fuzzed too),
requests are drawn from the route's request model (``tests.support.admin_inputs``):
each field alone with hostile values while the others are valid, and whole requests
mixing valid, hostile, unknown and raw input. They go over one keep-alive connection.
Each answer must be below 500; an error must be the gateway's JSON error shape (a 422
quoting a field); a refused request must leave the database as it was; the connection
must stay usable unless the answer said ``Connection: close``; and the gateway must
log no traceback. Runs on SQLite and on PostgreSQL, whose stricter types (NUL, NaN in
JSON) fail where SQLite does not.

The examples are bounded and derandomized (the same on every run); a failure prints
the request and a ``@reproduce_failure`` blob. ``ADMIN_FUZZ_EXAMPLES=N`` runs N fresh
random examples of each test instead (a failure then also prints its seed).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import sqlite3
import tempfile
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, SecretStr
from starlette.routing import Mount, Route

from passgate.api.entity_schemas import (
    CustomerRequest,
    TeamQuery,
    TeamRequest,
    UserQuery,
    UserRequest,
)
from passgate.api.key_schemas import (
    DeleteKeysRequest,
    GenerateKeyRequest,
    InfoQuery,
    KeyRef,
    ListQuery,
    RegenerateKeyRequest,
    UpdateKeyRequest,
)
from passgate.api.spend import CustomerQuery, LogsQuery, ReportQuery
from passgate.app import build_app
from passgate.config import Settings
from tests.conftest import PROVIDER_KEY
from tests.support.admin_inputs import (
    ANY_PAIRS,
    Call,
    body_calls,
    fields,
    one_hostile_field,
    query_calls,
)
from tests.support.admin_values import Known
from tests.support.databases import fresh_postgres
from tests.support.gateway import GatewayProcess

MASTER = "sk-fuzz-master-0123456789"
KNOWN = Known(
    key="sk-fuzz-known-key-0123456789",
    key_alias="fuzz-known",
    user_id="fuzz-user",
    team_id="fuzz-team",
    customer_id="fuzz-customer",
)
# Bounded for CI: each field alone gets a few hostile values (the likeliest to break
# first), each route a few mixed requests. ADMIN_FUZZ_EXAMPLES=N runs N fresh random
# examples of each instead.
DEEPER = os.environ.get("ADMIN_FUZZ_EXAMPLES", "")
EXAMPLES_PER_FIELD = int(DEEPER) if DEEPER.isdigit() else 4
EXAMPLES_PER_ROUTE = int(DEEPER) if DEEPER.isdigit() else 12
# Columns the gateway's own budget-reset task moves on by itself, between any two requests.
MOVING_COLUMNS = frozenset({"spend", "budget_reset_at", "updated_at"})

# Each admin route that reads a body or a query string, with the model that reads it.
BODIES: dict[str, type[BaseModel]] = {
    "/key/generate": GenerateKeyRequest,
    "/key/update": UpdateKeyRequest,
    "/key/delete": DeleteKeysRequest,
    "/key/regenerate": RegenerateKeyRequest,
    "/key/block": KeyRef,
    "/key/unblock": KeyRef,
    "/user/new": UserRequest,
    "/user/update": UserRequest,
    "/team/new": TeamRequest,
    "/team/update": TeamRequest,
    "/customer/new": CustomerRequest,
    "/customer/update": CustomerRequest,
}
QUERIES: dict[str, type[BaseModel]] = {
    "/key/info": InfoQuery,
    "/key/list": ListQuery,
    "/spend/logs": LogsQuery,
    "/spend/report": ReportQuery,
    "/customer/info": CustomerQuery,
    "/user/info": UserQuery,
    "/team/info": TeamQuery,
}
OWNED_PREFIXES = ("/key/", "/user/", "/team/", "/customer/", "/spend/")


def admin_routes(tmp: Path) -> list[tuple[str, str]]:
    """(method, path) of every route the admin app serves, read from a built app."""
    url = f"sqlite:///{tmp / 'routes.db'}"
    gateway = build_app(Settings(master_key=SecretStr(MASTER), database_url=url, data_dir=tmp))
    found: list[tuple[str, str]] = []
    for route in gateway.admin.routes:  # type: ignore[attr-defined]
        if isinstance(route, Mount) and route.path == "/ui":
            continue  # the web UI's forms need a session and a CSRF token: test_ui_*.py
        assert isinstance(route, Route)
        found.extend(
            (method, route.path) for method in sorted(route.methods or ()) if method != "HEAD"
        )
    return found


class Snapshot:
    """The database's rows (less the columns that move by themselves), to compare."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._loop = asyncio.new_event_loop() if url.startswith("postgresql") else None
        self._pg: Any = None
        self._sqlite: sqlite3.Connection | None = None
        self._last: list[tuple[str, list[str]]] | None = None
        if self._loop is not None:
            self._pg = self._loop.run_until_complete(asyncpg.connect(url))
        else:
            path = url.removeprefix("sqlite:///")
            self._sqlite = sqlite3.connect(f"file:{path}?mode=ro", uri=True)

    def take(self) -> list[tuple[str, list[str]]]:
        """Every table's rows, each as text, sorted (the last taking, while it is still true)."""
        if self._last is None:
            self._last = self._read()
        return self._last

    def forget(self) -> None:
        """Read the tables again next time: a request may have changed them."""
        self._last = None

    def _read(self) -> list[tuple[str, list[str]]]:
        tables = self._rows(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            if self._pg is not None
            else "SELECT name FROM sqlite_master WHERE type = 'table'"
        )
        state = []
        for (table,) in sorted(tables):
            if table == "alembic_version":
                continue
            rows = self._rows(f'SELECT * FROM "{table}"', keep_names=True)  # noqa: S608
            state.append((table, sorted(repr(row) for row in rows)))
        return state

    def _rows(self, sql: str, keep_names: bool = False) -> list[tuple[Any, ...]]:
        if self._pg is not None:
            assert self._loop is not None
            records = self._loop.run_until_complete(self._pg.fetch(sql))
            return [
                self._stable(dict(record)) if keep_names else tuple(record) for record in records
            ]
        assert self._sqlite is not None
        cursor = self._sqlite.execute(sql)
        names = [column[0] for column in cursor.description]
        rows = cursor.fetchall()
        return [
            self._stable(dict(zip(names, row, strict=True))) if keep_names else row for row in rows
        ]

    @staticmethod
    def _stable(row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(sorted((k, str(v)) for k, v in row.items() if k not in MOVING_COLUMNS))

    def close(self) -> None:
        if self._loop is not None:
            self._loop.run_until_complete(self._pg.close())
            self._loop.close()
        if self._sqlite is not None:
            self._sqlite.close()


@dataclass
class Reply:
    status: int
    body: bytes
    closes: bool


class Client:
    """One keep-alive connection; a new one only after an answer said ``Connection: close``."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._conn: http.client.HTTPConnection | None = None

    def send(self, call: Call, headers: dict[str, str]) -> Reply:
        reused = self._conn is not None
        if self._conn is None:
            self._conn = http.client.HTTPConnection("127.0.0.1", self._port, timeout=30)
        target = call.path + ("?" + call.query if call.query else "")
        try:
            self._conn.request(call.method, target, body=call.body, headers=headers)
            response = self._conn.getresponse()
            body = response.read()
        except (http.client.RemoteDisconnected, ConnectionError) as exc:
            self.close()
            if reused:
                raise AssertionError(
                    "the gateway dropped a keep-alive connection without Connection: close"
                ) from exc
            raise
        closes = response.will_close
        if closes:
            self.close()
        return Reply(response.status, body, closes)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@dataclass
class Target:
    gateway: GatewayProcess
    snapshot: Snapshot


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    tmp = tmp_path_factory.mktemp(f"admin-fuzz-{request.param}")
    if request.param == "sqlite":
        yield from _serve(f"sqlite:///{tmp / 'passgate.db'}", tmp)
        return
    runner = asyncio.new_event_loop()
    context = fresh_postgres()
    url = runner.run_until_complete(context.__aenter__())
    try:
        yield from _serve(url, tmp)
    finally:
        runner.run_until_complete(context.__aexit__(None, None, None))
        runner.close()


def _serve(url: str, tmp: Path) -> Iterator[Target]:
    env = {
        "DATABASE_URL": url,
        "PASSGATE_MASTER_KEY": MASTER,
        "MISTRAL_API_BASE": "http://127.0.0.1:9",
        "MISTRAL_API_KEY": PROVIDER_KEY,
        # key changes wait two polls before answering: keep that short for many examples
        "PASSGATE_KEY_CHANGE_POLL_INTERVAL": "0.01",
    }
    with GatewayProcess(env, data_dir=tmp / "data") as gateway:
        client = Client(gateway.port)
        for path, body in (
            ("/key/generate", {"key": KNOWN.key, "key_alias": KNOWN.key_alias}),
            ("/user/new", {"user_id": KNOWN.user_id, "auto_create_key": False}),
            ("/team/new", {"team_id": KNOWN.team_id}),
            ("/customer/new", {"user_id": KNOWN.customer_id}),
        ):
            reply = client.send(Call("POST", path, body=orjson.dumps(body)), _headers(MASTER))
            assert reply.status == 200, reply.body
        client.close()
        snapshot = Snapshot(url.replace("postgresql+asyncpg", "postgresql"))
        try:
            yield Target(gateway, snapshot)
        finally:
            snapshot.close()


def _headers(token: str | None, request_id: str | None = None) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if request_id is not None:
        headers["x-request-id"] = request_id
    return headers


def _calls(method: str, path: str) -> st.SearchStrategy[Call]:
    if path in BODIES:
        return body_calls(method, path, fields(BODIES[path], KNOWN))
    model = QUERIES.get(path)
    return query_calls(method, path, ANY_PAIRS if model is None else fields(model, KNOWN))


def _field_calls(method: str, path: str, field: str) -> st.SearchStrategy[Call]:
    if path in BODIES:
        return body_calls(method, path, one_hostile_field(BODIES[path], field, KNOWN), raw=False)
    drawn = one_hostile_field(QUERIES[path], field, KNOWN)
    return query_calls(method, path, drawn, raw=False)


TOKENS = st.sampled_from(
    [MASTER, MASTER, MASTER, MASTER, KNOWN.key, None, "sk-unknown-1", "\xe9t\xe9"]
)
REQUEST_IDS = st.sampled_from([None, None, "fuzz-1", "x" * 200, "a b", "\xff"])


def check(
    target: Target, client: Client, call: Call, token: str | None, request_id: str | None
) -> None:
    """Send ``call`` and check the answer, the error shape and the database."""
    before = target.snapshot.take()
    reply = client.send(call, _headers(token, request_id))
    assert reply.status < 500, (reply.status, reply.body)
    assert b"Traceback" not in reply.body
    if reply.status < 400:
        target.snapshot.forget()
        return
    error = orjson.loads(reply.body)["error"]
    assert set(error) == {"message", "type", "code"}
    assert all(isinstance(value, str) and value for value in error.values())
    if reply.status == 422:
        names = set(call.names) | _model_names(call.path) | _sent_names(call)
        assert any(_names_field(error["message"], name) for name in names), error
    target.snapshot.forget()
    assert target.snapshot.take() == before, "a refused request changed the database"


def _names_field(message: str, name: str) -> bool:
    """Whether ``message`` quotes the field ``name`` (or an item of it: 'models.0')."""
    return f"'{name}'" in message or f"'{name}." in message


def _sent_names(call: Call) -> set[str]:
    """The names the request used, as the gateway reads them."""
    names = {name for name, _ in urllib.parse.parse_qsl(call.query, keep_blank_values=True)}
    try:
        sent = json.loads(call.body or b"")
    except ValueError:
        return names
    return names | set(sent) if isinstance(sent, dict) else names


def _model_names(path: str) -> set[str]:
    model = BODIES.get(path) or QUERIES.get(path)
    return set(model.model_fields) if model is not None else set()


def _routes() -> list[tuple[str, str]]:
    with tempfile.TemporaryDirectory() as tmp:
        return admin_routes(Path(tmp))


ROUTES = _routes()


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/key/generate", {"duration": "999999999w"}, "duration"),
        ("/key/generate", {"budget_duration": "999999999mo"}, "budget_duration"),
        ("/team/new", {"budget_duration": "999999999w"}, "budget_duration"),
        ("/user/new", {"duration": "999999999w"}, "duration"),
        ("/spend/logs?end_time=9999-12-31", None, "end_time"),
        ("/spend/logs?start_time=0001-01-01T00:00:00%2B01:00", None, "start_time"),
        ("/spend/report?end_date=9999-12-31", None, "end_time"),
        ("/key/generate", {"metadata": {"n": float("nan")}}, "metadata"),
        ("/customer/new", {"user_id": "nul\u0000"}, "user_id"),
        ("/key/generate", {"allowed_deployments": ["eu\n"]}, "allowed_deployments.0"),
    ],
)
def test_the_inputs_that_overflowed_get_a_422_naming_the_field(
    target: Target, path: str, body: dict[str, Any] | None, field: str
) -> None:
    client = Client(target.gateway.port)
    before = target.snapshot.take()
    method = "GET" if body is None else "POST"
    encoded = None if body is None else json.dumps(body).encode()
    reply = client.send(Call(method, path, body=encoded), _headers(MASTER))
    assert reply.status == 422, reply.body
    assert f"'{field}'" in orjson.loads(reply.body)["error"]["message"]
    target.snapshot.forget()
    assert target.snapshot.take() == before
    assert not reply.closes
    assert client.send(Call("GET", "/key/list"), _headers(MASTER)).status == 200
    client.close()


def test_every_admin_route_that_reads_input_has_its_model_here() -> None:
    paths = {path for _, path in ROUTES}
    assert set(BODIES) | set(QUERIES) <= paths
    owned = {path for path in paths if path.startswith(OWNED_PREFIXES)}
    assert owned <= set(BODIES) | set(QUERIES)


def bounded(examples: int) -> settings:
    """Hypothesis settings: the same examples on every run, and a blob to replay a failure."""
    return settings(
        max_examples=examples,
        derandomize=not DEEPER,
        print_blob=True,
        database=None,
        deadline=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )


def fuzz(
    target: Target,
    calls: st.SearchStrategy[Call],
    tokens: st.SearchStrategy[str | None],
    examples: int,
) -> None:
    """Send the drawn calls over one connection, checking each, then the gateway's log."""
    client = Client(target.gateway.port)

    @bounded(examples)
    @given(call=calls, token=tokens, request_id=REQUEST_IDS)
    def run(call: Call, token: str | None, request_id: str | None) -> None:
        check(target, client, call, token, request_id)

    logged_before = len(target.gateway.logs())
    try:
        run()
    finally:
        client.close()
    logs = target.gateway.logs()[logged_before:]
    assert "Traceback" not in logs and "Exception in ASGI application" not in logs, logs[-4000:]


@pytest.mark.parametrize(("method", "path"), ROUTES, ids=[f"{m} {p}" for m, p in ROUTES])
def test_no_admin_request_gets_a_5xx(target: Target, method: str, path: str) -> None:
    fuzz(target, _calls(method, path), TOKENS, EXAMPLES_PER_ROUTE)


FIELDS = [
    (method, path, field)
    for method, path in ROUTES
    for field in sorted((BODIES.get(path) or QUERIES.get(path) or BaseModel).model_fields)
]


@pytest.mark.parametrize(
    ("method", "path", "field"), FIELDS, ids=[f"{m} {p} {f}" for m, p, f in FIELDS]
)
def test_no_value_of_one_field_gets_a_5xx(
    target: Target, method: str, path: str, field: str
) -> None:
    fuzz(target, _field_calls(method, path, field), st.just(MASTER), EXAMPLES_PER_FIELD)
