"""The web UI's data routes on a large database: p50 / p95 per page, SQLite and PostgreSQL.

    .venv/bin/python -m bench.ui_scale [--rows 1000000] [--keys 10000] [--repeat 20]
                                       [--db sqlite|postgres|both] [--pg URL]

Seeds a fresh database (a SQLite file in a temporary directory; a PostgreSQL database
created on the server of ``--pg`` and dropped afterwards) with ``--keys`` keys, users,
teams and end users, and ``--rows`` spend rows spread over the last 30 days, written with
the spend writer's own statements (so the hourly rollups are kept as in production). Then
it builds the gateway app in this process, logs in with the master key (a signed session
cookie) and requests each UI page ``--repeat`` times after two warm-up requests, through
ASGI without a network hop: the times are the page's queries plus its rendering. Prints a
markdown table; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import secrets
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from sqlalchemy import Connection, insert
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import NullPool

from passgate.accounting.spend_sql import SpendStatements
from passgate.app import build_app
from passgate.call_record import CallRecord
from passgate.config import Settings
from passgate.storage.db import create_engine
from passgate.storage.migrate import upgrade
from passgate.storage.models import EndUser, Key, Team, User
from passgate.ui.session import COOKIE, SessionCodec

MASTER = "sk-bench-master-key"
DEFAULT_PG = "postgresql://postgres@127.0.0.1:5432/test"
MODELS = ("mistral-small-latest", "mistral-large-latest", "codestral-latest", "mistral-embed")
ROUTES = (
    "/mistral/v1/chat/completions",
    "/mistral/v1/chat/completions",
    "/mistral/v1/embeddings",
    "/mistral/v1/files/file-123/content",
)
DAYS = 30
BATCH = 4096


def token(i: int) -> str:
    """Key ``i``'s hash id (a SHA-256, as the gateway stores them)."""
    return hashlib.sha256(f"bench-key-{i}".encode()).hexdigest()


def records(first: int, count: int, rows: int, keys: int, now: float) -> list[CallRecord]:
    """Call records ``first`` to ``first + count`` of ``rows`` spread evenly over the
    ``DAYS`` days before ``now``; keys, models, routes, end users and errors at random
    (every key equally likely: the most rollup rows for a number of calls)."""
    rng = random.Random(first)
    found: list[CallRecord] = []
    for n in range(first, first + count):
        k = rng.randrange(keys)
        start = now - DAYS * 86400 + (n + rng.random()) * DAYS * 86400 / rows
        status = 200 if rng.random() > 0.03 else rng.choice((400, 429, 500, 502))
        prompt, completion = rng.randrange(5, 2000), rng.randrange(1, 800)
        found.append(
            CallRecord._make(
                [
                    f"{n:032x}",
                    f"r{n:031x}",
                    start,
                    0.05,
                    0.2 + rng.random(),
                    token(k),
                    f"key-{k}",
                    f"user-{k % 1000}",
                    f"team-{k % 100}",
                    f"customer-{rng.randrange(5000)}" if rng.random() < 0.5 else None,
                    "POST",
                    rng.choice(ROUTES),
                    "/v1/chat/completions",
                    "mistral",
                    None,
                    rng.choice(MODELS),
                    False,
                    status,
                    prompt,
                    completion,
                    None,
                    prompt + completion,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    (prompt * 0.15 + completion * 0.6) / 1e6 if status == 200 else None,
                    None,
                    None if status == 200 else "upstream error",
                    False,
                    [],
                    0,
                    0,
                ]
            )
        )
    return found


def _write(conn: Connection, sql: SpendStatements, batch: list[CallRecord]) -> None:
    values: list[Any] = []
    for statement, params in sql.insert(batch, returning=False, into=values):
        conn.exec_driver_sql(statement, params)
    for statement, param_sets in sql.totals(values):
        conn.exec_driver_sql(statement, param_sets)


async def seed(engine: AsyncEngine, rows: int, keys: int) -> float:
    """Fill the database; the seconds it took."""
    began = time.perf_counter()
    async with engine.begin() as conn:
        for model, items in (
            (
                Key,
                [
                    {
                        "token": token(i),
                        "key_alias": f"key-{i}",
                        "user_id": f"user-{i % 1000}",
                        "team_id": f"team-{i % 100}",
                        "max_budget": 100.0,
                    }
                    for i in range(keys)
                ],
            ),
            (User, [{"user_id": f"user-{i}"} for i in range(1000)]),
            (Team, [{"team_id": f"team-{i}"} for i in range(100)]),
            (EndUser, [{"end_user_id": f"customer-{i}"} for i in range(5000)]),
        ):
            for start in range(0, len(items), 2000):
                await conn.execute(insert(model), items[start : start + 2000])
    sql = SpendStatements(engine.dialect)
    now = time.time()
    for first in range(0, rows, BATCH):
        batch = records(first, min(BATCH, rows - first), rows, keys, now)
        async with engine.begin() as conn:
            await conn.run_sync(_write, sql, batch)
    # the state a live database settles in after such a load: planner statistics, and on
    # PostgreSQL the vacuum autovacuum would run and the load's dirty pages written out, so
    # the pages are timed, not the aftermath of the bulk load
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        if engine.dialect.name == "postgresql":
            await conn.exec_driver_sql("VACUUM ANALYZE")
            await conn.exec_driver_sql("CHECKPOINT")
        else:
            await conn.exec_driver_sql("ANALYZE")
            await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    return time.perf_counter() - began


@asynccontextmanager
async def database(kind: str, pg: str) -> AsyncIterator[str]:
    """A fresh, migrated database of ``kind``; its URL."""
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="passgate-ui-bench-") as tmp:
            url = f"sqlite:///{Path(tmp) / 'passgate.db'}"
            await upgrade(url)
            yield url
        return
    name = "passgate_ui_bench_" + secrets.token_hex(4)
    admin = create_engine(pg, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    async with admin.connect() as conn:
        await conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        url = make_url(pg).set(database=name).render_as_string(hide_password=False)
        await upgrade(url)
        yield url
    finally:
        async with admin.connect() as conn:
            await conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.dispose()


async def get(app: Callable[..., Any], path: str, cookie: str) -> int:
    """One GET through ASGI; the status (the body is read and dropped)."""
    target, _, query = path.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": target,
        "raw_path": target.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(b"host", b"bench"), (b"cookie", f"{COOKIE}={cookie}".encode())],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


def edgy_range(today: date) -> str:
    """``from``/``to`` of the longest range within the seeded days that has the most days
    around its whole weeks: a Tuesday to a Saturday (six days on each side)."""
    first = today - timedelta(days=DAYS - 1)
    first += timedelta(days=(1 - first.weekday()) % 7)  # the first Tuesday
    last = today - timedelta(days=(today.weekday() - 5) % 7)  # the last Saturday
    return f"from={first.isoformat()}&to={last.isoformat()}"


def pages(keys: int) -> list[tuple[str, str]]:
    """(label, path) of every UI page that reads data."""
    key = token(keys // 2)[:16]
    edgy = edgy_range(datetime.now(UTC).date())
    return [
        ("overview, 24 h by hour", "/ui/?range=24h"),
        ("overview, 7 days by day", "/ui/?range=7d"),
        ("overview, 30 days by day", "/ui/?range=30d"),
        ("overview, Tuesday to Saturday", f"/ui/?{edgy}"),
        ("keys, first page", "/ui/keys"),
        ("keys, alias search", "/ui/keys?q=key-77"),
        ("keys, blocked filter", "/ui/keys?blocked=no&expired=no&page=40"),
        ("key detail", f"/ui/keys/{key}"),
        ("logs, first page", "/ui/logs"),
        ("logs, model + 5xx filter", "/ui/logs?model=codestral-latest&status=5xx"),
        ("logs, page 20", "/ui/logs?page=20"),
        ("logs, one key", f"/ui/logs?key=key-{keys // 3}"),
        ("users", "/ui/users"),
        ("end users", "/ui/end-users"),
        ("settings", "/ui/settings"),
    ]


async def measure(kind: str, url: str, keys: int, repeat: int) -> list[tuple[str, float, float]]:
    """p50 and p95 (ms) of each page."""
    settings = Settings(
        master_key=SecretStr(MASTER),
        database_url=url,
        spend_log_retention_days=0,
        log_requests=False,
    )
    gateway = build_app(settings)
    await gateway.start()
    _, cookie = SessionCodec(MASTER, 3600).new("master")
    found = []
    try:
        for label, path in pages(keys):
            times = []
            for attempt in range(repeat + 2):
                began = time.perf_counter()
                status = await get(gateway, path, cookie)
                if status != 200:
                    raise RuntimeError(f"{path}: {status}")
                if attempt >= 2:
                    times.append((time.perf_counter() - began) * 1000)
            times.sort()
            p95 = times[min(len(times) - 1, int(0.95 * len(times)))]
            found.append((label, statistics.median(times), p95))
    finally:
        await gateway.stop()
    return found


async def main_async(args: argparse.Namespace) -> None:
    kinds = ["sqlite", "postgres"] if args.db == "both" else [args.db]
    results: dict[str, list[tuple[str, float, float]]] = {}
    for kind in kinds:
        async with database(kind, args.pg) as url:
            engine = create_engine(url)
            try:
                took = await seed(engine, args.rows, args.keys)
            finally:
                await engine.dispose()
            print(f"{kind}: seeded {args.rows:,} rows and {args.keys:,} keys in {took:.0f} s")
            results[kind] = await measure(kind, url, args.keys, args.repeat)
    header = "| page | " + " | ".join(f"{k} p50 ms | {k} p95 ms" for k in kinds) + " |"
    print()
    print(header)
    print("|---|" + "---:|" * (2 * len(kinds)))
    for i, (label, _, _) in enumerate(results[kinds[0]]):
        cells = " | ".join(f"{results[k][i][1]:.1f} | {results[k][i][2]:.1f}" for k in kinds)
        print(f"| {label} | {cells} |")


def main() -> None:
    """Parse the options and run."""
    options = argparse.ArgumentParser(prog="python -m bench.ui_scale")
    options.add_argument("--rows", type=int, default=1_000_000)
    options.add_argument("--keys", type=int, default=10_000)
    options.add_argument("--repeat", type=int, default=20)
    options.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    options.add_argument("--pg", default=DEFAULT_PG)
    asyncio.run(main_async(options.parse_args()))


if __name__ == "__main__":
    main()
