"""The /key routes over real HTTP (uvicorn + aiohttp), on SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from passgate.auth.keys import hash_key
from tests.support.asgi_server import ServerThread
from tests.support.databases import fresh_postgres, sqlite_url
from tests.support.key_app import key_app

MASTER = "sk-master-key-for-tests-0123456789"
CHAT = "/mistral/v1/chat/completions"
OCR = "/mistral/v1/ocr"


@dataclass
class Reply:
    status: int
    body: Any
    raw: bytes


class Api:
    """A tiny client for one server; the token defaults to the master key."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url
        self.error_bodies: list[bytes] = []

    async def call(
        self,
        method: str,
        path: str,
        token: str | None = MASTER,
        json: Any = None,
        params: dict[str, str] | None = None,
        data: bytes | None = None,
    ) -> Reply:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        async with self.session.request(
            method,
            self.url + path,
            headers=headers,
            json=json,
            params=params,
            data=None if data is None else io.BytesIO(data),
        ) as response:
            raw = await response.read()
        if response.status >= 400:
            self.error_bodies.append(raw)
        return Reply(response.status, _loads(raw), raw)

    async def generate(self, **fields: Any) -> dict[str, Any]:
        reply = await self.call("POST", "/key/generate", json=fields)
        assert reply.status == 200, reply.raw
        body: dict[str, Any] = reply.body
        return body

    async def use(self, token: str, path: str = CHAT, model: str | None = "m") -> Reply:
        return await self.call("POST", path, token=token, json={"model": model} if model else {})


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return raw.decode(errors="replace")


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield sqlite_url(tmp_path_factory.mktemp("keys"))
        return
    async with fresh_postgres() as url:
        yield url


@pytest.fixture(scope="module")
def server(db_url: str) -> Iterator[ServerThread]:
    with ServerThread(key_app(db_url, MASTER)) as running:
        yield running


@pytest.fixture
async def api(server: ServerThread) -> AsyncIterator[Api]:
    async with aiohttp.ClientSession() as session:
        yield Api(session, server.url)


async def test_the_seeds_empty_body_makes_a_key_that_works(api: Api) -> None:
    created = await api.generate()
    key = created["key"]
    assert key.startswith("sk-") and len(key) >= 35
    assert created["token"] == hash_key(key)
    assert created["expires"] is None and created["created_at"]
    assert created["models"] == [] and created["spend"] == 0.0
    reply = await api.use(key)
    assert (reply.status, reply.body["kind"]) == (200, "virtual")


async def test_generate_echoes_every_field(api: Api) -> None:
    fields = {
        "key_alias": "echo",
        "duration": "7d",
        "models": ["mistral-small-latest"],
        "max_budget": 12.5,
        "budget_duration": "30d",
        "rpm_limit": 60,
        "tpm_limit": 1000,
        "max_parallel_requests": 2,
        "metadata": {"owner": "ops"},
        "user_id": "u-echo",
        "team_id": "t-echo",
        "end_user_id": "e-echo",
        "allowed_routes": [OCR],
        "allowed_deployments": ["eu-west", "us.east_2"],
        "blocked": False,
    }
    created = await api.generate(**fields)
    for name, value in fields.items():
        assert created[name] == value, name
    assert created["expires"] is not None and created["budget_reset_at"] is not None


async def test_info_by_key_by_token_and_by_itself(api: Api) -> None:
    created = await api.generate(key_alias="info-me")
    key, token = created["key"], created["token"]
    for ref in (key, token):
        reply = await api.call("GET", "/key/info", params={"key": ref})
        assert reply.status == 200
        assert reply.body["key"] == token and reply.body["info"]["key_alias"] == "info-me"
        assert key not in reply.raw.decode()
    own = await api.call("GET", "/key/info", token=key)
    assert own.status == 200 and own.body["info"]["token"] == token
    missing = await api.call("GET", "/key/info", params={"key": "sk-no-such-key"})
    assert missing.status == 404


async def test_a_virtual_key_cannot_manage_keys(api: Api) -> None:
    key = (await api.generate())["key"]
    other = (await api.generate())["token"]
    for method, path, body in [
        ("POST", "/key/generate", {}),
        ("GET", "/key/list", None),
        ("POST", "/key/update", {"key": other, "rpm_limit": 1}),
        ("POST", "/key/delete", {"keys": [other]}),
        ("POST", "/key/regenerate", {"key": other}),
        ("POST", "/key/block", {"key": other}),
        ("POST", "/key/unblock", {"key": other}),
    ]:
        reply = await api.call(method, path, token=key, json=body)
        assert reply.status == 403, path
    reply = await api.call("GET", "/key/info", token=key, params={"key": other})
    assert reply.status == 403


async def test_admin_routes_need_a_valid_token(api: Api) -> None:
    assert (await api.call("POST", "/key/generate", token=None, json={})).status == 401
    assert (await api.call("POST", "/key/generate", token="wrong", json={})).status == 401


async def test_list_pages_filters_and_full_objects(api: Api) -> None:
    tokens = {(await api.generate(user_id="u-list", team_id="t-list"))["token"] for _ in range(3)}
    await api.generate(user_id="u-other")
    page = await api.call("GET", "/key/list", params={"user_id": "u-list", "size": "2"})
    assert page.status == 200
    assert (page.body["total_count"], page.body["total_pages"], page.body["current_page"]) == (
        3,
        2,
        1,
    )
    second = await api.call(
        "GET", "/key/list", params={"user_id": "u-list", "size": "2", "page": "2"}
    )
    assert set(page.body["keys"]) | set(second.body["keys"]) == tokens
    full = await api.call(
        "GET", "/key/list", params={"team_id": "t-list", "return_full_object": "true"}
    )
    assert {k["token"] for k in full.body["keys"]} == tokens
    assert (await api.call("GET", "/key/list", params={"size": "1000"})).status == 422
    assert (await api.call("GET", "/key/list", params={"sort": "x"})).status == 422


async def test_update_applies_at_once(api: Api) -> None:
    created = await api.generate(key_alias="upd", models=["a"], metadata={"k": "v"})
    key = created["key"]
    assert (await api.use(key, model="b")).status == 403
    reply = await api.call(
        "POST", "/key/update", json={"key": key, "models": ["a", "b"], "tpm_limit": 5}
    )
    assert reply.status == 200
    assert reply.body["models"] == ["a", "b"] and reply.body["metadata"] == {"k": "v"}
    assert (await api.use(key, model="b")).status == 200
    cleared = await api.call("POST", "/key/update", json={"key": key, "tpm_limit": None})
    assert cleared.body["tpm_limit"] is None


async def test_allowed_deployments_reach_the_principal_and_change_at_once(api: Api) -> None:
    created = await api.generate(allowed_deployments=["eu-west", "us-east"])
    key = created["key"]
    assert created["allowed_deployments"] == ["eu-west", "us-east"]
    assert (await api.use(key)).body["allowed_deployments"] == ["eu-west", "us-east"]
    reply = await api.call(
        "POST", "/key/update", json={"key": key, "allowed_deployments": ["eu-west"]}
    )
    assert reply.status == 200 and reply.body["allowed_deployments"] == ["eu-west"]
    assert (await api.use(key)).body["allowed_deployments"] == ["eu-west"]
    info = await api.call("GET", "/key/info", params={"key": created["token"]})
    assert info.body["info"]["allowed_deployments"] == ["eu-west"]
    refused = await api.call(
        "POST", "/key/update", json={"key": key, "allowed_deployments": ["eu-west", "a/b"]}
    )
    assert refused.status == 422
    assert "'allowed_deployments.1'" in refused.body["error"]["message"]
    assert (await api.use(key)).body["allowed_deployments"] == ["eu-west"]
    cleared = await api.call("POST", "/key/update", json={"key": key, "allowed_deployments": None})
    assert cleared.body["allowed_deployments"] == []
    assert (await api.use(key)).body["allowed_deployments"] == []


async def test_block_then_unblock(api: Api) -> None:
    created = await api.generate()
    key = created["key"]
    assert (await api.use(key)).status == 200
    reply = await api.call("POST", "/key/block", json={"key": created["token"]})
    assert reply.status == 200 and reply.body["blocked"] is True
    refused = await api.use(key)
    assert refused.status == 401 and refused.body["error"]["code"] == "key_blocked"
    assert (await api.call("POST", "/key/unblock", json={"key": key})).status == 200
    assert (await api.use(key)).status == 200


async def test_delete_by_keys_and_by_aliases(api: Api) -> None:
    first = await api.generate()
    second = await api.generate(key_alias="del-me")
    assert (await api.use(first["key"])).status == 200
    reply = await api.call("POST", "/key/delete", json={"keys": [first["key"]]})
    assert reply.status == 200 and reply.body["deleted_keys"] == [first["token"]]
    reply = await api.call("POST", "/key/delete", json={"key_aliases": ["del-me"]})
    assert reply.body["deleted_keys"] == [second["token"]]
    for key in (first["key"], second["key"]):
        assert (await api.use(key)).status == 401
    again = await api.call("POST", "/key/delete", json={"key_aliases": ["del-me"]})
    assert again.status == 404


async def test_regenerate_stops_the_old_secret_at_once(api: Api) -> None:
    created = await api.generate(key_alias="regen", rpm_limit=7)
    old = created["key"]
    assert (await api.use(old)).status == 200
    reply = await api.call("POST", "/key/regenerate", json={"key": old})
    assert reply.status == 200
    new = reply.body["key"]
    assert new != old and reply.body["token"] == hash_key(new)
    assert (reply.body["key_alias"], reply.body["rpm_limit"]) == ("regen", 7)
    refused = await api.use(old)
    assert refused.status == 401 and refused.body["error"]["code"] == "invalid_api_key"
    assert (await api.use(new)).body["key_alias"] == "regen"


async def test_regenerate_with_a_grace_period_keeps_the_old_secret_working(api: Api) -> None:
    old = (await api.generate())["key"]
    assert (await api.use(old)).status == 200
    reply = await api.call("POST", "/key/regenerate", json={"key": old, "grace_period": "1h"})
    assert (await api.use(old)).status == 200
    assert (await api.use(reply.body["key"])).status == 200
    # Regenerating again ends the first secret's grace: only the latest replaced one lives.
    again = await api.call("POST", "/key/regenerate", json={"key": reply.body["key"]})
    assert (await api.use(old)).status == 401
    assert (await api.use(reply.body["key"])).status == 401
    assert (await api.use(again.body["key"])).status == 200


async def test_an_expired_key_is_refused(api: Api) -> None:
    key = (await api.generate(duration="1s"))["key"]
    deadline = time.monotonic() + 10
    reply = await api.use(key)
    while reply.status == 200 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        reply = await api.use(key)
    assert reply.status == 401 and reply.body["error"]["code"] == "key_expired"


async def test_model_allowlist_on_chat_and_ocr(api: Api) -> None:
    key = (await api.generate(models=["mistral-small-latest", "mistral-ocr-latest"]))["key"]
    assert (await api.use(key, CHAT, "mistral-small-latest")).status == 200
    assert (await api.use(key, OCR, "mistral-ocr-latest")).status == 200
    refused = await api.use(key, CHAT, "mistral-large-latest")
    assert refused.status == 403 and "mistral-large-latest" in refused.body["error"]["message"]
    unreadable = await api.use(key, OCR, None)
    assert unreadable.status == 400 and "model" in unreadable.body["error"]["message"]


async def test_allowed_routes(api: Api) -> None:
    key = (await api.generate(allowed_routes=[OCR]))["key"]
    assert (await api.use(key, OCR)).status == 200
    assert (await api.use(key, CHAT)).status == 403


async def test_the_master_key_works_everywhere(api: Api) -> None:
    assert (await api.use(MASTER, CHAT, None)).body["kind"] == "master"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"max_budget": -1}, "max_budget"),
        ({"duration": "soon"}, "duration"),
        ({"models": "mistral-small-latest"}, "models"),
        ({"rpm_limit": "10"}, "rpm_limit"),
        ({"unknown_field": 1}, "unknown_field"),
        ({"key": "not-sk"}, "key"),
        ({"allowed_deployments": ["eu west"]}, "allowed_deployments.0"),
        ({"allowed_deployments": ["d"] * 1001}, "allowed_deployments"),
    ],
)
async def test_invalid_fields_are_422_naming_the_field(
    api: Api, body: dict[str, Any], field: str
) -> None:
    reply = await api.call("POST", "/key/generate", json=body)
    assert reply.status == 422
    assert field in reply.body["error"]["message"]


async def test_bad_bodies(api: Api) -> None:
    assert (await api.call("POST", "/key/generate", data=b"{nope")).status == 400
    assert (await api.call("POST", "/key/update", json={"rpm_limit": 1})).status == 422
    huge = b'{"metadata": {"x": "' + b"a" * (2 * 1024 * 1024) + b'"}}'
    assert (await api.call("POST", "/key/generate", data=huge)).status == 413
    taken = await api.generate(key_alias="dup")
    assert (await api.call("POST", "/key/generate", json={"key_alias": "dup"})).status == 409
    assert (await api.call("POST", "/key/delete", json={"keys": [taken["token"]]})).status == 200


PROBES = [
    "' OR '1'='1",
    "x' OR (SELECT pg_sleep(3)) IS NOT NULL--",
    "sk-'OR(SELECT(pg_sleep(3)))IS(NOT(NULL))--",
    "'; DROP TABLE keys; --",
    '" OR ""="',
    "sk-1' UNION SELECT token FROM keys--",
    "%27%20OR%201%3D1",
    "\\x00' OR 1=1",
]


async def test_sql_injection_probes_never_cause_a_500(api: Api) -> None:
    survivor = await api.generate(key_alias="survivor-probe")
    for probe in PROBES:
        started = time.monotonic()
        reply = await api.use(probe)
        # pg_sleep(3) would run if the probe reached SQL: a margin, not a benchmark.
        assert time.monotonic() - started < 2.5
        assert reply.status == 401, probe
        reply = await api.call("GET", "/key/info", params={"key": probe})
        assert reply.status in (404, 422), probe
        for name in ("user_id", "team_id", "key_alias", "page", "size"):
            reply = await api.call("GET", "/key/list", params={name: probe})
            assert reply.status in (200, 422), (name, probe)
            if reply.status == 200:
                assert reply.body["total_count"] == 0
        for path in ("/key/update", "/key/block", "/key/unblock", "/key/regenerate"):
            reply = await api.call("POST", path, json={"key": probe})
            assert reply.status in (404, 422), (path, probe)
        reply = await api.call("POST", "/key/delete", json={"keys": [probe]})
        assert reply.status in (404, 422)
        reply = await api.call("POST", "/key/delete", json={"key_aliases": [probe]})
        assert reply.status == 404
        created = await api.generate(
            key_alias=f"probe {probe} {time.monotonic_ns()}",
            user_id=probe,
            team_id=probe,
            models=[probe],
            metadata={probe: probe},
        )
        assert created["user_id"] == probe and created["models"] == [probe]
        assert (
            await api.call("POST", "/key/delete", json={"keys": [created["token"]]})
        ).status == 200
    info = await api.call("GET", "/key/info", params={"key": survivor["token"]})
    assert info.status == 200
    assert all(b.startswith(b'{"error":') for b in api.error_bodies)


async def test_secrets_never_reach_logs_or_error_bodies(
    api: Api, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level("DEBUG")
    # SQLAlchemy keeps its own logger at WARNING; open it up too, as an operator
    # debugging SQL would (statement logs must not show the hashes bound into them).
    caplog.set_level("DEBUG", logger="sqlalchemy")
    created = await api.generate(key_alias="quiet", models=["allowed-model"])
    key, token = created["key"], created["token"]
    await api.use(key, model="allowed-model")
    await api.use(key, model="other-model")
    await api.call("GET", "/key/info", params={"key": key})
    await api.call("GET", "/key/info", token=key)
    regenerated = await api.call("POST", "/key/regenerate", json={"key": key})
    new_key, new_token = regenerated.body["key"], regenerated.body["token"]
    await api.use(key)
    await api.use(new_key, model="other-model")
    await api.call("POST", "/key/update", json={"key": new_key, "key_alias": "quiet"})
    await api.call("POST", "/key/block", json={"key": new_key})
    await api.use(new_key)
    await api.call("POST", "/key/generate", json={"key": new_key})
    await api.call("POST", "/key/delete", json={"keys": [new_key]})
    await api.use(new_key)
    await api.call("POST", "/key/delete", json={"keys": [new_key]})
    await api.call("POST", "/key/generate", token=new_key, json={})
    await asyncio.sleep(0.1)  # let the server thread finish logging
    out, err = capfd.readouterr()
    # passgate runs uvicorn with access_log=False; pytest still hooks its capture onto
    # uvicorn's (non-propagating) access logger, whose lines show the raw query string
    # that LiteLLM's GET /key/info?key=... carries. Those lines exist only under pytest.
    records = [r for r in caplog.records if r.name != "uvicorn.access"]
    seen = "\n".join(caplog.handler.format(r) for r in records) + out + err
    assert records, "expected some log output to check"
    secrets = (key, token, new_key, new_token, MASTER)
    for secret in secrets:
        assert secret not in seen
        for body in api.error_bodies:
            assert secret.encode() not in body
    assert len(api.error_bodies) >= 6


async def test_keys_survive_a_restart(tmp_path: Path) -> None:
    await _restart_check(sqlite_url(tmp_path))


@pytest.mark.postgres
async def test_keys_survive_a_restart_on_postgres() -> None:
    async with fresh_postgres() as url:
        await _restart_check(url)


async def _restart_check(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        with ServerThread(key_app(url, MASTER)) as first:
            key = (await Api(session, first.url).generate(key_alias="durable"))["key"]
        with ServerThread(key_app(url, MASTER)) as second:
            reply = await Api(session, second.url).use(key)
    assert (reply.status, reply.body["key_alias"]) == (200, "durable")


async def test_open_gateway_runs_the_seed_flow(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    async with aiohttp.ClientSession() as session:
        with ServerThread(key_app(url, None)) as server:
            api = Api(session, server.url)
            reply = await api.call("POST", "/key/generate", token="sk-1234", json={})
            assert reply.status == 200 and reply.body["key"].startswith("sk-")
            key = reply.body["key"]
            assert (await api.use(key)).body["kind"] == "virtual"
            assert (await api.use("anything")).body["kind"] == "open"


async def test_a_change_made_on_another_instance_applies_within_the_cache_ttl(
    tmp_path: Path,
) -> None:
    url = sqlite_url(tmp_path)
    async with aiohttp.ClientSession() as session:
        with (
            ServerThread(key_app(url, MASTER)) as one,
            ServerThread(key_app(url, MASTER, cache_ttl=0.5)) as two,
        ):
            first, second = Api(session, one.url), Api(session, two.url)
            key = (await first.generate())["key"]
            assert (await second.use(key)).status == 200
            await first.call("POST", "/key/block", json={"key": key})
            deadline = time.monotonic() + 10
            reply = await second.use(key)
            while reply.status == 200 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
                reply = await second.use(key)
            assert reply.status == 401
