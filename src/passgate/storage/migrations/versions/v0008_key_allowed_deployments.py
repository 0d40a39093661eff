"""Keys name the upstream deployments they may reach.

``allowed_deployments`` lists names of deployments from the config file; the empty list,
which every key written before this revision gets, allows them all.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 13:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("keys") as batch:
        batch.add_column(
            sa.Column(
                "allowed_deployments", sa.JSON(), nullable=False, server_default=sa.text("'[]'")
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("keys") as batch:
        batch.drop_column("allowed_deployments")
