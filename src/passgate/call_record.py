"""One finished call as a typed record: the one list of fields every consumer reads.

The worker builds a ``CallRecord`` from the ``Exchange`` when the call ends; the wire to the
spend-writer process carries it as a JSON array in field order (``accounting.spend_link``);
the spend row's columns are read from it by name (``accounting.rows``, ``accounting.spend_sql``);
the access line is a projection of it (``ACCESS_FIELDS``). Adding a field is one line here
(plus, when it is stored, its column and a migration). A ``NamedTuple`` costs what the list it
replaced did, and carries no secret: the principal's key hash id, never a key.
"""

from __future__ import annotations

from dataclasses import fields
from operator import attrgetter
from typing import Any, NamedTuple

from passgate.exchange import Exchange, Usage


class CallRecord(NamedTuple):
    """What one finished call was, used and cost: raw values, cheap to gather on the event
    loop (no datetimes, no cleaning: the consumers do that)."""

    call_id: str
    request_id: str
    start_time: float  # seconds since the epoch
    ttfb: float | None  # seconds from the start to the upstream's first byte
    duration: float | None  # seconds from the start to the last byte
    token: str | None  # the key's hash id
    key_alias: str | None
    user_id: str | None
    team_id: str | None
    end_user: str | None
    method: str
    route: str
    upstream_path: str
    provider: str
    deployment: str | None
    attempts: int  # deployments tried (the access line's; not stored)
    model: str | None
    stream: bool
    status: int
    # the usage, in Usage's order (a unit test keeps the two in step)
    prompt_tokens: int | None
    completion_tokens: int | None
    cached_tokens: int | None
    total_tokens: int | None
    pages: int | None
    annotated_pages: int | None
    audio_seconds: float | None
    characters: int | None
    cache_write_tokens: int | None
    reasoning_tokens: int | None
    search_units: int | None
    images: int | None
    cache_write_1h_tokens: int | None
    cost: float | None
    upstream_request_id: str | None
    error: str | None
    interrupted: bool
    tags: list[str]
    bytes_in: int  # the access line's; not stored
    bytes_out: int


FIELDS: tuple[str, ...] = CallRecord._fields
USAGE_FIELDS: tuple[str, ...] = tuple(item.name for item in fields(Usage))
_USAGE_OF = attrgetter(*USAGE_FIELDS)
_NO_USAGE: tuple[None, ...] = (None,) * len(USAGE_FIELDS)
_NO_PRINCIPAL = (None, None, None, None)


def call_record(ex: Exchange) -> CallRecord:
    """The record of one finished call."""
    principal = ex.principal
    usage = ex.usage
    first_byte, end = ex.first_byte, ex.end
    return CallRecord._make(
        (
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
            ex.attempts,
            ex.model or ex.info.model,
            ex.stream,
            ex.status,
            *(_USAGE_OF(usage) if usage else _NO_USAGE),
            ex.cost,
            ex.upstream_request_id,
            ex.error,
            ex.interrupted,
            ex.tags,
            ex.bytes_in,
            ex.bytes_out,
        )
    )


def record_of(values: list[Any]) -> CallRecord:
    """The record of a JSON array in field order (``ValueError`` when it is not one: wrong
    length, a call id that is not a string or a start that is not a number). Other values of
    the wrong kind are refused where they are stored."""
    if len(values) != len(FIELDS):
        raise ValueError(f"a call record has {len(FIELDS)} values, not {len(values)}")
    if type(values[0]) is not str or type(values[2]) not in (int, float):
        raise ValueError("a call record's call id must be a string and its start a number")
    return CallRecord._make(values)


# The access line: (its field, the record's field), in the line's order. Durations are
# shown in milliseconds.
ACCESS_FIELDS: tuple[tuple[str, str], ...] = (
    ("request_id", "request_id"),
    ("method", "method"),
    ("route", "route"),
    ("upstream_path", "upstream_path"),
    ("provider", "provider"),
    ("deployment", "deployment"),
    ("attempts", "attempts"),
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
_ACCESS_AT = tuple(
    (name, FIELDS.index(source), source in ("duration", "ttfb")) for name, source in ACCESS_FIELDS
)


def access_fields(record: CallRecord) -> dict[str, Any]:
    """The fields of the call's access line: no secret, no body."""
    line: dict[str, Any] = {}
    for name, at, as_ms in _ACCESS_AT:
        value: Any = record[at]
        if as_ms and value is not None:
            value = round(value * 1000.0, 3)
        line[name] = value
    return line


def end_time(record: CallRecord) -> float | None:
    """When the call's last byte went out (seconds since the epoch), when it is known."""
    duration = record.duration
    return None if duration is None else record.start_time + duration
