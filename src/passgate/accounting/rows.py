"""A call record as a ``spend_logs`` row: plain values, no secret, sized to the columns.

Every column is read from the record by name (``column_values``): the ORM row here, the
driver values in ``spend_sql``; a column added to the table needs a record field of its name.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Boolean, String

from passgate.call_record import FIELDS, CallRecord, call_record
from passgate.exchange import Exchange
from passgate.storage.models import SpendLog

# String(n) columns: PostgreSQL refuses longer values, and several (model, end user,
# tags) come from the client, so they are cut to fit rather than poisoning a batch
LIMITS: dict[str, int] = {
    column.name: column.type.length
    for column in SpendLog.__table__.columns
    if isinstance(column.type, String) and column.type.length
}
_TEXT_MAX = 4096  # error text and paths: long enough to be useful, bounded in size
_TAG_MAX = 256


def clean(value: str | None, limit: int = _TEXT_MAX) -> str | None:
    """A string fit for any database: no NUL (PostgreSQL rejects it), at most ``limit``."""
    if value is None:
        return None
    if "\x00" in value:
        value = value.replace("\x00", "")
    return value[:limit] if len(value) > limit else value


# A stored column that is not a record field of the same name: the expression that makes it
# of the record ``r`` (``time`` gives a column's stored form of seconds since the epoch).
_START, _TTFB, _DURATION = (FIELDS.index(n) for n in ("start_time", "ttfb", "duration"))
_DERIVED = {
    "start_time": f"time(r[{_START}])",
    "first_byte_time": f"None if r[{_TTFB}] is None else time(r[{_START}] + r[{_TTFB}])",
    "end_time": f"None if r[{_DURATION}] is None else time(r[{_START}] + r[{_DURATION}])",
    "latency_ms": f"None if r[{_DURATION}] is None else r[{_DURATION}] * 1000.0",
    "ttfb_ms": f"None if r[{_TTFB}] is None else r[{_TTFB}] * 1000.0",
}
Convert = Callable[[Any], Any]


def _clean_tags(tags: Any) -> list[str]:
    return [tag for tag in (clean(t, _TAG_MAX) for t in tags) if tag] if tags else []


def _column_expression(column: Any) -> str:
    name = column.name
    derived = _DERIVED.get(name)
    if derived is not None:
        return derived
    if name not in FIELDS:
        raise RuntimeError(f"spend_logs.{name} is neither a call record field nor derived")
    at = FIELDS.index(name)
    if name == "tags":
        return f"tags(r[{at}])"
    if isinstance(column.type, Boolean):
        return f"flag(r[{at}])"
    if isinstance(column.type, String):
        return f"clean(r[{at}], {int(column.type.length or _TEXT_MAX)})"
    return f"r[{at}]"


# One expression per column, in the table's order, from the record's field list and the
# table's column types alone (names and integers: nothing from a request reaches it).
_VALUES_SOURCE = (
    "def values(r):\n    return ["
    + ", ".join(_column_expression(c) for c in SpendLog.__table__.columns)
    + "]\n"
)


def column_values(time: Convert, flag: Convert, tags: Convert) -> Callable[[CallRecord], list[Any]]:
    """A function from a call record to its ``spend_logs`` values in the table's column order:
    strings cut to their column and freed of NULs, times through ``time``, booleans through
    ``flag``, the tag list through ``tags``. It is compiled from one expression per column
    (as ``dataclasses`` compiles its methods), so a row costs what a hand-written list would;
    a column that is neither a record field nor derived from one fails at import."""
    namespace: dict[str, Any] = {"time": time, "flag": flag, "tags": tags, "clean": clean}
    exec(_VALUES_SOURCE, namespace)  # noqa: S102 (source made of column names and integers)
    made: Callable[[CallRecord], list[Any]] = namespace["values"]
    return made


COLUMNS: tuple[str, ...] = tuple(column.name for column in SpendLog.__table__.columns)
_ROW_VALUES = column_values(lambda t: datetime.fromtimestamp(t, UTC), bool, _clean_tags)


def row_from_record(record: CallRecord) -> dict[str, Any]:
    """The ``spend_logs`` row of a call record."""
    return dict(zip(COLUMNS, _ROW_VALUES(record), strict=True))


def spend_row(ex: Exchange) -> dict[str, Any]:
    """The ``spend_logs`` row of one finished call."""
    return row_from_record(call_record(ex))
