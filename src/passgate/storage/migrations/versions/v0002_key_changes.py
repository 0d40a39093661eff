"""A feed of key changes, so every worker drops its cached copy at once.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 19:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "key_changes",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("token", sa.String(64), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_key_changes_changed_at", "key_changes", ["changed_at"])


def downgrade() -> None:
    op.drop_index("ix_key_changes_changed_at", table_name="key_changes")
    op.drop_table("key_changes")
