"""Database URLs and async engines: SQLite by default, PostgreSQL when asked.

Users paste ``postgresql://`` / ``postgres://`` URLs (the forms LiteLLM documents) and
``sqlite:///path``; the gateway picks the async driver itself (asyncpg, aiosqlite).
Engines hide bound parameters from logs and error messages, because those
parameters include key hashes.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy import create_engine as _create_sync_engine
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine
from sqlalchemy.pool import StaticPool

from passgate.config import Settings

SQLITE_DRIVER = "sqlite+aiosqlite"
POSTGRES_DRIVER = "postgresql+asyncpg"
DEFAULT_FILE = "passgate.db"
SQLITE_BUSY_TIMEOUT_MS = 10_000


class DatabaseUrlError(ValueError):
    """The database URL names no supported database."""


def normalize_url(url: str) -> str:
    """Rewrite a user's database URL to the async driver passgate uses."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise DatabaseUrlError("DATABASE_URL is not a valid database URL") from exc
    backend = parsed.drivername.split("+", 1)[0]
    if backend in ("postgres", "postgresql"):
        query = dict(parsed.query)
        if "sslmode" in query:
            # libpq spelling; asyncpg takes the same values under the name "ssl".
            query["ssl"] = query.pop("sslmode")
        parsed = parsed.set(drivername=POSTGRES_DRIVER, query=query)
    elif backend == "sqlite":
        parsed = parsed.set(drivername=SQLITE_DRIVER)
    else:
        raise DatabaseUrlError(
            "DATABASE_URL must start with postgresql://, postgres:// or sqlite:///"
        )
    return parsed.render_as_string(hide_password=False)


def database_url(settings: Settings) -> str:
    """The async URL for these settings; the default SQLite file lives in ``data_dir``."""
    if settings.database_url:
        return normalize_url(settings.database_url)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return URL.create(
        SQLITE_DRIVER, database=str(settings.data_dir / DEFAULT_FILE)
    ).render_as_string()


def is_sqlite(url: str) -> bool:
    """True when the URL points at SQLite."""
    return make_url(url).get_backend_name() == "sqlite"


def is_postgres(url: str) -> bool:
    """True when the URL points at PostgreSQL."""
    return make_url(url).get_backend_name() == "postgresql"


def redacted(url: str) -> str:
    """The URL with its password masked, for messages."""
    return make_url(url).render_as_string(hide_password=True)


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # busy_timeout makes a second writer (another worker process) wait instead of
        # failing with "database is locked"; WAL lets readers run while a writer writes.
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA journal_mode")
        if str(cursor.fetchone()[0]).lower() != "wal":
            # Another connection may hold a lock (it is converting the file, or
            # migrating it); WAL is a property of the file, set by whoever wins.
            with contextlib.suppress(sqlite3.OperationalError):
                cursor.execute("PRAGMA journal_mode=WAL")
    finally:
        cursor.close()


def _cap_sql_logs() -> None:
    # At DEBUG, aiosqlite logs every call with its bound parameters and SQLAlchemy logs
    # every result row; both would put key hashes in the logs, whatever level the root
    # logger is set to. At INFO SQLAlchemy logs every statement, which is noise on the
    # request path; WARNING keeps only what an operator must see.
    for name in ("aiosqlite", "sqlalchemy.engine"):
        logger = logging.getLogger(name)
        if logger.level < logging.WARNING:
            logger.setLevel(logging.WARNING)


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine for a (normalized or raw) database URL."""
    url = normalize_url(url)
    kwargs.setdefault("hide_parameters", True)
    _cap_sql_logs()
    if is_sqlite(url):
        database = make_url(url).database
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        # sqlite3 keeps each connection's last 128 prepared statements (cached_statements):
        # cheap for a fixed set of statements, a lot of memory when every batch size of a
        # many-row INSERT is a new text, hence the spend writer's fixed shapes (spend_sql)
        engine = _create_async_engine(url, **kwargs)
        event.listen(engine.sync_engine, "connect", _set_sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return _create_async_engine(url, **kwargs)


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions whose loaded rows stay readable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


def sqlite_file_twin(engine: AsyncEngine) -> Engine | None:
    """A blocking engine on the same SQLite file as ``engine`` (None when not a SQLite file).

    For work done whole in one worker thread: through aiosqlite every statement is a round
    trip to its thread that waits for a turn of the (busy) event loop, which left the spend
    writer behind the traffic under load. One connection, kept (its page cache warm: a new
    connection per batch costs more than the batch's rows), with the same pragmas; the
    caller must not use it from two threads at once. An in-memory database has no second
    connection to share: None.
    """
    url = engine.url
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    twin = _create_sync_engine(
        url.set(drivername="sqlite+pysqlite"),
        poolclass=StaticPool,
        connect_args={"check_same_thread": False},  # opened in the writer's thread, closed here
        hide_parameters=True,
    )
    event.listen(twin, "connect", _set_sqlite_pragmas)
    return twin
