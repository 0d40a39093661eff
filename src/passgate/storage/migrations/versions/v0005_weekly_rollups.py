"""Weekly rollups (UTC weeks from Monday), added up from the daily rollups already stored;
retention's index on (period, start) instead of start alone.

The overview's "top" tables read a long range's whole weeks from them. From this revision
on the spend writer keeps them with the hourly and daily ones; here the weeks of the
rows written before it are filled in, so a range over old data reads the same figures.
``week`` is a new value of ``spend_rollups.period``. An index on start alone looked cheap
to PostgreSQL's planner for a range of one dimension, and read every period's and
dimension's rows of that range; retention needs (period, start), which it does not prefer
over the primary key.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 05:45:00
"""

from __future__ import annotations

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None

_MEASURES = (
    "requests",
    "errors",
    "priced_requests",
    "cost",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "total_tokens",
    "pages",
    "annotated_pages",
    "audio_seconds",
    "characters",
    "latency_ms",
)
# the Monday of a day's UTC week, in each database's own form of spend_rollups.start:
# timestamptz on PostgreSQL, 'YYYY-MM-DD HH:MM:SS.ffffff' text on SQLite
_WEEK = {
    "postgresql": "date_trunc('week', start AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'",
    "sqlite": "date(start, 'weekday 0', '-6 days') || ' 00:00:00.000000'",
}


def upgrade() -> None:
    op.drop_index("ix_spend_rollups_start", table_name="spend_rollups")
    op.create_index("ix_spend_rollups_period_start", "spend_rollups", ["period", "start"])
    week = _WEEK[op.get_bind().dialect.name]
    sums = ", ".join(f"sum({name})" for name in _MEASURES)
    op.execute(
        f"INSERT INTO spend_rollups (period, dimension, start, value, {', '.join(_MEASURES)}) "  # noqa: S608
        f"SELECT 'week', dimension, {week}, value, {sums} FROM spend_rollups "
        f"WHERE period = 'day' GROUP BY dimension, {week}, value"
    )


def downgrade() -> None:
    op.execute("DELETE FROM spend_rollups WHERE period = 'week'")
    op.drop_index("ix_spend_rollups_period_start", table_name="spend_rollups")
    op.create_index("ix_spend_rollups_start", "spend_rollups", ["start"])
