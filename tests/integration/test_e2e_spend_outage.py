"""Acceptance for spend tracking: nothing is lost through a database outage or a SIGTERM.

The PostgreSQL outage never touches the shared server: the test's own database is closed
to new connections (``ALLOW_CONNECTIONS false``) and its sessions terminated, from an admin
connection, then reopened. The SQLite outage is another connection holding the file's
write lock longer than the gateway's busy timeout. Requests use a virtual key that the
gateway has cached, with a key-cache TTL (1 s) that expires many times during the outage.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool

from passgate.storage.db import create_engine
from tests.conftest import GatewayFactory
from tests.integration.test_e2e_spend import (
    ADMIN,
    CHAT,
    MESSAGES,
    bearer,
    request_id,
    spend_env,
    token_cost,
)
from tests.support.databases import fresh_postgres
from tests.support.fake_mistral import FakeMistral
from tests.support.gateway import GatewayProcess
from tests.support.services import PG_DSN

MODEL = "mistral-small-latest"
COST = token_cost(MODEL)
JSON_BODY = orjson.dumps({"model": MODEL, "messages": MESSAGES})
STREAM_BODY = orjson.dumps({"model": MODEL, "messages": MESSAGES, "stream": True})
REQUESTS = 200
WAVES = 20  # REQUESTS are sent in WAVES waves spread over the outage
SQLITE_BUSY_TIMEOUT = 10.0  # passgate.storage.db waits this long for a locked SQLite file


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        yield session


async def get_json(http: aiohttp.ClientSession, url: str, **params: str) -> Any:
    async with http.get(url, params=params, headers=ADMIN) as reply:
        assert reply.status == 200, await reply.text()
        return await reply.json()


async def new_key(http: aiohttp.ClientSession, gateway: GatewayProcess, alias: str) -> str:
    async with http.post(
        gateway.url + "/key/generate", json={"key_alias": alias}, headers=ADMIN
    ) as reply:
        assert reply.status == 200, await reply.text()
        secret: str = (await reply.json())["key"]
        return secret


async def chat(
    http: aiohttp.ClientSession, gateway: GatewayProcess, key: str, rid: str, stream: bool = False
) -> tuple[int, bytes]:
    headers = bearer(key, **{"Content-Type": "application/json", "x-request-id": rid})
    body = STREAM_BODY if stream else JSON_BODY
    async with http.post(gateway.url + CHAT, data=body, headers=headers) as reply:
        return reply.status, await reply.read()


async def rows_of(http: aiohttp.ClientSession, gateway: GatewayProcess, key: str) -> list[Any]:
    page = await get_json(http, gateway.url + "/spend/logs", key=key, size="1000")
    assert page["total"] <= 1000
    rows: list[Any] = page["data"]
    return rows


async def wait_for_rows(
    http: aiohttp.ClientSession, gateway: GatewayProcess, key: str, count: int, timeout: float
) -> list[Any]:
    """The key's rows once ``count`` have landed (the writer may be in its backoff)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = await rows_of(http, gateway, key)
        if len(rows) >= count:
            return rows
        assert time.monotonic() < deadline, f"{len(rows)} of {count} rows after {timeout}s"
        await asyncio.sleep(0.1)


async def traffic_during(
    http: aiohttp.ClientSession, gateway: GatewayProcess, key: str, seconds: float
) -> list[str]:
    """REQUESTS calls spread over ``seconds``; every one must succeed. Their request ids."""
    sent: list[str] = []
    per_wave = REQUESTS // WAVES
    for _ in range(WAVES):
        rids = [request_id() for _ in range(per_wave)]
        replies = await asyncio.gather(*(chat(http, gateway, key, rid) for rid in rids))
        assert [status for status, _ in replies] == [200] * per_wave, replies[0][1]
        sent += rids
        await asyncio.sleep(seconds / WAVES)
    return sent


async def assert_exactly_these_rows(
    http: aiohttp.ClientSession, gateway: GatewayProcess, key: str, sent: list[str]
) -> None:
    rows = await wait_for_rows(http, gateway, key, len(sent), timeout=20.0)
    await asyncio.sleep(0.3)  # a duplicate or a stray row would have landed by now
    rows = await rows_of(http, gateway, key)
    assert sorted(row["request_id"] for row in rows) == sorted(sent)
    assert all(row["status"] == 200 for row in rows)
    assert all(row["cost"] == pytest.approx(COST, rel=1e-9) for row in rows)
    info = await get_json(http, gateway.url + "/key/info", key=key)
    assert info["info"]["spend"] == pytest.approx(len(sent) * COST, rel=1e-9)


async def _close_database(admin: AsyncEngine, name: str) -> None:
    async with admin.connect() as conn:
        await conn.exec_driver_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = :name AND pid <> pg_backend_pid()"
            ),
            {"name": name},
        )


async def _reopen_database(admin: AsyncEngine, name: str) -> None:
    async with admin.connect() as conn:
        await conn.exec_driver_sql(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


async def _refuses_connections(url: str) -> bool:
    probe = create_engine(url, poolclass=NullPool)
    try:
        async with probe.connect():
            return False
    except Exception:
        return True
    finally:
        await probe.dispose()


async def test_postgres_outage_keeps_requests_flowing_and_loses_no_row(
    upstream: FakeMistral, start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    async with fresh_postgres() as url:
        name = make_url(url).database
        assert name is not None
        gateway = start_gateway(spend_env(upstream, DATABASE_URL=url, PASSGATE_KEY_CACHE_TTL="1"))
        key = await new_key(http, gateway, "pg-outage")
        warm = request_id()
        assert (await chat(http, gateway, key, warm))[0] == 200  # the key is now cached
        await wait_for_rows(http, gateway, key, 1, timeout=10.0)
        admin = create_engine(PG_DSN, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        try:
            await _close_database(admin, name)
            assert await _refuses_connections(url)
            sent = await traffic_during(http, gateway, key, seconds=10.0)
            assert await _refuses_connections(url)  # the outage lasted the whole traffic
        finally:
            await _reopen_database(admin, name)
            await admin.dispose()
        await assert_exactly_these_rows(http, gateway, key, [warm, *sent])
        logs = gateway.logs()
        assert "database unavailable" in logs  # the writer did meet the outage
        assert "serving cached keys" in logs  # and so did the key cache, its TTL expired
        await asyncio.to_thread(gateway.stop)


async def test_sqlite_write_lock_keeps_requests_flowing_and_loses_no_row(
    upstream: FakeMistral, start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    gateway = start_gateway(spend_env(upstream, PASSGATE_KEY_CACHE_TTL="1"))
    key = await new_key(http, gateway, "sqlite-outage")
    warm = request_id()
    assert (await chat(http, gateway, key, warm))[0] == 200
    await wait_for_rows(http, gateway, key, 1, timeout=10.0)
    blocker = sqlite3.connect(gateway.data_dir / "passgate.db", isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        # longer than the busy timeout: the writer's attempt fails and is retried
        sent = await traffic_during(http, gateway, key, seconds=SQLITE_BUSY_TIMEOUT + 1.5)
        assert "database unavailable" in gateway.logs()
        blocker.execute("ROLLBACK")
    finally:
        blocker.close()
    await assert_exactly_these_rows(http, gateway, key, [warm, *sent])


async def test_sigterm_under_load_keeps_the_row_of_every_completed_request(
    upstream: FakeMistral,
    start_gateway: GatewayFactory,
    http: aiohttp.ClientSession,
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    # rows are only written when 500 are queued or after 60 s: what lands, SIGTERM flushed
    env = spend_env(upstream, PASSGATE_SPEND_FLUSH_INTERVAL="60")
    gateway = start_gateway(env, data_dir=data)
    key = await new_key(http, gateway, "sigterm")
    upstream.configure(event_delay=0.05)  # streams stay in flight ~0.2 s each
    completed: list[str] = []
    attempted: list[str] = []
    endings: list[str] = []  # why each client stopped
    stop = asyncio.Event()

    async def client(number: int) -> None:
        while not stop.is_set():
            rid, stream = request_id(), number % 2 == 0
            attempted.append(rid)
            try:
                status, body = await chat(http, gateway, key, rid, stream)
            except aiohttp.ClientError as exc:
                endings.append(repr(exc))  # the gateway is going away
                return
            if status != 200:
                endings.append(f"{status}: {body[:200]!r}")
                return
            if not stream or body.endswith(b"data: [DONE]\n\n"):
                completed.append(rid)

    clients = [asyncio.ensure_future(client(n)) for n in range(16)]
    deadline = time.monotonic() + 10.0
    while len(completed) < 100:
        assert not endings, endings
        assert time.monotonic() < deadline, f"{len(completed)} calls completed in 10 s"
        await asyncio.sleep(0.01)
    assert await rows_of(http, gateway, key) == []  # nothing flushed yet
    await asyncio.to_thread(gateway.stop)  # SIGTERM with streams in flight
    stop.set()
    await asyncio.gather(*clients)
    logs = gateway.logs()
    assert "unwritten" not in logs and "Traceback" not in logs, logs

    restarted = start_gateway(env, data_dir=data)
    rows = await rows_of(http, restarted, key)
    stored = {row["request_id"] for row in rows}
    assert set(completed) <= stored
    assert stored <= set(attempted)
    assert len(rows) == len(stored)
    by_id = {row["request_id"]: row for row in rows}
    for rid in completed:
        assert by_id[rid]["interrupted"] is False
        assert by_id[rid]["cost"] == pytest.approx(COST, rel=1e-9)


def _spend_process(gateway: GatewayProcess) -> psutil.Process:
    for child in psutil.Process(gateway.pid).children(recursive=True):
        if "passgate.runtime.spend_process" in " ".join(child.cmdline()):
            return child
    raise AssertionError("no spend-writer process under the gateway")


async def test_a_killed_spend_writer_process_is_replaced_and_later_rows_land(
    upstream: FakeMistral, start_gateway: GatewayFactory, http: aiohttp.ClientSession
) -> None:
    gateway = start_gateway(spend_env(upstream), workers=2)
    key = await new_key(http, gateway, "spend-process-killed")
    before = [request_id() for _ in range(20)]
    for rid in before:
        assert (await chat(http, gateway, key, rid))[0] == 200
    await wait_for_rows(http, gateway, key, len(before), timeout=10.0)
    first = _spend_process(gateway)
    first.kill()  # rows it held would be lost; it holds none now (all 20 are stored)
    first.wait(5)
    after = [request_id() for _ in range(50)]
    replies = await asyncio.gather(*(chat(http, gateway, key, rid) for rid in after))
    assert [status for status, _ in replies] == [200] * len(after)  # calls never wait for it
    await assert_exactly_these_rows(http, gateway, key, before + after)
    assert _spend_process(gateway).pid != first.pid
    assert "spend-writer process exited" in gateway.logs()


@pytest.mark.parametrize("workers", [1, 2])
async def test_sigterm_waits_for_the_spend_writer_and_removes_its_socket(
    upstream: FakeMistral,
    start_gateway: GatewayFactory,
    http: aiohttp.ClientSession,
    workers: int,
) -> None:
    gateway = start_gateway(spend_env(upstream), workers=workers)
    key = await new_key(http, gateway, f"sigterm-socket-{workers}")
    assert (await chat(http, gateway, key, request_id()))[0] == 200
    writer = _spend_process(gateway)
    sockets = [Path(str(c.laddr)) for c in writer.net_connections(kind="unix") if c.laddr]
    assert sockets and all(path.exists() for path in sockets)
    await asyncio.to_thread(gateway.stop)
    # the server exits only after its spend writer has stored what it held and exited
    assert not writer.is_running()
    assert not any(path.parent.exists() for path in sockets)
