"""Hourly rollups of the spend rows, read by the web UI's charts and totals.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07 04:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

_COUNTS = (
    "requests",
    "errors",
    "priced_requests",
)
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
        "spend_hourly",
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(256), nullable=False),
        sa.Column("team_id", sa.String(256), nullable=False),
        sa.Column("end_user", sa.String(256), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("route_family", sa.String(256), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in _COUNTS),
        sa.Column("cost", sa.Float(), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in _USAGE),
        sa.Column("audio_seconds", sa.Float(), nullable=False),
        sa.Column("characters", sa.BigInteger(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint(
            "hour",
            "token",
            "user_id",
            "team_id",
            "end_user",
            "model",
            "route_family",
            name="pk_spend_hourly",
        ),
    )
    op.create_index("ix_spend_hourly_token_hour", "spend_hourly", ["token", "hour"])


def downgrade() -> None:
    op.drop_index("ix_spend_hourly_token_hour", table_name="spend_hourly")
    op.drop_table("spend_hourly")
