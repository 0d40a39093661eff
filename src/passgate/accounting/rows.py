"""A call record as a ``spend_logs`` row: plain values, no secret, sized to the columns.

Every column is read from the record by name (``column_readers``): the ORM row here, the
driver values in ``spend_sql``; a column added to the table needs a record field of its name.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any, cast

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


# A stored column that is not a record field of the same name: how it is made of the record.
# ``time`` gets seconds since the epoch and gives the column's stored form.
Convert = Callable[[Any], Any]
_START, _TTFB, _DURATION = (FIELDS.index(n) for n in ("start_time", "ttfb", "duration"))


def _at_time(time: Convert, after: int | None) -> Callable[[CallRecord], Any]:
    def start(r: Any) -> Any:
        return time(r[_START])

    def later(r: Any) -> Any:
        return None if r[after] is None else time(r[_START] + r[after])

    return start if after is None else later


def _in_ms(at: int) -> Callable[[CallRecord], Any]:
    def ms(r: Any) -> Any:
        return None if r[at] is None else r[at] * 1000.0

    return ms


_DERIVED: dict[str, Callable[[Convert], Callable[[CallRecord], Any]]] = {
    "start_time": lambda time: _at_time(time, None),
    "first_byte_time": lambda time: _at_time(time, _TTFB),
    "end_time": lambda time: _at_time(time, _DURATION),
    "latency_ms": lambda _time: _in_ms(_DURATION),
    "ttfb_ms": lambda _time: _in_ms(_TTFB),
}


def _clean_tags(tags: Any) -> list[str]:
    return [tag for tag in (clean(t, _TAG_MAX) for t in tags) if tag] if tags else []


def _through(at: int, convert: Convert) -> Callable[[CallRecord], Any]:
    return lambda record: convert(record[at])


def _cut(at: int, limit: int) -> Callable[[CallRecord], Any]:
    return lambda record: clean(cast(str | None, record[at]), limit)


def column_readers(
    time: Convert, flag: Convert, tags: Convert
) -> tuple[Callable[[CallRecord], Any], ...]:
    """One function per ``spend_logs`` column, in the table's order, reading its value from a
    call record: strings cut to their column and freed of NULs, times through ``time``,
    booleans through ``flag``, the tag list through ``tags``. A column that is neither a
    record field nor derived from one fails here, at import, not on the first row."""
    readers: list[Callable[[CallRecord], Any]] = []
    for column in SpendLog.__table__.columns:
        name = column.name
        derived = _DERIVED.get(name)
        if derived is not None:
            readers.append(derived(time))
            continue
        if name not in FIELDS:
            raise RuntimeError(f"spend_logs.{name} is neither a call record field nor derived")
        at = FIELDS.index(name)
        if name == "tags":
            readers.append(_through(at, tags))
        elif isinstance(column.type, Boolean):
            readers.append(_through(at, flag))
        elif isinstance(column.type, String):
            readers.append(_cut(at, column.type.length or _TEXT_MAX))
        else:
            readers.append(itemgetter(at))
    return tuple(readers)


COLUMNS: tuple[str, ...] = tuple(column.name for column in SpendLog.__table__.columns)
_ROW_READERS = column_readers(lambda t: datetime.fromtimestamp(t, UTC), bool, _clean_tags)


def row_from_record(record: CallRecord) -> dict[str, Any]:
    """The ``spend_logs`` row of a call record."""
    return {name: read(record) for name, read in zip(COLUMNS, _ROW_READERS, strict=True)}


def spend_row(ex: Exchange) -> dict[str, Any]:
    """The ``spend_logs`` row of one finished call."""
    return row_from_record(call_record(ex))
