"""Spend rows count the cache writes made for an hour apart.

Some providers price a prompt-cache write by its lifetime: ``cache_write_1h_tokens`` is the
part of ``cache_write_tokens`` written for an hour.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 11:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("spend_logs") as batch:
        batch.add_column(sa.Column("cache_write_1h_tokens", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("spend_logs") as batch:
        batch.drop_column("cache_write_1h_tokens")
