"""A finished call as a ``spend_logs`` row: plain values, no secret, sized to the columns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import String

from passgate.exchange import Exchange
from passgate.storage.models import SpendLog

# String(n) columns: PostgreSQL refuses longer values, and several (model, end user,
# tags) come from the client, so they are cut to fit rather than poisoning a batch
_LIMITS: dict[str, int] = {
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
    return value[:limit]


def _at(start: datetime, ex: Exchange, mark: float | None) -> datetime | None:
    return None if mark is None else start + timedelta(seconds=mark - ex.start)


def spend_row(ex: Exchange) -> dict[str, Any]:
    """The ``spend_logs`` row of one finished call."""
    start = datetime.fromtimestamp(ex.start_time, UTC)
    principal = ex.principal
    usage = ex.usage
    limits = _LIMITS
    return {
        "call_id": ex.call_id,
        "request_id": clean(ex.request_id, limits["request_id"]),
        "start_time": start,
        "first_byte_time": _at(start, ex, ex.first_byte),
        "end_time": _at(start, ex, ex.end),
        "token": principal.token if principal else None,
        "key_alias": clean(principal.key_alias, limits["key_alias"]) if principal else None,
        "user_id": clean(principal.user_id, limits["user_id"]) if principal else None,
        "team_id": clean(principal.team_id, limits["team_id"]) if principal else None,
        "end_user": clean(ex.end_user, limits["end_user"]),
        "method": clean(ex.method, limits["method"]),
        "route": clean(ex.route),
        "upstream_path": clean(ex.upstream_path),
        "model": clean(ex.model or ex.info.model, limits["model"]),
        "stream": ex.stream,
        "status": ex.status,
        "prompt_tokens": usage.prompt_tokens if usage else None,
        "completion_tokens": usage.completion_tokens if usage else None,
        "cached_tokens": usage.cached_tokens if usage else None,
        "total_tokens": usage.total_tokens if usage else None,
        "pages": usage.pages if usage else None,
        "annotated_pages": usage.annotated_pages if usage else None,
        "audio_seconds": usage.audio_seconds if usage else None,
        "characters": usage.characters if usage else None,
        "cost": ex.cost,
        "latency_ms": ex.latency_ms,
        "ttfb_ms": ex.ttfb_ms,
        "upstream_request_id": clean(ex.upstream_request_id, limits["upstream_request_id"]),
        "error": clean(ex.error),
        "interrupted": ex.interrupted,
        "tags": [tag for tag in (clean(t, 256) for t in ex.tags) if tag],
    }
