"""Hourly and daily rollups of the spend rows, read by the web UI's charts and totals.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 04:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

_COUNTS = ("requests", "errors", "priced_requests")
_USAGE = (
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "total_tokens",
    "pages",
    "annotated_pages",
)


def upgrade() -> None:
    op.create_table(
        "spend_rollups",
        sa.Column("period", sa.String(8), nullable=False),
        sa.Column("dimension", sa.String(16), nullable=False),
        sa.Column("start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("value", sa.String(256), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in _COUNTS),
        sa.Column("cost", sa.Float(), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in _USAGE),
        sa.Column("audio_seconds", sa.Float(), nullable=False),
        sa.Column("characters", sa.BigInteger(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("period", "dimension", "start", "value", name="pk_spend_rollups"),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_spend_rollups_start", "spend_rollups", ["start"])


def downgrade() -> None:
    op.drop_index("ix_spend_rollups_start", table_name="spend_rollups")
    op.drop_table("spend_rollups")
