"""A finished call as a ``spend_logs`` row: plain values, no secret, sized to the columns."""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import String

from passgate.exchange import Exchange, Usage
from passgate.storage.models import SpendLog

# String(n) columns: PostgreSQL refuses longer values, and several (model, end user,
# tags) come from the client, so they are cut to fit rather than poisoning a batch
LIMITS: dict[str, int] = {
    column.name: column.type.length
    for column in SpendLog.__table__.columns
    if isinstance(column.type, String) and column.type.length
}
_TEXT_MAX = 4096  # error text and paths: long enough to be useful, bounded in size


def clean(value: str | None, limit: int = _TEXT_MAX) -> str | None:
    """A string fit for any database: no NUL (PostgreSQL rejects it), at most ``limit``."""
    if value is None:
        return None
    if "\x00" in value:
        value = value.replace("\x00", "")
    return value[:limit] if len(value) > limit else value


USAGE_FIELDS = tuple(item.name for item in fields(Usage))
# What a worker sends for one call: raw values only, cheap to gather on the event loop
# (no datetimes, no cleaning); ``row_from_record`` makes the stored row of it.
RECORD_FIELDS = (
    "call_id",
    "request_id",
    "start_time",  # seconds since the epoch
    "ttfb",  # seconds from the start to the upstream's first byte, or None
    "duration",  # seconds from the start to the last byte, or None
    "token",
    "key_alias",
    "user_id",
    "team_id",
    "end_user",
    "method",
    "route",
    "upstream_path",
    "provider",
    "deployment",
    "model",
    "stream",
    "status",
    *USAGE_FIELDS,  # in Usage's order, as call_record lists them
    "cost",
    "upstream_request_id",
    "error",
    "interrupted",
    "tags",
    "bytes_in",  # not stored: the access line's
    "bytes_out",
)
Record = list[Any]


_NO_PRINCIPAL = (None, None, None, None)
_NO_USAGE = (None,) * len(USAGE_FIELDS)


def call_record(ex: Exchange) -> Record:
    """The values of one finished call, in ``RECORD_FIELDS`` order."""
    principal = ex.principal
    usage = ex.usage
    first_byte, end = ex.first_byte, ex.end
    return [
        ex.call_id,
        ex.request_id,
        ex.start_time,
        None if first_byte is None else first_byte - ex.start,
        None if end is None else end - ex.start,
        *(
            (principal.token, principal.key_alias, principal.user_id, principal.team_id)
            if principal
            else _NO_PRINCIPAL
        ),
        ex.end_user,
        ex.method,
        ex.route,
        ex.upstream_path,
        ex.provider,
        ex.deployment,
        ex.model or ex.info.model,
        ex.stream,
        ex.status,
        *(
            (
                usage.prompt_tokens,
                usage.completion_tokens,
                usage.cached_tokens,
                usage.total_tokens,
                usage.pages,
                usage.annotated_pages,
                usage.audio_seconds,
                usage.characters,
                usage.cache_write_tokens,
                usage.reasoning_tokens,
                usage.search_units,
                usage.images,
            )
            if usage
            else _NO_USAGE
        ),
        ex.cost,
        ex.upstream_request_id,
        ex.error,
        ex.interrupted,
        ex.tags,
        ex.bytes_in,
        ex.bytes_out,
    ]


def _after(start: float, seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(start + seconds, UTC)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def row_from_record(record: Record) -> dict[str, Any]:
    """The ``spend_logs`` row of a call record (``ValueError`` when it is not one)."""
    if len(record) != len(RECORD_FIELDS):
        raise ValueError(f"a call record has {len(RECORD_FIELDS)} values, not {len(record)}")
    (
        call_id,
        request_id,
        start_time,
        ttfb,
        duration,
        token,
        key_alias,
        user_id,
        team_id,
        end_user,
        method,
        route,
        upstream_path,
        provider,
        deployment,
        model,
        stream,
        status,
        prompt_tokens,
        completion_tokens,
        cached_tokens,
        total_tokens,
        pages,
        annotated_pages,
        audio_seconds,
        characters,
        cache_write_tokens,
        reasoning_tokens,
        search_units,
        images,
        cost,
        upstream_request_id,
        error,
        interrupted,
        tags,
        _bytes_in,
        _bytes_out,
    ) = record
    start = datetime.fromtimestamp(start_time, UTC)
    limits = LIMITS
    return {
        "call_id": call_id,
        "request_id": clean(request_id, limits["request_id"]),
        "start_time": start,
        "first_byte_time": _after(start_time, ttfb),
        "end_time": _after(start_time, duration),
        "token": token,
        "key_alias": clean(key_alias, limits["key_alias"]),
        "user_id": clean(user_id, limits["user_id"]),
        "team_id": clean(team_id, limits["team_id"]),
        "end_user": clean(end_user, limits["end_user"]),
        "method": clean(method, limits["method"]),
        "route": clean(route),
        "upstream_path": clean(upstream_path),
        "provider": clean(provider, limits["provider"]),
        "deployment": clean(deployment, limits["deployment"]),
        "model": clean(model, limits["model"]),
        "stream": stream,
        "status": status,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "cached_tokens": cached_tokens,
        "total_tokens": total_tokens,
        "pages": pages,
        "annotated_pages": annotated_pages,
        "audio_seconds": audio_seconds,
        "characters": characters,
        "cache_write_tokens": cache_write_tokens,
        "reasoning_tokens": reasoning_tokens,
        "search_units": search_units,
        "images": images,
        "cost": cost,
        "latency_ms": _ms(duration),
        "ttfb_ms": _ms(ttfb),
        "upstream_request_id": clean(upstream_request_id, limits["upstream_request_id"]),
        "error": clean(error),
        "interrupted": interrupted,
        "tags": [tag for tag in (clean(t, 256) for t in tags) if tag] if tags else [],
    }


# The access line's fields read straight from a record, in the line's order (see
# ``observability.logs.access_fields``, which gives the same fields of an Exchange).
_ACCESS_AT = tuple(
    (name, RECORD_FIELDS.index(source), source in ("duration", "ttfb"))  # seconds, shown as ms
    for name, source in (
        ("request_id", "request_id"),
        ("method", "method"),
        ("route", "route"),
        ("upstream_path", "upstream_path"),
        ("provider", "provider"),
        ("deployment", "deployment"),
        ("status", "status"),
        ("model", "model"),
        ("stream", "stream"),
        ("latency_ms", "duration"),
        ("ttfb_ms", "ttfb"),
        ("bytes_in", "bytes_in"),
        ("bytes_out", "bytes_out"),
        ("prompt_tokens", "prompt_tokens"),
        ("completion_tokens", "completion_tokens"),
        ("end_user", "end_user"),
        ("key_alias", "key_alias"),
        ("user_id", "user_id"),
        ("team_id", "team_id"),
        ("cost", "cost"),
        ("interrupted", "interrupted"),
        ("error", "error"),
        ("upstream_request_id", "upstream_request_id"),
    )
)
_START_AT = RECORD_FIELDS.index("start_time")
_DURATION_AT = RECORD_FIELDS.index("duration")


def access_fields_of(record: Record) -> dict[str, Any]:
    """The access line's fields of a call record: those ``logs.access_fields`` gives its call."""
    fields: dict[str, Any] = {}
    for name, at, as_ms in _ACCESS_AT:
        value = record[at]
        if as_ms and value is not None:
            value = round(value * 1000.0, 3)
        fields[name] = value
    return fields


def end_time(record: Record) -> float | None:
    """When the call's last byte went out (seconds since the epoch), when it is known."""
    duration = record[_DURATION_AT]
    return None if duration is None else record[_START_AT] + duration


def spend_row(ex: Exchange) -> dict[str, Any]:
    """The ``spend_logs`` row of one finished call."""
    return row_from_record(call_record(ex))
