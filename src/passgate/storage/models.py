"""The gateway's tables (SQLAlchemy 2 declarative); Alembic migrations create them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    false,
    func,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware.

    SQLite has no timezone type and returns naive values; this keeps both backends alike.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Budgeted:
    """The budget columns every owner of spend has: a key, a user, a team, an end user."""

    max_budget: Mapped[float | None] = mapped_column(Float)
    budget_duration: Mapped[str | None] = mapped_column(String(32))
    budget_reset_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    spend: Mapped[float] = mapped_column(Float, default=0.0, server_default=text("0"))


class Described:
    """Free-form metadata and the creation time, kept by keys and every budget owner."""

    metadata_: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSON, default=dict, server_default=text("'{}'")
    )
    created_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, server_default=func.now()
    )


class Key(Budgeted, Described, Base):
    """A virtual key, stored by the SHA-256 hash of its secret (never the secret)."""

    __tablename__ = "keys"

    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_alias: Mapped[str | None] = mapped_column(String(256), unique=True)
    user_id: Mapped[str | None] = mapped_column(String(256), index=True)
    team_id: Mapped[str | None] = mapped_column(String(256), index=True)
    end_user_id: Mapped[str | None] = mapped_column(String(256), index=True)
    models: Mapped[list[str]] = mapped_column(JSON, default=list, server_default=text("'[]'"))
    allowed_routes: Mapped[list[str]] = mapped_column(
        JSON, default=list, server_default=text("'[]'")
    )
    allowed_deployments: Mapped[list[str]] = mapped_column(
        JSON, default=list, server_default=text("'[]'")
    )
    rpm_limit: Mapped[int | None] = mapped_column(Integer)
    tpm_limit: Mapped[int | None] = mapped_column(Integer)
    max_parallel_requests: Mapped[int | None] = mapped_column(Integer)
    blocked: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    expires: Mapped[datetime | None] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(
        UTCDateTime, default=utcnow, onupdate=utcnow, server_default=func.now()
    )
    grace_token: Mapped[str | None] = mapped_column(String(64), index=True)
    grace_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class User(Budgeted, Described, Base):
    """An internal user that keys can belong to, with its own budget."""

    __tablename__ = "users"

    user_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    user_alias: Mapped[str | None] = mapped_column(String(256))


class Team(Budgeted, Described, Base):
    """A team that keys can belong to, with its own budget."""

    __tablename__ = "teams"

    team_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    team_alias: Mapped[str | None] = mapped_column(String(256))


class EndUser(Budgeted, Described, Base):
    """A customer of the key holder (the ``user`` field of a request), with a budget."""

    __tablename__ = "end_users"

    end_user_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    blocked: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class SpendLog(Base):
    """One relayed call: who made it, what it used and what it cost."""

    __tablename__ = "spend_logs"

    # the gateway's id: x-request-id comes from clients, who may repeat it
    call_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(128), index=True)
    start_time: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    first_byte_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_time: Mapped[datetime | None] = mapped_column(UTCDateTime)
    token: Mapped[str | None] = mapped_column(String(64), index=True)
    key_alias: Mapped[str | None] = mapped_column(String(256))
    user_id: Mapped[str | None] = mapped_column(String(256))
    team_id: Mapped[str | None] = mapped_column(String(256))
    end_user: Mapped[str | None] = mapped_column(String(256), index=True)
    method: Mapped[str] = mapped_column(String(16))
    route: Mapped[str] = mapped_column(Text)
    upstream_path: Mapped[str | None] = mapped_column(Text)
    provider: Mapped[str | None] = mapped_column(String(64))
    deployment: Mapped[str | None] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(256), index=True)
    stream: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    status: Mapped[int] = mapped_column(Integer)
    prompt_tokens: Mapped[int | None] = mapped_column(Integer)
    completion_tokens: Mapped[int | None] = mapped_column(Integer)
    cached_tokens: Mapped[int | None] = mapped_column(Integer)
    total_tokens: Mapped[int | None] = mapped_column(Integer)
    pages: Mapped[int | None] = mapped_column(Integer)
    annotated_pages: Mapped[int | None] = mapped_column(Integer)
    audio_seconds: Mapped[float | None] = mapped_column(Float)
    characters: Mapped[int | None] = mapped_column(Integer)
    cache_write_tokens: Mapped[int | None] = mapped_column(Integer)
    reasoning_tokens: Mapped[int | None] = mapped_column(Integer)
    search_units: Mapped[int | None] = mapped_column(Integer)
    images: Mapped[int | None] = mapped_column(Integer)
    cache_write_1h_tokens: Mapped[int | None] = mapped_column(Integer)
    cost: Mapped[float | None] = mapped_column(Float)  # None: the model has no price
    latency_ms: Mapped[float | None] = mapped_column(Float)
    ttfb_ms: Mapped[float | None] = mapped_column(Float)
    upstream_request_id: Mapped[str | None] = mapped_column(String(256))
    error: Mapped[str | None] = mapped_column(Text)
    interrupted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    tags: Mapped[list[str]] = mapped_column(JSON, default=list, server_default=text("'[]'"))


class ResourceHome(Base):
    """The deployment a provider resource (a file, a batch job, an agent ...) was created on:
    later calls naming it go there, since it exists nowhere else."""

    __tablename__ = "resource_homes"

    provider: Mapped[str] = mapped_column(String(64), primary_key=True)
    resource_id: Mapped[str] = mapped_column(String(512), primary_key=True)
    deployment: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class KeyChange(Base):
    """A key changed (updated, blocked, regenerated, deleted): workers drop their cached copy.

    Written in the same transaction as the change, and read by every worker and
    instance, so a change applies everywhere without Redis (``auth/key_feed.py``).
    """

    __tablename__ = "key_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token: Mapped[str] = mapped_column(String(64))
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class SpendRollup(Base):
    """Totals of the spend rows per hour, UTC day and UTC week (from Monday), overall and per
    key, user, team, end user, model and route family: one row per (period, dimension,
    start, value).

    The spend writer adds each batch's rows here in the same transaction as the rows, so
    charts and totals read this table and never scan ``spend_logs``. The dimension ``all``
    has the value ``''``; so has any other dimension a row does not name (never NULL: the
    primary key is the upsert target). Dimensions are kept apart, not crossed, so a
    dimension has at most one row per value seen in each hour or day.
    """

    __tablename__ = "spend_rollups"
    __table_args__ = (
        # retention's oldest first, one period at a time. Not on start alone: PostgreSQL
        # judges such an index cheap to read in order and picked it for a range of one
        # dimension, reading every period's and dimension's rows of the range instead of
        # the primary key's one range
        Index("ix_spend_rollups_period_start", "period", "start"),
        # SQLite: rows stored in primary-key order, so a range of one dimension is read
        # in one pass instead of one look-up per row
        {"sqlite_with_rowid": False},
    )

    period: Mapped[str] = mapped_column(String(8), primary_key=True)  # hour | day | week
    dimension: Mapped[str] = mapped_column(String(16), primary_key=True)
    start: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    value: Mapped[str] = mapped_column(String(256), primary_key=True)
    requests: Mapped[int] = mapped_column(BigInteger)
    errors: Mapped[int] = mapped_column(BigInteger)
    priced_requests: Mapped[int] = mapped_column(BigInteger)
    cost: Mapped[float] = mapped_column(Float)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger)
    completion_tokens: Mapped[int] = mapped_column(BigInteger)
    cached_tokens: Mapped[int] = mapped_column(BigInteger)
    total_tokens: Mapped[int] = mapped_column(BigInteger)
    pages: Mapped[int] = mapped_column(BigInteger)
    annotated_pages: Mapped[int] = mapped_column(BigInteger)
    audio_seconds: Mapped[float] = mapped_column(Float)
    characters: Mapped[int] = mapped_column(BigInteger)
    latency_ms: Mapped[float] = mapped_column(Float)  # the sum: divided by requests for a mean
