"""Spend rows name their provider and deployment, and four more usage counts.

``provider`` is the upstream API a call went to (rows written before this revision were all
Mistral's); ``deployment`` the named upstream deployment that answered, when there are
several. The usage counts: input tokens written to a prompt cache, output tokens spent on
reasoning, rerank search units and generated images.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 07:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None

_COUNTS = ("cache_write_tokens", "reasoning_tokens", "search_units", "images")


def upgrade() -> None:
    with op.batch_alter_table("spend_logs") as batch:
        batch.add_column(sa.Column("provider", sa.String(64), nullable=True))
        batch.add_column(sa.Column("deployment", sa.String(64), nullable=True))
        for name in _COUNTS:
            batch.add_column(sa.Column(name, sa.Integer(), nullable=True))
    op.execute("UPDATE spend_logs SET provider = 'mistral'")


def downgrade() -> None:
    with op.batch_alter_table("spend_logs") as batch:
        for name in reversed(_COUNTS):
            batch.drop_column(name)
        batch.drop_column("deployment")
        batch.drop_column("provider")
